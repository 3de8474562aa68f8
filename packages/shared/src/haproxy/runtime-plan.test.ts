import { describe, expect, test } from "vitest";
import { serverStateFile } from "./runtime-apply.js";
import { renderHaproxyConfig } from "./render.js";
import { backendShape, parseServersState, planRuntimeChange, type ServerState } from "./runtime-plan.js";

const TEMPLATE = `global
    master-worker
defaults
    mode http
    default-server inter 3s
backend autoscaler
    balance roundrobin
    default-server inter 2s fall 2 rise 2
    server static-1 10.9.9.9:80 check
    $SERVERS
`;
const LINE = "server $NAME $IP:$PORT check weight 7";
const host = (name: string, address = "10.0.0.1", port = 80) => ({ name, address, port });
const running = (name: string, address = "10.0.0.1", port = 80, adminState = 0): ServerState => ({ name, address, port, opState: 2, adminState, weight: 7 });
const liveFor = (hosts: ReturnType<typeof host>[]) => renderHaproxyConfig(TEMPLATE, hosts, LINE);

describe("parseServersState", () => {
  const header =
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";
  test("reads name, address, port, states and weight of the backend's rows only", () => {
    const answer =
      header + "3 autoscaler 1 web-1 10.0.0.1 2 8 5 1 5 15 3 3 6 0 0 0 - 8080 - 0 0 - - 0\n4 other 1 x 10.0.0.2 2 0 1 1 5 15 3 3 6 0 0 0 - 80 - 0 0 - - 0\n\n";
    expect(parseServersState(answer, "autoscaler")).toEqual([{ name: "web-1", address: "10.0.0.1", port: 8080, opState: 2, adminState: 8, weight: 5 }]);
  });
  test("an answer that is not the table is an error quoting HAProxy", () => {
    expect(() => parseServersState("Can't find backend.\n", "nope")).toThrow(/show servers state nope": Can't find backend\./);
    expect(() => parseServersState("", "autoscaler")).toThrow(/\(an empty answer\)/);
  });
});

describe("backendShape", () => {
  test("default-server options of the defaults in effect, then of the backend; the template's own servers", () => {
    const shape = backendShape(renderHaproxyConfig(TEMPLATE, [], LINE), "autoscaler");
    expect(shape).toEqual({ defaultServer: ["inter", "3s", "inter", "2s", "fall", "2", "rise", "2"], staticNames: new Set(["static-1"]) });
  });
  test("a missing backend or named defaults are problems", () => {
    expect(backendShape(TEMPLATE, "web")).toEqual({ problem: expect.stringMatching(/no backend or listen section named "web"/) });
    expect(backendShape("defaults d1\n  mode http\nbackend autoscaler from d1\n", "autoscaler")).toEqual({ problem: expect.stringMatching(/named defaults/) });
  });
});

describe("planRuntimeChange", () => {
  const base = { template: TEMPLATE, serverLine: LINE, backend: "autoscaler" };
  test("a server added and one removed: add with every option spelled, default-server's first; the removed one goes", () => {
    const plan = planRuntimeChange({
      ...base,
      hosts: [host("a"), host("c", "10.0.0.3", 8080)],
      live: liveFor([host("a"), host("b")]),
      running: [running("static-1", "10.9.9.9"), running("a"), running("b")],
    });
    expect(plan).toEqual({
      kind: "runtime",
      add: [{ name: "c", args: ["10.0.0.3:8080", "inter", "3s", "inter", "2s", "fall", "2", "rise", "2", "check", "weight", "7"], check: true }],
      remove: ["b"],
      pendingDeletes: [],
    });
  });
  test("a server still in maintenance after its removal is a pending deletion, not a difference", () => {
    const plan = planRuntimeChange({
      ...base,
      hosts: [host("a")],
      live: liveFor([host("a")]),
      running: [running("static-1", "10.9.9.9"), running("a"), running("b", "10.0.0.1", 80, 1)],
    });
    expect(plan).toEqual({ kind: "runtime", add: [], remove: [], pendingDeletes: ["b"] });
  });
  test("what the runtime API cannot express takes the reload path, saying why", () => {
    const live = liveFor([host("a")]);
    const runningNow = [running("static-1", "10.9.9.9"), running("a")];
    const why = (over: Partial<Parameters<typeof planRuntimeChange>[0]>) => {
      const plan = planRuntimeChange({ ...base, hosts: [host("a"), host("b")], live, running: runningNow, ...over });
      return plan.kind === "reload" ? plan.why : "runtime";
    };
    expect(why({})).toBe("runtime");
    expect(why({ live: undefined })).toMatch(/not known/);
    expect(why({ template: TEMPLATE.replace("roundrobin", "leastconn") })).toMatch(/template, server_line or HAProxy's servers differ/);
    expect(why({ serverLine: "server $NAME $IP:$PORT check weight 9" })).toMatch(/differ/);
    expect(why({ running: [running("static-1", "10.9.9.9")] })).toMatch(/differ/); // HAProxy lost a server the file has
    expect(why({ hosts: [host("a", "10.0.0.2")] })).toMatch(/differ|moved/);
    expect(why({ hosts: [host("a"), host("b")], running: [...runningNow, running("b", "10.0.0.1", 80, 1)] })).toMatch(/still being deleted/);
    expect(why({ backend: "web" })).toMatch(/no backend/);
  });
  test("a server_line that is not `server $NAME $IP:$PORT …` cannot be an add server", () => {
    const line = "server $NAME ${IP}:${PORT}0 check";
    const plan = planRuntimeChange({
      ...base,
      serverLine: line,
      hosts: [host("a")],
      live: renderHaproxyConfig(TEMPLATE, [], line),
      running: [running("static-1", "10.9.9.9")],
    });
    expect(plan).toEqual({ kind: "reload", why: expect.stringMatching(/server_line does not start with/) });
  });
});

test("an option with ; or quotes is not passed to the runtime API, which would split or read it differently", () => {
  for (const line of ["server $NAME $IP:$PORT check; show info", 'server $NAME $IP:$PORT check cookie "a b"']) {
    const plan = planRuntimeChange({
      template: TEMPLATE,
      serverLine: line,
      backend: "autoscaler",
      hosts: [host("a")],
      live: renderHaproxyConfig(TEMPLATE, [], line),
      running: [running("static-1", "10.9.9.9")],
    });
    expect(plan).toEqual({ kind: "reload", why: expect.stringMatching(/has a ; quote or backslash/) });
  }
});

describe("serverStateFile", () => {
  test("the global section's file, joined to server-state-base, resolved against the folder", () => {
    expect(serverStateFile("global\n    server-state-file /var/lib/x/state\n", "/etc")).toBe("/var/lib/x/state");
    expect(serverStateFile("global\n  server-state-base /srv\n  server-state-file st # saved\n", "/etc")).toBe("/srv/st");
    expect(serverStateFile("global\n  server-state-file st\n", "/opt/inst")).toBe("/opt/inst/st");
    expect(serverStateFile("global\n  # server-state-file st\ndefaults\n  mode http\n", "/etc")).toBeUndefined();
  });
});
