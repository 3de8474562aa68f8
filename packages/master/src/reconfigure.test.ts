import { describe, expect, test } from "vitest";
import { parseConfig, type Config } from "@autoscaler/shared";
import { planReconfigure } from "./reconfigure.js";

const TOKEN = "t".repeat(32);
const base = [
  "[master]",
  `token = ${TOKEN}`,
  "listen = 127.0.0.1:7300",
  "[scaling]",
  "max_nodes = 10",
  "[haproxy]",
  "server_line = server $NAME $IP:$PORT check",
];

/** A config from ini lines; later lines win over the base ones for the same key (the reader keeps the last). */
function config(extra: string[] = []): Config {
  const r = parseConfig([...base, ...extra].join("\n") + "\n", "/inst/autoscaler.ini", { home: "/root" });
  if (!r.config) throw new Error(r.errors.map((e) => `${e.subject}: ${e.message}`).join("; "));
  return r.config;
}

describe("planReconfigure", () => {
  test("the same ini changes nothing", () => {
    expect(planReconfigure(config(), config())).toMatchObject({ applied: [], needsRestart: [], ignored: [] });
  });

  test.each([
    ["scaling.max_nodes", ["[scaling]", "max_nodes = 3"], (c: Config) => c.scaling.max_nodes, 3],
    [
      "haproxy.server_line",
      ["[haproxy]", "server_line = server $NAME $IP:$PORT check weight 50"],
      (c: Config) => c.haproxy.server_line,
      "server $NAME $IP:$PORT check weight 50",
    ],
    ["haproxy.check_command", ["[haproxy]", "check_command = true"], (c: Config) => c.haproxy.check_command, "true"],
    ["machine.scale_up_command", ["[machine]", "scale_up_command = launch.sh"], (c: Config) => c.machine.scale_up_command, "launch.sh"],
    ["master.interval", ["[master]", "interval = 2"], (c: Config) => c.master.interval, 2],
  ] as const)("%s applies now", (key, lines, read, value) => {
    const plan = planReconfigure(config(), config([...lines]));
    expect(plan.applied).toEqual([key]);
    expect(plan.needsRestart).toEqual([]);
    expect(read(plan.config)).toEqual(value);
  });

  test.each([
    ["master.listen", ["[master]", "listen = 127.0.0.1:7301"], (c: Config) => c.master.listen, { host: "127.0.0.1", port: 7300 }],
    ["master.metrics_listen", ["[master]", "metrics_listen = 127.0.0.1:9800"], (c: Config) => c.master.metrics_listen, { host: "127.0.0.1", port: 9717 }],
    ["master.state_dir", ["[master]", "state_dir = /elsewhere"], (c: Config) => c.master.state_dir, "/var/lib/autoscaler"],
    ["master.token", ["[master]", `token = ${"n".repeat(32)}`], (c: Config) => c.master.token, TOKEN],
    ["master.role", ["[master]", "role = follower"], (c: Config) => c.master.role, "auto"],
    ["haproxy.servers", ["[haproxy]", "servers = 10.0.0.10"], (c: Config) => c.haproxy.servers, []],
    ["haproxy.config", ["[haproxy]", "config = /srv/haproxy.cfg"], (c: Config) => c.haproxy.config, "/etc/haproxy/haproxy.cfg"],
  ] as const)("%s needs a restart and keeps its running value", (key, lines, read, running) => {
    const plan = planReconfigure(config(), config([...lines]));
    expect(plan.needsRestart.map((r) => r.key)).toEqual([key]);
    expect(plan.needsRestart[0]!.why).not.toBe("");
    expect(plan.applied).toEqual([]);
    expect(read(plan.config)).toEqual(running);
  });

  test("agent keys are ignored, and a mix is sorted key by key", () => {
    const plan = planReconfigure(config(), config(["[agent]", "name = web-9", "[master]", "listen = 127.0.0.1:7301", "[scaling]", "min_nodes = 2"]));
    expect(plan).toMatchObject({ applied: ["scaling.min_nodes"], needsRestart: [{ key: "master.listen" }], ignored: ["agent.name"] });
    expect(plan.config.scaling.min_nodes).toBe(2);
    expect(plan.config.master.listen).toEqual({ host: "127.0.0.1", port: 7300 });
  });

  test("aws.aws_secret_key applies now (the keys come as a pair)", () => {
    const running = config(["[aws]", "aws_access_key = AKIAOLDKEY0000000", "aws_secret_key = OLDSECRETVALUE"]);
    const plan = planReconfigure(running, config(["[aws]", "aws_access_key = AKIAOLDKEY0000000", "aws_secret_key = NEWSECRETVALUE"]));
    expect(plan.applied).toEqual(["aws.aws_secret_key"]);
    expect(plan.config.aws.aws_secret_key).toBe("NEWSECRETVALUE");
  });

  test("every secret stays redacted: the old token, the new token (not applied) and a removed AWS key", () => {
    const running = config(["[aws]", "aws_access_key = AKIAOLDKEY0000000", "aws_secret_key = OLDSECRETVALUE"]);
    const plan = planReconfigure(running, config(["[master]", `token = ${"n".repeat(32)}`]));
    expect(plan.config.secrets).toEqual(expect.arrayContaining([TOKEN, "n".repeat(32), "AKIAOLDKEY0000000"]));
    expect(plan.config.aws.aws_access_key).toBe("");
  });
});
