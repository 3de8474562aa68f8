import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { GENERATED_HEADER, renderHaproxyConfig, renderServerLine, templateHasServers } from "./render.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const DEFAULT_LINE = "server $NAME $IP:$PORT check";

const WEB_A = { name: "web-a", address: "10.0.0.11", port: 80 };
const WEB_B = { name: "web-b", address: "10.0.0.12", port: 8080 };
const WEB_C = { name: "web-c", address: "10.0.0.13", port: 80 };

/** Render and drop the generated header, to compare the body alone. */
const body = (template: string, hosts = [WEB_A, WEB_B], line = DEFAULT_LINE) => {
  const out = renderHaproxyConfig(template, hosts, line);
  expect(out.startsWith(GENERATED_HEADER)).toBe(true);
  return out.slice(GENERATED_HEADER.length);
};

describe("renderHaproxyConfig with the shipped template", () => {
  test("three hosts render to the golden file, byte for byte", async () => {
    const template = await fs.readFile(path.join(REPO_ROOT, "etc/haproxy.cfg.tmpl"), "utf8");
    const golden = await fs.readFile(path.join(REPO_ROOT, "test/fixtures/golden/default-3-hosts.cfg"), "utf8");
    expect(renderHaproxyConfig(template, [WEB_C, WEB_A, WEB_B], DEFAULT_LINE)).toBe(golden);
  });

  test.each([
    ["a b c", [WEB_A, WEB_B, WEB_C]],
    ["c b a", [WEB_C, WEB_B, WEB_A]],
    ["b c a", [WEB_B, WEB_C, WEB_A]],
    ["a c b", [WEB_A, WEB_C, WEB_B]],
  ])("the same hosts in the order %s give identical bytes", async (_order, hosts) => {
    const template = await fs.readFile(path.join(REPO_ROOT, "etc/haproxy.cfg.tmpl"), "utf8");
    const reference = renderHaproxyConfig(template, [WEB_A, WEB_B, WEB_C], DEFAULT_LINE);
    expect(renderHaproxyConfig(template, hosts, DEFAULT_LINE)).toBe(reference);
  });

  test("the shipped template has a place for the servers", async () => {
    const template = await fs.readFile(path.join(REPO_ROOT, "etc/haproxy.cfg.tmpl"), "utf8");
    expect(templateHasServers(template)).toBe(true);
  });
});

describe("renderHaproxyConfig", () => {
  test.each([
    [
      "puts one line per host where $SERVERS stands",
      "backend b\n$SERVERS\n",
      "backend b\nserver web-a 10.0.0.11:80 check\nserver web-b 10.0.0.12:8080 check\n",
    ],
    [
      "indents every server line like $SERVERS",
      "backend b\n    $SERVERS\n",
      "backend b\n    server web-a 10.0.0.11:80 check\n    server web-b 10.0.0.12:8080 check\n",
    ],
    ["keeps tab indentation", "backend b\n\t$SERVERS\n", "backend b\n\tserver web-a 10.0.0.11:80 check\n\tserver web-b 10.0.0.12:8080 check\n"],
    ["accepts the ${SERVERS} form", "backend b\n  ${SERVERS}\n", "backend b\n  server web-a 10.0.0.11:80 check\n  server web-b 10.0.0.12:8080 check\n"],
    [
      "turns $$ into $ outside comments",
      "    http-request set-header X-Cost $$5\n$SERVERS\n",
      "    http-request set-header X-Cost $5\nserver web-a 10.0.0.11:80 check\nserver web-b 10.0.0.12:8080 check\n",
    ],
    ["turns $$SERVERS into a literal $SERVERS", "    # x\n    acl a path $$SERVERS\n", "    # x\n    acl a path $SERVERS\n"],
    [
      "copies a comment line mentioning $SERVERS unchanged",
      "# $SERVERS goes below, and ${SERVERS} too; $$ stays\n$SERVERS\n",
      "# $SERVERS goes below, and ${SERVERS} too; $$ stays\nserver web-a 10.0.0.11:80 check\nserver web-b 10.0.0.12:8080 check\n",
    ],
    [
      "copies an indented comment line unchanged",
      "backend b\n    # put $SERVERS here\n    $SERVERS\n",
      "backend b\n    # put $SERVERS here\n    server web-a 10.0.0.11:80 check\n    server web-b 10.0.0.12:8080 check\n",
    ],
    [
      "leaves HAProxy's own ${ENV} and other $ text alone",
      "    bind :${PORT_HTTP}\n    log $LOGHOST local0\n$SERVERS\n",
      "    bind :${PORT_HTTP}\n    log $LOGHOST local0\nserver web-a 10.0.0.11:80 check\nserver web-b 10.0.0.12:8080 check\n",
    ],
    ["does not take $SERVERSX for $SERVERS", "$SERVERSX\n$SERVERS\n", "$SERVERSX\nserver web-a 10.0.0.11:80 check\nserver web-b 10.0.0.12:8080 check\n"],
    [
      "keeps a template without a final newline as it is",
      "backend b\n  $SERVERS",
      "backend b\n  server web-a 10.0.0.11:80 check\n  server web-b 10.0.0.12:8080 check",
    ],
    [
      "fills $SERVERS twice when it appears twice",
      "backend a\n $SERVERS\nbackend b\n $SERVERS\n",
      "backend a\n server web-a 10.0.0.11:80 check\n server web-b 10.0.0.12:8080 check\nbackend b\n server web-a 10.0.0.11:80 check\n server web-b 10.0.0.12:8080 check\n",
    ],
  ])("%s", (_what, template, expected) => {
    expect(body(template)).toBe(expected);
  });

  test("with zero hosts $SERVERS becomes nothing and the rest stays", () => {
    expect(body("backend b\n    balance roundrobin\n    $SERVERS\n", [])).toBe("backend b\n    balance roundrobin\n    \n");
  });

  test("starts with the generated header", () => {
    expect(renderHaproxyConfig("$SERVERS\n", [], DEFAULT_LINE).split("\n")[0]).toMatch(/^# Generated by autoscaler/);
  });

  test("sorts names bytewise, not by locale (upper case before lower case)", () => {
    const hosts = [
      { name: "b", address: "10.0.0.2", port: 80 },
      { name: "B", address: "10.0.0.1", port: 80 },
      { name: "a", address: "10.0.0.3", port: 80 },
    ];
    expect(body("$SERVERS\n", hosts, "$NAME")).toBe("B\na\nb\n");
  });

  test("does not reorder the caller's array", () => {
    const hosts = [WEB_B, WEB_A];
    renderHaproxyConfig("$SERVERS\n", hosts, DEFAULT_LINE);
    expect(hosts.map((h) => h.name)).toEqual(["web-b", "web-a"]);
  });
});

describe("renderServerLine", () => {
  const host = { name: "web-1", address: "10.0.0.5", port: 8080 };
  test.each([
    ["$NAME $IP $PORT", "server $NAME $IP:$PORT check", "server web-1 10.0.0.5:8080 check"],
    ["the original tool's $SERVER and $HOST", "server $SERVER $HOST:80 check", "server web-1 10.0.0.5:80 check"],
    ["the braced ${NAME} ${IP} ${PORT}", "server ${NAME} ${IP}:${PORT}", "server web-1 10.0.0.5:8080"],
    ["the braced ${SERVER} ${HOST}", "server ${SERVER} ${HOST}:1", "server web-1 10.0.0.5:1"],
    ["a placeholder glued to text after a brace", "server ${NAME}x ${IP}:${PORT}", "server web-1x 10.0.0.5:8080"],
    [
      "other $X text left alone",
      "server $NAME $IP:$PORT check cookie $COOKIE weight ${WEIGHT}",
      "server web-1 10.0.0.5:8080 check cookie $COOKIE weight ${WEIGHT}",
    ],
    ["a longer word that starts like a placeholder left alone", "server $NAME $IP:$PORT $NAMESPACE $PORTS", "server web-1 10.0.0.5:8080 $NAMESPACE $PORTS"],
    ["the same placeholder twice", "server $NAME $IP:$PORT cookie $NAME", "server web-1 10.0.0.5:8080 cookie web-1"],
  ])("fills %s", (_what, line, expected) => {
    expect(renderServerLine(line, host)).toBe(expected);
  });

  test("does not expand $ sequences inside the host's own values", () => {
    expect(renderServerLine("server $NAME $IP:$PORT", { name: "a$PORT", address: "10.0.0.1", port: 1 })).toBe("server a$PORT 10.0.0.1:1");
  });
});

describe("templateHasServers", () => {
  test.each([
    { what: "$SERVERS on its own line", template: "backend b\n    $SERVERS\n", expected: true },
    { what: "${SERVERS}", template: "backend b\n${SERVERS}\n", expected: true },
    { what: "$SERVERS after a comment mentioning it", template: "# $SERVERS\n$SERVERS\n", expected: true },
    { what: "$SERVERS only in a comment", template: "# $SERVERS goes here\nbackend b\n", expected: false },
    { what: "$SERVERS only in an indented comment", template: "backend b\n    # $SERVERS\n", expected: false },
    { what: "only $$SERVERS (a literal dollar)", template: "backend b\n    $$SERVERS\n", expected: false },
    { what: "$SERVERSX only", template: "backend b\n    $SERVERSX\n", expected: false },
    { what: "no placeholder at all", template: "backend b\n    server a 10.0.0.1:80\n", expected: false },
    { what: "an empty template", template: "", expected: false },
  ])("is $expected for $what", ({ template, expected }) => {
    expect(templateHasServers(template)).toBe(expected);
  });
});

describe("comments found in review", () => {
  test("a $SERVERS after a trailing # comment is left alone, and one before it is filled", () => {
    const tmpl = "backend b\n    $SERVERS # the servers, formerly $SERVERS\n    option httpchk # $SERVERS\n";
    const out = renderHaproxyConfig(tmpl, [{ name: "a", address: "10.0.0.1", port: 80 }], "server $NAME $IP:$PORT");
    expect(out).toBe(GENERATED_HEADER + "backend b\n    server a 10.0.0.1:80 # the servers, formerly $SERVERS\n    option httpchk # $SERVERS\n");
  });
  test("templateHasServers is false when every $SERVERS stands after a #", () => {
    expect(templateHasServers("backend b\n    option httpchk # $SERVERS\n")).toBe(false);
  });
});
