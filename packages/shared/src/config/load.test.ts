import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { AutoscalerError } from "../errors.js";
import { loadConfig, parseConfig, resolveConfigPath, type Config, type ConfigResult } from "./load.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const DIR = "/srv/autoscaler";
const FILE = path.join(DIR, "autoscaler.ini");
const HOME = "/home/operator";

const parse = (text: string): ConfigResult => parseConfig(text, FILE, { home: HOME });

/** Parse and insist that it worked, so a test of a value fails with the errors in view. */
function parseOk(text: string): Config {
  const result = parse(text);
  expect(result.errors).toEqual([]);
  expect(result.config).toBeDefined();
  return result.config!;
}

/** Read a dotted path such as "scaling.window" out of the config. */
function pick(config: Config, dotted: string): unknown {
  return dotted.split(".").reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], config);
}

describe("parseConfig with an empty ini", () => {
  test.each([
    ["machine.scale_up_command", ""],
    ["machine.scale_down_command", ""],
    ["machine.launch_timeout", 600],
    ["machine.command_timeout", 120],
    ["haproxy.servers", []],
    ["haproxy.server_line", "server $NAME $IP:$PORT check"],
    ["haproxy.backend", "autoscaler"],
    ["haproxy.template", path.join(DIR, "haproxy.cfg.tmpl")],
    ["haproxy.known_hosts", path.join(DIR, "known_hosts")],
    ["haproxy.config", "/etc/haproxy/haproxy.cfg"],
    ["haproxy.check_command", "haproxy -c -f $CONFIG"],
    ["haproxy.reload_command", "systemctl reload haproxy"],
    ["haproxy.runtime_socket", ""],
    ["master.listen", { host: "127.0.0.1", port: 7300 }],
    ["master.metrics_listen", { host: "127.0.0.1", port: 9717 }],
    ["master.token", ""],
    ["master.role", "auto"],
    ["master.state_dir", "/var/lib/autoscaler"],
    ["master.interval", 1],
    ["scaling.mode", "target"],
    ["scaling.target_cpu", 60],
    ["scaling.tolerance", 0.1],
    ["scaling.scale_down_window", 300],
    ["scaling.predictive", "off"],
    ["scaling.scale_up_threshold", 75],
    ["scaling.scale_down_threshold", 25],
    ["scaling.window", 60],
    ["scaling.cooldown", undefined],
    ["cooldowns", { up: 30, down: 0 }],
    ["scaling.min_nodes", 1],
    ["scaling.max_nodes", 10],
    ["scaling.step", 1],
    ["scaling.scale_down_order", "oldest"],
    ["scaling.drain_seconds", 30],
    ["scaling.node_timeout", 30],
    ["scaling.forget_after", 600],
    ["agent.name", ""],
    ["agent.address", ""],
    ["agent.port", 80],
    ["agent.instance_id", ""],
    ["agent.interval", 5],
    ["agent.health_url", ""],
    ["agent.cpu_source", { kind: "system" }],
    ["awsRegion", ""],
    ["file", FILE],
    ["dir", DIR],
    ["hostsDir", path.join(DIR, "hosts.d")],
    ["secrets", []],
  ])("%s defaults to %j", (key, expected) => {
    expect(pick(parseOk(""), key)).toEqual(expected);
  });

  test("an empty ini only warns that the token is empty", () => {
    const { warnings } = parse("");
    expect(warnings.map((w) => w.subject)).toEqual(["master.token"]);
  });
});

describe("parseConfig resolves paths against the config file's folder", () => {
  test.each([
    ["a relative template", "[haproxy]\ntemplate = tmpl/haproxy.cfg.tmpl", "haproxy.template", "/srv/autoscaler/tmpl/haproxy.cfg.tmpl"],
    ["a relative config", "[haproxy]\nconfig = haproxy.cfg", "haproxy.config", "/srv/autoscaler/haproxy.cfg"],
    ["a config in a sibling folder", "[haproxy]\nconfig = ../haproxy/haproxy.cfg", "haproxy.config", "/srv/haproxy/haproxy.cfg"],
    ["an absolute config", "[haproxy]\nconfig = /etc/haproxy/other.cfg", "haproxy.config", "/etc/haproxy/other.cfg"],
    ["a relative known_hosts", "[haproxy]\nknown_hosts = ssh/known_hosts", "haproxy.known_hosts", "/srv/autoscaler/ssh/known_hosts"],
    ["a known_hosts under ~/", "[haproxy]\nknown_hosts = ~/.ssh/known_hosts", "haproxy.known_hosts", "/home/operator/.ssh/known_hosts"],
    ["a relative runtime_socket", "[haproxy]\nruntime_socket = run/admin.sock", "haproxy.runtime_socket", "/srv/autoscaler/run/admin.sock"],
    ["a relative state_dir", "[master]\nstate_dir = state", "master.state_dir", "/srv/autoscaler/state"],
    ["a state_dir of ~ alone", "[master]\nstate_dir = ~", "master.state_dir", "/home/operator"],
    ["a relative pid: cpu_source", "[agent]\ncpu_source = pid:run/app.pid", "agent.cpu_source", { kind: "pid", pidFile: "/srv/autoscaler/run/app.pid" }],
    ["a relative cgroup: cpu_source", "[agent]\ncpu_source = cgroup:cg/web", "agent.cpu_source", { kind: "cgroup", path: "/srv/autoscaler/cg/web" }],
    [
      "an absolute cgroup: cpu_source",
      "[agent]\ncpu_source = cgroup:/sys/fs/cgroup/web.slice",
      "agent.cpu_source",
      { kind: "cgroup", path: "/sys/fs/cgroup/web.slice" },
    ],
    [
      "a relative ssh -i key in ssh_command",
      "[haproxy]\nssh_command = ssh -i keys/id_ed25519 web@$HOST",
      "ssh.identityFile",
      "/srv/autoscaler/keys/id_ed25519",
    ],
    ["a ~/ ssh -i key in ssh_command", "[haproxy]\nssh_command = ssh -i ~/.ssh/id web@$HOST", "ssh.identityFile", "/home/operator/.ssh/id"],
    ["a relative -i key in ssh_params", "[haproxy]\nssh_user = web\nssh_params = -i keys/id", "ssh.identityFile", "/srv/autoscaler/keys/id"],
    [
      "a relative -o IdentityFile in ssh_command",
      "[haproxy]\nssh_command = ssh -o IdentityFile=keys/id web@$HOST",
      "ssh.identityFile",
      "/srv/autoscaler/keys/id",
    ],
  ])("%s", (_what, ini, key, expected) => {
    expect(pick(parseOk(ini), key)).toEqual(expected);
  });
});

describe("parseConfig reads the original tool's inis unchanged", () => {
  const readFixture = (name: string) => fs.readFile(path.join(REPO_ROOT, "test/fixtures", name), "utf8");

  test("version 1, with ssh_command", async () => {
    const result = parse(await readFixture("original-v1.ini"));
    expect(result.errors).toEqual([]);
    expect(result.warnings.filter((w) => /unknown/.test(w.message))).toEqual([]);
    const c = result.config!;
    expect(c.awsRegion).toBe("us-east-1");
    expect(c.aws.aws_access_key).toBe("AKIAORIGINALEXAMPLE1");
    expect(c.machine.scale_up_command).toMatch(/^aws ec2 run-instances .*--subnet-id subnet-6e7f829e$/);
    expect(c.haproxy.servers).toEqual([
      { host: "10.0.0.10", sshPort: undefined },
      { host: "10.0.0.11", sshPort: undefined },
    ]);
    expect(c.haproxy.server_line).toBe("server $SERVER $HOST:80 check");
    expect(c.ssh).toEqual({ user: "ubuntu", identityFile: "/home/ubuntu/.ssh/proxy.pem", port: undefined });
    expect(c.secrets).toEqual(["AKIAORIGINALEXAMPLE1", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYORIGINALKEY"]);
  });

  test("version 2, with ssh_user and ssh_params", async () => {
    const result = parse(await readFixture("original-v2.ini"));
    expect(result.errors).toEqual([]);
    expect(result.warnings.filter((w) => /unknown/.test(w.message))).toEqual([]);
    const c = result.config!;
    expect(c.awsRegion).toBe("eu-west-1");
    expect(c.haproxy.servers.map((s) => s.host)).toEqual(["proxy-1.example.com", "proxy-2.example.com"]);
    expect(c.haproxy.server_line).toBe("server $SERVER $HOST:8080 check inter 2000");
    expect(c.ssh).toEqual({ user: "ubuntu", identityFile: "/home/ubuntu/.ssh/proxy.pem", port: 2222 });
  });
});

describe("parseConfig reads the shipped default ini", () => {
  test("with no errors and no unknown keys, every key at its documented default", async () => {
    const text = await fs.readFile(path.join(REPO_ROOT, "etc/autoscaler.ini"), "utf8");
    const result = parse(text);
    expect(result.errors).toEqual([]);
    expect(result.warnings.map((w) => w.subject)).toEqual(["master.token"]);
    const c = result.config!;
    const defaults = parseOk("");
    expect(c.scaling).toEqual(defaults.scaling);
    expect(c.master).toEqual(defaults.master);
    expect(c.agent).toEqual(defaults.agent);
    // The one deliberate difference: an installation made by init points runtime_socket at the
    // default template's admin socket; an ini without the key keeps the reload path.
    expect(c.haproxy.runtime_socket).toBe("/run/haproxy/admin.sock");
    expect({ ...c.haproxy, ssh_command: "", runtime_socket: "" }).toEqual(defaults.haproxy);
    expect(c.ssh).toEqual({ user: "autoscaler", identityFile: "/etc/autoscaler/node_key", port: 22 });
    // A fresh installation launches nothing until the operator sets the command (the AWS one is a comment).
    expect(c.machine.scale_up_command).toBe("");
    expect(text).toMatch(/^;\s+scale_up_command = aws ec2 run-instances .*--count "1:\$COUNT" --output json$/m);
  });
});

describe("parseConfig reads values", () => {
  test.each([
    ["500ms as half a second", "[master]\ninterval = 500ms", "master.interval", 0.5],
    ["5m as 300 seconds", "[scaling]\nwindow = 5m", "scaling.window", 300],
    ["1h as 3600 seconds", "[machine]\nlaunch_timeout = 1h", "machine.launch_timeout", 3600],
    ["30s as 30 seconds", "[scaling]\nnode_timeout = 30s", "scaling.node_timeout", 30],
    ["a fraction of a second", "[agent]\ninterval = 1.5", "agent.interval", 1.5],
    ["a cooldown of 0 (allowed)", "[scaling]\ncooldown = 0", "scaling.cooldown", 0],
    ["a drain of 0 (allowed)", "[scaling]\ndrain_seconds = 0", "scaling.drain_seconds", 0],
    ["a threshold with a % sign", "[scaling]\nscale_up_threshold = 80%", "scaling.scale_up_threshold", 80],
    ["an enum in upper case", "[scaling]\nmode = AVERAGE", "scaling.mode", "average"],
    ["min_nodes 0", "[scaling]\nmin_nodes = 0", "scaling.min_nodes", 0],
    [
      "servers with ssh ports and IPv6",
      "[haproxy]\nservers = p1:2222, [2001:db8::1]:22, p2",
      "haproxy.servers",
      [
        { host: "p1", sshPort: 2222 },
        { host: "2001:db8::1", sshPort: 22 },
        { host: "p2", sshPort: undefined },
      ],
    ],
    ["a bracketed IPv6 agent address without brackets", "[agent]\naddress = [2001:db8::5]", "agent.address", "2001:db8::5"],
    ["listen on localhost", "[master]\nlisten = localhost:7400", "master.listen", { host: "localhost", port: 7400 }],
    ["listen on [::1]", "[master]\nlisten = [::1]:7400", "master.listen", { host: "::1", port: 7400 }],
    ["listen on 127.0.0.2", "[master]\nlisten = 127.0.0.2:7400", "master.listen", { host: "127.0.0.2", port: 7400 }],
    ["an empty metrics_listen as off", "[master]\nmetrics_listen =", "master.metrics_listen", undefined],
    ["region as the AWS region", "[aws]\nregion = ap-south-1", "awsRegion", "ap-south-1"],
    ["aws_default_region as the AWS region", "[aws]\naws_default_region = us-west-2", "awsRegion", "us-west-2"],
    ["the ssh port from -p", "[haproxy]\nssh_command = ssh -p 2200 web@$HOST", "ssh.port", 2200],
    ["the ssh port from -o Port=", "[haproxy]\nssh_command = ssh -o Port=2201 web@$HOST", "ssh.port", 2201],
    ["the ssh user from -l", "[haproxy]\nssh_command = ssh -l deploy $HOST", "ssh.user", "deploy"],
    ["a ${HOST} target", "[haproxy]\nssh_command = ssh deploy@${HOST}", "ssh.user", "deploy"],
    ["resources mode", "[scaling]\nmode = resources\nmin_available = 12.5", "scaling.min_available", 12.5],
    ["a node_capacity", "[scaling]\nnode_capacity = 8", "scaling.node_capacity", 8],
    ["an empty node_capacity as the nodes' highest report", "[scaling]\nnode_capacity =", "scaling.node_capacity", undefined],
    ["a dotted capacity_key", "[agent]\ncapacity_key = slots.free", "agent.capacity_key", "slots.free"],
    ["a leave_url", "[agent]\nleave_url = http://127.0.0.1:8080/state", "agent.leave_url", "http://127.0.0.1:8080/state"],
  ])("reads %s", (_what, ini, key, expected) => {
    expect(pick(parseOk(ini), key)).toEqual(expected);
  });

  test.each([
    ["scale_up_cooldown overrides cooldown for scale-up only", "cooldown = 120\nscale_up_cooldown = 30", { up: 30, down: 120 }],
    ["scale_down_cooldown overrides cooldown for scale-down only", "cooldown = 120\nscale_down_cooldown = 10m", { up: 120, down: 600 }],
    ["an override of 0 turns that cooldown off", "scale_up_cooldown = 0\nmode = instance", { up: 0, down: 300 }],
    ["the threshold modes keep the seed's 300 s", "mode = average", { up: 300, down: 300 }],
    ["target mode: 30 s up (sized by the deficit) and 0 s down (scale_down_window holds it)", "mode = target", { up: 30, down: 0 }],
    ["resources mode as target mode", "mode = resources", { up: 30, down: 0 }],
    ["empty overrides fall back to cooldown", "cooldown = 45\nscale_up_cooldown =\nscale_down_cooldown =", { up: 45, down: 45 }],
  ])("%s", (_what, scaling, expected) => {
    expect(parseOk(`[scaling]\n${scaling}`).cooldowns).toEqual(expected);
  });

  test("region wins over aws_default_region, with a warning", () => {
    const result = parse("[aws]\nregion = eu-central-1\naws_default_region = us-east-1\n");
    expect(result.config?.awsRegion).toBe("eu-central-1");
    expect(result.warnings.map((w) => w.subject)).toContain("aws.aws_default_region");
  });

  test("ssh_command wins over ssh_user and ssh_params, with a warning", () => {
    const result = parse("[haproxy]\nssh_command = ssh -p 22 a@$HOST\nssh_user = b\nssh_params = -p 2222\n");
    expect(result.config?.ssh).toEqual({ user: "a", identityFile: undefined, port: 22 });
    expect(result.warnings.map((w) => w.subject)).toContain("haproxy.ssh_user");
  });
});

describe("parseConfig refuses", () => {
  test.each([
    ["min_nodes above max_nodes", "[scaling]\nmin_nodes = 5\nmax_nodes = 2", "scaling.min_nodes", /5 is greater than scaling\.max_nodes \(2\)/],
    [
      "an AWS access key without its secret key",
      "[aws]\naws_access_key = AKIAEXAMPLE000001",
      "aws.aws_secret_key",
      /is empty while aws\.aws_access_key is set; expected both keys, or neither/,
    ],
    [
      "an AWS secret key without its access key",
      "[aws]\naws_secret_key = wJalrXUtnFEMI/K7MDENG",
      "aws.aws_access_key",
      /is empty while aws\.aws_secret_key is set/,
    ],
    [
      "a session token without keys",
      "[aws]\nsession_token = FwoGZXIvYXdzEXAMPLE",
      "aws.session_token",
      /is set without aws\.aws_access_key and aws\.aws_secret_key/,
    ],
    [
      "equal thresholds",
      "[scaling]\nscale_up_threshold = 60\nscale_down_threshold = 60",
      "scaling.scale_down_threshold",
      /60 is not below scaling\.scale_up_threshold \(60\)/,
    ],
    [
      "a down threshold above the up threshold",
      "[scaling]\nscale_up_threshold = 50\nscale_down_threshold = 70",
      "scaling.scale_down_threshold",
      /70 is not below/,
    ],
    ["a negative window", "[scaling]\nwindow = -5", "scaling.window", /"-5" is not valid; expected a duration greater than 0/],
    ["a window of 0", "[scaling]\nwindow = 0", "scaling.window", /"0" is not valid; expected a duration greater than 0/],
    ["an empty window", "[scaling]\nwindow =", "scaling.window", /expected a duration/],
    ["a duration in words", "[scaling]\nwindow = 5 minutes", "scaling.window", /"5 minutes" is not valid/],
    ["a duration in days", "[scaling]\nforget_after = 1d", "scaling.forget_after", /"1d" is not valid/],
    ["a negative cooldown", "[scaling]\ncooldown = -1", "scaling.cooldown", /expected a duration of 0 or more/],
    ["a negative cooldown override", "[scaling]\nscale_up_cooldown = -1", "scaling.scale_up_cooldown", /"-1" is not valid/],
    ["listen on 0.0.0.0", "[master]\nlisten = 0.0.0.0:7300", "master.listen", /"0\.0\.0\.0:7300" is not valid; expected a loopback address/],
    ["listen on a private address", "[master]\nlisten = 10.0.0.1:7300", "master.listen", /"10\.0\.0\.1:7300" is not valid; expected a loopback/],
    ["listen on [::]", "[master]\nlisten = [::]:7300", "master.listen", /"\[::\]:7300" is not valid; expected a loopback/],
    ["listen without a port", "[master]\nlisten = 127.0.0.1", "master.listen", /expected a loopback address and port/],
    ["listen on port 0", "[master]\nlisten = 127.0.0.1:0", "master.listen", /expected a loopback address and port/],
    ["an empty listen", "[master]\nlisten =", "master.listen", /expected a loopback/],
    ["metrics_listen on 0.0.0.0", "[master]\nmetrics_listen = 0.0.0.0:9717", "master.metrics_listen", /"0\.0\.0\.0:9717" is not valid; expected a loopback/],
    ["metrics_listen on a public name", "[master]\nmetrics_listen = metrics.example.com:9717", "master.metrics_listen", /expected a loopback/],
    [
      "metrics_listen on the listen address",
      "[master]\nlisten = 127.0.0.1:7300\nmetrics_listen = 127.0.0.1:7300",
      "master.metrics_listen",
      /same address as master\.listen/,
    ],
    ["an unknown scaling mode", "[scaling]\nmode = fastest", "scaling.mode", /"fastest" is not valid; expected one of target, instance, average/],
    ["a target_cpu over 100", "[scaling]\ntarget_cpu = 150", "scaling.target_cpu", /"150" is not valid; expected a CPU percentage/],
    ["a tolerance over 1", "[scaling]\ntolerance = 1.5", "scaling.tolerance", /"1.5" is not valid; expected a fraction from 0 to 1/],
    ["predictive neither on nor off", "[scaling]\npredictive = maybe", "scaling.predictive", /expected one of off, on/],
    ["a scale_down_limit of 0", "[scaling]\nscale_down_limit = 0", "scaling.scale_down_limit", /expected a whole number of at least 1/],
    ["an unknown role", "[master]\nrole = leader", "master.role", /expected one of auto, decider, follower/],
    ["an unknown scale_down_order", "[scaling]\nscale_down_order = random", "scaling.scale_down_order", /expected one of oldest, newest/],
    ["agent port 0", "[agent]\nport = 0", "agent.port", /"0" is not valid; expected a port from 1 to 65535/],
    ["agent port 65536", "[agent]\nport = 65536", "agent.port", /"65536" is not valid; expected a port/],
    ["agent port abc", "[agent]\nport = abc", "agent.port", /"abc" is not valid; expected a port/],
    ["max_nodes 0", "[scaling]\nmax_nodes = 0", "scaling.max_nodes", /expected a whole number of at least 1/],
    ["a fractional step", "[scaling]\nstep = 1.5", "scaling.step", /expected a whole number of at least 1/],
    ["a negative min_nodes", "[scaling]\nmin_nodes = -1", "scaling.min_nodes", /expected a whole number of at least 0/],
    ["a threshold of 0", "[scaling]\nscale_down_threshold = 0", "scaling.scale_down_threshold", /greater than 0 and at most 100/],
    ["a threshold over 100", "[scaling]\nscale_up_threshold = 101", "scaling.scale_up_threshold", /greater than 0 and at most 100/],
    [
      "a server_line without $IP",
      "[haproxy]\nserver_line = server $NAME 10.0.0.1:80 check",
      "haproxy.server_line",
      /expected a line with \$NAME \(or \$SERVER\) and \$IP/,
    ],
    ["a server_line without $NAME", "[haproxy]\nserver_line = server web $IP:$PORT check", "haproxy.server_line", /expected a line with \$NAME/],
    [
      "an ssh_command that is not ssh",
      "[haproxy]\nssh_command = scp -i key ubuntu@$HOST",
      "haproxy.ssh_command",
      /"scp -i key ubuntu@\$HOST" is not valid; expected an ssh command line/,
    ],
    ["an ssh_command without $HOST", "[haproxy]\nssh_command = ssh -i key ubuntu@proxy.example.com", "haproxy.ssh_command", /expected the target USER@\$HOST/],
    ["an ssh_command without a target", "[haproxy]\nssh_command = ssh -i key", "haproxy.ssh_command", /expected the target USER@\$HOST/],
    ["an ssh_command with a bad -p", "[haproxy]\nssh_command = ssh -p 0 ubuntu@$HOST", "haproxy.ssh_command", /a port from 1 to 65535 after -p/],
    ["an ssh_command with an unknown option", "[haproxy]\nssh_command = ssh --bogus ubuntu@$HOST", "haproxy.ssh_command", /"--bogus" is not one/],
    ["ssh_params with a bad port", "[haproxy]\nssh_user = ubuntu\nssh_params = -p abc", "haproxy.ssh_params", /"-p abc" is not valid/],
    ["servers with a host that has a space", "[haproxy]\nservers = 10.0.0.1, bad host", "haproxy.servers", /"bad host" is not a valid host/],
    ["servers with a bad IPv4 address", "[haproxy]\nservers = 999.1.1.1", "haproxy.servers", /"999\.1\.1\.1" is not a valid host/],
    ["servers with a bad ssh port", "[haproxy]\nservers = proxy:99999", "haproxy.servers", /"proxy:99999" has a bad port/],
    ["a backend name with a space", "[haproxy]\nbackend = my backend", "haproxy.backend", /"my backend" is not valid; expected 1-63 characters/],
    ["an empty check_command", "[haproxy]\ncheck_command =", "haproxy.check_command", /may not be empty/],
    ["an empty reload_command", "[haproxy]\nreload_command =   ", "haproxy.reload_command", /may not be empty/],
    [
      "a command continued on a second line",
      "[machine]\nscale_up_command = aws ec2\n  run-instances",
      "machine.scale_up_command",
      /expected a single-line shell command/,
    ],
    ["an empty template path", "[haproxy]\ntemplate =", "haproxy.template", /may not be empty/],
    ["a bad agent address", "[agent]\naddress = 999.1.1.1", "agent.address", /"999\.1\.1\.1" is not valid/],
    ["a bad agent name", "[agent]\nname = web/1", "agent.name", /"web\/1" is not valid/],
    ["a health_url that is not http", "[agent]\nhealth_url = ftp://x/", "agent.health_url", /an http:\/\/ or https:\/\/ URL/],
    ["an unknown cpu_source", "[agent]\ncpu_source = disk", "agent.cpu_source", /system, cgroup:PATH .* or pid:PIDFILE/],
    ["a negative min_available", "[scaling]\nmin_available = -1", "scaling.min_available", /"-1" is not valid; expected a number of resource units, 0 or more/],
    ["a node_capacity of 0", "[scaling]\nnode_capacity = 0", "scaling.node_capacity", /expected a number of resource units greater than 0/],
    ["a capacity_url that is not http", "[agent]\ncapacity_url = file:///etc/passwd", "agent.capacity_url", /an http:\/\/ or https:\/\/ URL/],
    ["a leave_key with a space", "[agent]\nleave_key = please leave", "agent.leave_key", /expected a JSON key such as leave or slots\.free/],
  ])("%s, naming the key", (_what, ini, subject, message) => {
    const result = parse(ini);
    expect(result.config).toBeUndefined();
    expect(result.errors.map((e) => e.subject)).toEqual([subject]);
    expect(result.errors[0]?.message).toMatch(message);
    expect(result.errors[0]?.message).toMatch(/expected/);
  });

  test("a bad ini with three problems yields exactly three messages, one per key", () => {
    const result = parse("[scaling]\nmode = fastest\nwindow = 0\n\n[agent]\nport = 0\n");
    expect(result.errors.map((e) => e.subject).sort()).toEqual(["agent.port", "scaling.mode", "scaling.window"]);
  });

  test("a key before any section is reported with its line", () => {
    const result = parse("; comment\nregion = us-east-1\n[aws]\n");
    expect(result.config).toBeUndefined();
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]?.subject).toBe("autoscaler.ini");
    expect(result.errors[0]?.message).toMatch(/line 2 has a key before any \[section\]/);
  });

  test("a malformed line is reported with its number", () => {
    const result = parse("[aws]\nregion = us-east-1\nthis line is wrong\n");
    expect(result.config).toBeUndefined();
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]?.subject).toBe("autoscaler.ini");
    expect(result.errors[0]?.message).toMatch(/^line 3 /);
  });
});

describe("parseConfig never shows a secret", () => {
  const SECRET = "s3cr3t-Value-7f1c2a9e";
  test.each([
    ["a token with a continuation line", `[master]\ntoken = ${SECRET}\n  more`, "master.token"],
    ["an aws_secret_key with a continuation line", `[aws]\naws_secret_key = ${SECRET}\n  more`, "aws.aws_secret_key"],
    ["an aws_access_key with a continuation line", `[aws]\naws_access_key = ${SECRET}\n  more`, "aws.aws_access_key"],
    ["a session_token with a continuation line", `[aws]\nsession_token = ${SECRET}\n  more`, "aws.session_token"],
  ])("not even for %s", (_what, ini, subject) => {
    const result = parse(ini);
    expect(result.errors.map((e) => e.subject)).toEqual([subject]);
    expect(result.errors[0]?.message).toContain("[redacted]");
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  test.each([
    ["a short token", "[master]\ntoken = Tk9zQ1", "Tk9zQ1"],
    ["a valid token next to a bad key", `[master]\ntoken = ${SECRET}\nrole = leader`, SECRET],
    ["a secret key next to a bad key", `[aws]\naws_secret_key = ${SECRET}\n[scaling]\nmode = x`, SECRET],
    ["a secret under a misspelt key", `[aws]\naws_secret_keys = ${SECRET}`, SECRET],
  ])("not in errors or warnings for %s", (_what, ini, secret) => {
    const result = parse(ini);
    expect(result.errors.length + result.warnings.length).toBeGreaterThan(0);
    const messages = [...result.errors, ...result.warnings].map((p) => `${p.subject} ${p.message}`).join("\n");
    expect(messages).not.toContain(secret);
  });
});

test("resources mode with min_available 0 is a warning naming the key", () => {
  const result = parse("[scaling]\nmode = resources\n");
  expect(result.errors).toEqual([]);
  expect(result.warnings.find((w) => w.subject === "scaling.min_available")?.message).toMatch(/is 0 in resources mode/);
});

describe("parseConfig warns about what it does not know", () => {
  test.each([
    [
      "a misspelt key",
      "[scaling]\nscale_up_treshold = 80",
      "scaling.scale_up_treshold",
      /unknown key on line 2, ignored \(did you mean "scale_up_threshold"\?\)/,
    ],
    ["a key of another section", "[scaling]\nport = 80", "scaling.port", /unknown key on line 2, ignored$/],
    ["a key unlike any other", "[agent]\nbanana = 1", "agent.banana", /unknown key on line 2, ignored$/],
    ["a misspelt section", "[scalng]\nwindow = 60", "[scalng]", /unknown section, ignored \(did you mean "scaling"\?\)/],
    ["a section unlike any other", "[extras]\nx = 1", "[extras]", /unknown section, ignored$/],
  ])("%s, as a warning and not an error", (_what, ini, subject, message) => {
    const result = parse(ini);
    expect(result.errors).toEqual([]);
    expect(result.config).toBeDefined();
    const w = result.warnings.find((x) => x.subject === subject);
    expect(w?.message).toMatch(message);
  });
});

describe("resolveConfigPath", () => {
  test.each([
    ["--config wins over the environment", "a.ini", { AUTOSCALER_CONFIG: "/x/b.ini" }, "/srv/site/a.ini"],
    ["AUTOSCALER_CONFIG is used without --config", undefined, { AUTOSCALER_CONFIG: "b.ini" }, "/srv/site/b.ini"],
    ["the default is /etc/autoscaler/autoscaler.ini", undefined, {}, "/etc/autoscaler/autoscaler.ini"],
  ])("%s", (_what, flag, env, expected) => {
    expect(resolveConfigPath(flag, env, "/srv/site")).toBe(expected);
  });
});

describe("loadConfig", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-load-"));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function writeIni(text: string, mode = 0o600): Promise<string> {
    const file = path.join(dir, "autoscaler.ini");
    await fs.writeFile(file, text, { mode });
    await fs.chmod(file, mode);
    return file;
  }

  test("a missing file is exit 78 and names the file", async () => {
    const file = path.join(dir, "missing.ini");
    const err = await loadConfig(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AutoscalerError);
    expect(err).toMatchObject({ code: "AUTOSCALER_CONFIG_NOT_FOUND", exitCode: 78 });
    expect((err as Error).message).toContain(file);
  });

  test("an invalid file is exit 78 with one detail per problem", async () => {
    const file = await writeIni("[scaling]\nmode = fastest\n[master]\nlisten = 0.0.0.0:7300\n");
    const err = await loadConfig(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AutoscalerError);
    const e = err as AutoscalerError;
    expect(e).toMatchObject({ code: "AUTOSCALER_CONFIG_INVALID", exitCode: 78 });
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/2 problems/);
    // Two problems, then the warnings (here the token is empty), which may explain them.
    expect(e.details.filter((d) => !d.startsWith("warning: "))).toHaveLength(2);
    expect(e.details.some((d) => d.startsWith("scaling.mode: "))).toBe(true);
    expect(e.details.some((d) => d.startsWith("master.listen: "))).toBe(true);
    expect(e.details.at(-1)).toMatch(/^warning: master\.token: /);
  });

  test("a file readable by others loads with a warning that names it and says chmod 600", async () => {
    const file = await writeIni("[master]\ntoken = 0123456789abcdef0123\n", 0o644);
    const { config, warnings } = await loadConfig(file);
    expect(config.file).toBe(file);
    const w = warnings.find((x) => x.subject === file);
    expect(w?.message).toContain(`chmod 600 ${file}`);
    expect(w?.message).toContain("0644");
  });

  test("a file of mode 0600 loads without a permissions warning, paths relative to its folder", async () => {
    const file = await writeIni("[master]\ntoken = 0123456789abcdef0123\nstate_dir = state\n[haproxy]\nconfig = haproxy.cfg\n");
    const { config, warnings } = await loadConfig(file, { home: "/home/operator" });
    expect(warnings).toEqual([]);
    expect(config.dir).toBe(dir);
    expect(config.master.state_dir).toBe(path.join(dir, "state"));
    expect(config.haproxy.config).toBe(path.join(dir, "haproxy.cfg"));
    expect(config.hostsDir).toBe(path.join(dir, "hosts.d"));
  });
});

describe("problems found in review", () => {
  test("cross-field problems are reported in the same run as single-key problems", () => {
    const text = "[scaling]\nwindow = -5\nmin_nodes = 9\nmax_nodes = 3\nscale_up_threshold = 20\nscale_down_threshold = 30\n";
    const r = parseConfig(text, "/etc/autoscaler/autoscaler.ini", { home: "/root" });
    expect(r.config).toBeUndefined();
    expect(r.errors.map((e) => e.subject).sort()).toEqual(["scaling.min_nodes", "scaling.scale_down_threshold", "scaling.window"]);
  });
  test("a rule whose key failed to parse does not also report against the default", () => {
    const r = parseConfig("[scaling]\nmax_nodes = lots\nmin_nodes = 11\n", "/x/a.ini", { home: "/root" });
    expect(r.errors.map((e) => e.subject)).toEqual(["scaling.max_nodes"]);
  });
  test("a malformed line is reported by number without echoing its text (it may be a secret)", () => {
    const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const r = parseConfig(`[aws]\naws_secret_key ${secret}\n`, "/x/a.ini", { home: "/root" });
    const all = [...r.errors, ...r.warnings].map((p) => `${p.subject} ${p.message}`).join("\n");
    expect(all).toMatch(/line 2 is neither/);
    expect(all).not.toContain(secret);
  });
});

test("a secret with a colon whose '=' was lost is not echoed as an unknown key", () => {
  const r = parseConfig("[aws]\naws_secret_key abc:SECRETPART123\n", "/x/a.ini", { home: "/root" });
  const all = [...r.errors, ...r.warnings].map((p) => `${p.subject} ${p.message}`).join("\n");
  expect(all).toMatch(/line 2 is neither/);
  expect(all).not.toContain("abc");
  expect(all).not.toContain("SECRETPART123");
});

describe("[policy:NAME] and [schedule:NAME] sections", () => {
  test("policies and schedules are read in ini order; webhook_listen is off by default", () => {
    const c = parseOk(
      "[policy:up]\nchange = +2\ncooldown = 5m\n[policy:down]\nchange_percent = -25%\n[policy:four]\ndesired = 4\n" +
        "[schedule:morning]\ncron = 0  8 * * 1-5\ntimezone = Europe/Amsterdam\npolicy = up\n[schedule:night]\ncron = 0 22 * * *\nmax_nodes = 3\ndesired = 1\ngrace = 0\n",
    );
    expect(c.master.webhook_listen).toBeUndefined();
    expect(c.policies).toEqual([
      { name: "up", action: { kind: "change", nodes: 2 }, cooldown: 300 },
      { name: "down", action: { kind: "percent", percent: -25 }, cooldown: 0 },
      { name: "four", action: { kind: "desired", nodes: 4 }, cooldown: 0 },
    ]);
    expect(c.schedules).toEqual([
      { name: "morning", cron: "0 8 * * 1-5", timezone: "Europe/Amsterdam", action: { kind: "policy", policy: "up" }, grace: 300 },
      { name: "night", cron: "0 22 * * *", timezone: "", action: { kind: "limits", maxNodes: 3, desired: 1 }, grace: 0 },
    ]);
  });

  test("webhook_listen may be any address (a monitoring system must reach it)", () => {
    expect(parseOk("[master]\nwebhook_listen = 0.0.0.0:7310\n").master.webhook_listen).toEqual({ host: "0.0.0.0", port: 7310 });
    expect(parse("[master]\nwebhook_listen = nowhere\n").errors.map((e) => e.subject)).toEqual(["master.webhook_listen"]);
    expect(parse("[master]\nwebhook_listen = 0.0.0.0:7310\n").warnings.map((w) => w.subject)).toContain("master.webhook_listen");
    expect(parse("[master]\nwebhook_listen = 127.0.0.1:7310\n").warnings.map((w) => w.subject)).not.toContain("master.webhook_listen");
    expect(parse("[master]\nwebhook_listen = 127.0.0.1:9717\n").errors).toEqual([
      { subject: "master.webhook_listen", message: "uses the same port as master.metrics_listen (127.0.0.1:9717); expected another port" },
    ]);
  });

  test.each([
    ["two of change, change_percent, desired", "[policy:up]\nchange = +1\ndesired = 3\n", "[policy:up]", /has change and desired; expected exactly one of/],
    ["none of them", "[policy:up]\ncooldown = 60\n", "[policy:up]", /has none; expected exactly one of/],
    ["a change of 0", "[policy:up]\nchange = 0\n", "policy:up.change", /not 0/],
    ["a percent that is not a number", "[policy:up]\nchange_percent = lots\n", "policy:up.change_percent", /signed percentage/],
    ["a bad name", "[policy:up down]\nchange = +1\n", "[policy:up down]", /the name "up down" is not valid/],
    ["a cron of 6 fields", "[schedule:s]\ncron = 0 0 8 * * *\nmin_nodes = 2\n", "schedule:s.cron", /requires exactly 5 parts/],
    ["a cron value out of range", "[schedule:s]\ncron = 61 8 * * *\nmin_nodes = 2\n", "schedule:s.cron", /Invalid value for minute/],
    ["no cron", "[schedule:s]\nmin_nodes = 2\n", "schedule:s.cron", /5-field cron expression/],
    ["a time zone that does not exist", "[schedule:s]\ncron = 0 8 * * *\ntimezone = Mars/Olympus\nmin_nodes = 2\n", "schedule:s.timezone", /IANA time zone/],
    ["no action", "[schedule:s]\ncron = 0 8 * * *\n", "[schedule:s]", /has no action/],
    ["a policy and limits", "[policy:up]\nchange = +1\n[schedule:s]\ncron = 0 8 * * *\npolicy = up\ndesired = 3\n", "[schedule:s]", /has both/],
    ["a policy the ini does not have", "[schedule:s]\ncron = 0 8 * * *\npolicy = nope\n", "schedule:s.policy", /not a policy of this ini/],
    ["min above max", "[schedule:s]\ncron = 0 8 * * *\nmin_nodes = 5\nmax_nodes = 3\n", "schedule:s.min_nodes", /greater than schedule:s.max_nodes/],
  ])("%s is an error naming the section (and key)", (_name, text, subject, message) => {
    const r = parse(text);
    expect(r.config).toBeUndefined();
    expect(r.errors.map((e) => e.subject)).toEqual([subject]);
    expect(r.errors[0]!.message).toMatch(message);
  });

  test("an unknown key in a policy is a warning, as elsewhere", () => {
    const r = parse("[policy:up]\nchange = +1\ncooldwn = 60\n");
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => w.subject)).toContain("policy:up.cooldwn");
  });

  test("a bad ini exits 78 with the section and the field named", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-families-"));
    try {
      const file = path.join(dir, "autoscaler.ini");
      await fs.writeFile(file, "[schedule:morning]\ncron = 0 8 * *\nmin_nodes = 2\n", { mode: 0o600 });
      const err = await loadConfig(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AutoscalerError);
      expect((err as AutoscalerError).exitCode).toBe(78);
      expect((err as AutoscalerError).details?.[0]).toMatch(/^schedule:morning\.cron: "0 8 \* \*" is not valid/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
