/**
 * The command line: yargs parses, a handler records which command to run, and `run` executes
 * it and maps every error to one exit code in one place (printError). Only the bin calls
 * process.exit. `autoscaler agent` with only --config and --log-level starts from main.ts
 * without this parser; any other agent command line (--help, a mistake) comes here.
 */
import yargs from "yargs";
import { EXIT_USAGE, type LogLevel } from "@autoscaler/shared";
import { GLOBAL_OPTIONS } from "./global-options.js";
import type { Io } from "./io.js";
import { printError } from "./print-error.js";
import { version } from "./version.js";

type Action = () => Promise<number>;

/** Build the parser. Each handler only records the action; `run` awaits it after parsing. */
function buildParser(io: Io, setAction: (a: Action) => void) {
  const withGlobals = <T>(argv: T) => argv as T & { config?: string; logLevel?: LogLevel; json?: boolean };
  return yargs()
    .scriptName("autoscaler")
    .usage("$0 <command> [options]\n\nKeeps a web cluster behind HAProxy at the right size.")
    .option("config", GLOBAL_OPTIONS.config)
    .option("log-level", GLOBAL_OPTIONS["log-level"])
    .command(
      "init",
      "write the ini (0600), hosts.d/ and the HAProxy template",
      (y) =>
        y
          .option("force", { type: "boolean", default: false, describe: "overwrite an existing ini and template (hosts.d is never touched)" })
          .option("set", { type: "string", array: true, describe: "section.key=value to write into the new ini (repeatable)", requiresArg: true })
          .option("local", {
            type: "string",
            describe: "write a whole installation in DIR that runs as it is on this machine, as any user (loopback, sockets and state in DIR)",
            requiresArg: true,
          })
          .option("port", { type: "number", describe: "with --local: HAProxy's frontend port on 127.0.0.1 (default 8080)", requiresArg: true })
          .example("$0 init --local ./try", "a one-machine installation in ./try; it prints how to start HAProxy on it")
          .example("$0 init", "write /etc/autoscaler/autoscaler.ini and its neighbours")
          .example("$0 init --config ./demo/autoscaler.ini --set haproxy.config=haproxy.cfg", "a whole installation in one folder"),
      (argv) => setAction(async () => (await import("./commands/init.js")).runInit(io, withGlobals(argv))),
    )
    .command(
      "add-host <host> <port>",
      "add a backend to hosts.d, then regenerate and reload",
      (y) =>
        y
          .positional("host", { type: "string", describe: "IPv4, IPv6 or DNS name" })
          .positional("port", { type: "string", describe: "1-65535" })
          .option("name", { type: "string", describe: "backend name (default HOST-PORT)", requiresArg: true })
          .option("reload", { type: "boolean", default: true, describe: "reload HAProxy after regenerating (--no-reload to skip)" })
          .example("$0 add-host 10.0.0.5 8080 --name web-1", "add a hand-managed backend"),
      (argv) => setAction(async () => (await import("./commands/hosts.js")).runAddHost(io, withGlobals(argv) as never)),
    )
    .command(
      "remove-host <target>",
      "remove a backend (by name or host:port), then regenerate and reload",
      (y) =>
        y
          .positional("target", { type: "string", describe: "name or host:port" })
          .option("reload", { type: "boolean", default: true, describe: "reload HAProxy after regenerating (--no-reload to skip)" })
          .example("$0 remove-host web-1", "")
          .example("$0 remove-host 10.0.0.5:8080", ""),
      (argv) => setAction(async () => (await import("./commands/hosts.js")).runRemoveHost(io, withGlobals(argv) as never)),
    )
    .command(
      "hosts",
      "list backends: name, address, port, source, state",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/hosts.js")).runHosts(io, withGlobals(argv))),
    )
    .command(
      "node-credential <name>",
      "print the credential that lets one node register its own name only (made from [master] token)",
      (y) =>
        y
          .positional("name", { type: "string", demandOption: true, describe: "the node's [agent] name" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("sudo $0 node-credential web-1", "then on web-1: [agent] credential = <it>"),
      (argv) => setAction(async () => (await import("./commands/credentials.js")).runNodeCredential(io, withGlobals(argv) as never)),
    )
    .command(
      "trust <name> [instance-id]",
      "vouch for a node's instance id, so a scale-down may terminate it (a node's own report is never enough)",
      (y) =>
        y
          .positional("name", { type: "string", demandOption: true, describe: "a backend from autoscaler hosts" })
          .positional("instance-id", { type: "string", describe: "the id to trust (default: the one the node reported)" })
          .example("sudo $0 trust web-1 i-0123456789abcdef0", ""),
      (argv) => setAction(async () => (await import("./commands/credentials.js")).runTrust(io, withGlobals(argv) as never)),
    )
    .command(
      "generate",
      "render haproxy.cfg from the template and hosts.d; stage, check, swap",
      (y) =>
        y
          .option("output", { type: "string", describe: "write here instead of [haproxy] config; - prints", requiresArg: true })
          .option("reload", { type: "boolean", default: false, describe: "reload HAProxy and confirm the new worker" })
          .option("json", { type: "boolean", default: false, describe: "print the result as JSON" })
          .example("$0 generate --output -", "print what would be written")
          .example("$0 generate --reload", "apply and reload"),
      (argv) => setAction(async () => (await import("./commands/generate.js")).runGenerate(io, withGlobals(argv))),
    )
    .command(
      "check-config",
      "validate the ini and the template (rendered and run through check_command); --sshd: this machine's sshd for nodes",
      (y) =>
        y
          .option("json", { type: "boolean", default: false, describe: "print the result as JSON" })
          .option("sshd", {
            type: "boolean",
            default: false,
            describe: "instead, compare what sshd applies to a node's connection (sshd -T) with the Match block authorize-key prints",
          })
          .option("sshd-config", { type: "string", describe: "with --sshd: the sshd_config to read (sshd -f; default sshd's own)", requiresArg: true })
          .option("sshd-binary", { type: "string", describe: "with --sshd: sshd's path (default sshd on the PATH, else /usr/sbin/sshd)", requiresArg: true })
          .option("sshd-user", {
            type: "string",
            describe: "with --sshd: the node user (default the user of [haproxy] ssh_command or ssh_user)",
            requiresArg: true,
          })
          .option("sshd-addr", { type: "string", describe: "with --sshd: the IP address a node connects from (default 127.0.0.1)", requiresArg: true })
          .check((a) => {
            const stray = ["sshd-config", "sshd-binary", "sshd-user", "sshd-addr"].filter((k) => a[k] !== undefined);
            if (stray.length > 0 && !a.sshd) throw new Error(`--${stray[0]} goes with --sshd`);
            return true;
          })
          .example("$0 check-config", "the ini, hosts.d and the rendered template")
          .example("sudo $0 check-config --sshd", "whether sshd restricts the node user as authorize-key's Match block says"),
      (argv) => setAction(async () => (await import("./commands/generate.js")).runCheckConfig(io, withGlobals(argv))),
    )
    .command(
      "simulate",
      "replay a traffic trace through the scaling policy (and --compare others) on a load model; runs nothing",
      (y) =>
        y
          .option("trace", {
            type: "string",
            demandOption: true,
            describe: "a minute_utc,requests CSV, or one CPU percent (of one node) per line",
            requiresArg: true,
          })
          .option("set", { type: "string", array: true, describe: "scaling.key=value over the ini (repeatable)", requiresArg: true })
          .option("scale", { type: "string", describe: "multiply the requests (default 1)", requiresArg: true })
          .option("start", { type: "string", describe: "first day to replay, 0-based (default 0)", requiresArg: true })
          .option("days", { type: "string", describe: "days to replay (default: to the end)", requiresArg: true })
          .option("node-capacity", { type: "string", describe: "requests per minute one node serves at 100 % CPU (default 60)", requiresArg: true })
          .option("boot", { type: "string", describe: "seconds from a launch to serving (default [scaling] boot_time)", requiresArg: true })
          .option("skew", { type: "string", describe: "standard deviation of the nodes' uneven traffic shares (default 0)", requiresArg: true })
          .option("jitter", { type: "string", describe: "standard deviation of relative noise on each CPU sample (default 0)", requiresArg: true })
          .option("seed", { type: "string", describe: "seed of skew and jitter (default 1)", requiresArg: true })
          .option("compare", { type: "string", describe: "also run, comma-separated: hpa, static, instance, predictive, ini", requiresArg: true })
          .option("static", { type: "string", describe: "nodes of the static fleet (default: the peak minute at 90 % CPU)", requiresArg: true })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .option("timeline", { type: "boolean", default: false, describe: "with --json: include each policy's per-minute timeline" })
          .option("plot", { type: "string", describe: "write an SVG of demand, capacity and nodes over time", requiresArg: true })
          .example(
            "$0 simulate --trace nasa-http-1995.csv --scale 2 --start 7 --days 7 --compare hpa,static",
            "a week of NASA-HTTP ×2 against the HPA model and a static fleet",
          )
          .example("$0 simulate --trace cpu.txt --set scaling.target_cpu=50 --plot week.svg", "a CPU-percent series, another target, a plot"),
      (argv) => setAction(async () => (await import("./commands/simulate.js")).runSimulate(io, withGlobals(argv))),
    )
    .command(
      "master",
      "run the master daemon in the foreground (logs to stdout)",
      (y) => y.example("$0 master --config /etc/autoscaler/autoscaler.ini", ""),
      (argv) => setAction(async () => (await import("./commands/daemons.js")).runMaster(io, withGlobals(argv), version)),
    )
    .command(
      "agent",
      "run the agent daemon in the foreground (logs to stdout)",
      (y) => y.example("$0 agent --config /etc/autoscaler/autoscaler.ini", ""),
      (argv) => setAction(async () => (await import("./commands/daemons.js")).runAgent(io, withGlobals(argv), version)),
    )
    .command(
      "status",
      "nodes, CPU, capacity, role, HAProxy and recent events, from the running master",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/status.js")).runStatus(io, withGlobals(argv))),
    )
    .command(
      "scale-up [count]",
      "launch nodes now through the master (default [scaling] step; max_nodes still holds)",
      (y) =>
        y
          .positional("count", { type: "string", describe: "how many nodes, 1-1000, or N% of the current count" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("$0 scale-up 2", "launch two nodes, even while paused or in cooldown")
          .example("$0 scale-up 50%", "half as many again (rounded up, at least 1)"),
      (argv) => setAction(async () => (await import("./commands/control.js")).runControl(io, withGlobals(argv), "scale-up")),
    )
    .command(
      "scale-down [count]",
      "drain and terminate nodes now through the master (default 1; min_nodes still holds)",
      (y) =>
        y
          .positional("count", { type: "string", describe: "how many nodes, 1-1000, or N% of the current count" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("$0 scale-down", "drain the oldest removable node, then terminate it"),
      (argv) => setAction(async () => (await import("./commands/control.js")).runControl(io, withGlobals(argv), "scale-down")),
    )
    .command(
      "policies",
      "list the named policies ([policy:NAME]): action, cooldown left, last run and result",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/policies.js")).runPolicies(io, withGlobals(argv))),
    )
    .command(
      "execute <policy>",
      "run a named policy now through the master (its cooldown and the group's still hold; min/max too)",
      (y) =>
        y
          .positional("policy", { type: "string", describe: "a [policy:NAME] of the ini" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("$0 execute morning", ""),
      (argv) => setAction(async () => (await import("./commands/policies.js")).runExecute(io, withGlobals(argv))),
    )
    .command(
      "set-capacity <count>",
      "set the desired node count now (launch or drain to it; min/max still hold, no cooldown)",
      (y) =>
        y
          .positional("count", { type: "string", describe: "0-1000" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("$0 set-capacity 4", ""),
      (argv) => setAction(async () => (await import("./commands/policies.js")).runSetCapacity(io, withGlobals(argv))),
    )
    .command(
      "webhook <action>",
      "webhooks of named policies: add <policy> [--name N] (prints the URL once), list, remove <name>",
      (y) =>
        y
          .command(
            "add <policy>",
            "make a capability URL that runs a policy (printed once; only its SHA-256 is kept)",
            (z) =>
              z
                .positional("policy", { type: "string", describe: "a [policy:NAME] of the ini" })
                .option("name", { type: "string", describe: "the webhook's name (default POLICY-N)", requiresArg: true })
                .option("json", { type: "boolean", default: false, describe: "print JSON" }),
            (argv) => setAction(async () => (await import("./commands/policies.js")).runWebhookAdd(io, withGlobals(argv))),
          )
          .command(
            "list",
            "names and policies of the webhooks (never their secrets)",
            (z) => z.option("json", { type: "boolean", default: false, describe: "print JSON" }),
            (argv) => setAction(async () => (await import("./commands/policies.js")).runWebhookList(io, withGlobals(argv))),
          )
          .command(
            "remove <name>",
            "remove a webhook: its URL answers 404 from now on",
            (z) => z.positional("name", { type: "string" }).option("json", { type: "boolean", default: false, describe: "print JSON" }),
            (argv) => setAction(async () => (await import("./commands/policies.js")).runWebhookRemove(io, withGlobals(argv))),
          )
          .demandCommand(1, "name a webhook action: add, list or remove"),
      () => undefined,
    )
    .command(
      "schedules",
      "list the schedules ([schedule:NAME]): cron, next run, last run and result, and the limits in force",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/policies.js")).runSchedules(io, withGlobals(argv))),
    )
    .command(
      "instances",
      "every node and pending launch the master knows: address, port, instance id, source, state, launch, age, last sample",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/fleet.js")).runInstances(io, withGlobals(argv))),
    )
    .command(
      "terminate <target>",
      "drain one node, then terminate it through scale_down_command (recorded first; min_nodes holds unless --force)",
      (y) =>
        y
          .positional("target", { type: "string", describe: "a node's name or its instance id (autoscaler instances)" })
          .option("drain", { type: "boolean", default: true, describe: "drain for drain_seconds first (--no-drain: take it out at once)" })
          .option("force", { type: "boolean", default: false, describe: "terminate even at min_nodes (a replacement is then launched)" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .example("$0 terminate web-3", "drain web-3, then terminate it")
          .example("$0 terminate i-0abc123def4567890 --no-drain", "by instance id, without the drain"),
      (argv) => setAction(async () => (await import("./commands/fleet.js")).runTerminate(io, withGlobals(argv) as never)),
    )
    .command(
      "teardown",
      "pause, then drain and terminate every node the autoscaler launched (hand-added hosts stay); without --yes print the plan",
      (y) =>
        y
          .option("yes", { type: "boolean", default: false, describe: "do it (without: print what it would do and exit 1)" })
          .option("timeout", { type: "number", describe: "seconds to wait for the last terminate (default drain_seconds + 2 × command_timeout + 30)" })
          .option("json", { type: "boolean", default: false, describe: "print JSON" })
          .check((a) => {
            if (a.timeout !== undefined && !(Number.isFinite(a.timeout) && a.timeout > 0 && a.timeout <= 86_400))
              throw new Error(`--timeout ${a.timeout} is not valid; expected 1 to 86400 seconds`);
            return true;
          })
          .example("$0 teardown", "show what would be removed")
          .example("$0 teardown --yes", "remove every launched node; exit 0 when none is left"),
      (argv) => setAction(async () => (await import("./commands/fleet.js")).runTeardown(io, withGlobals(argv))),
    )
    .command(
      "inventory",
      "Ansible dynamic inventory of the fleet: --list (JSON with _meta.hostvars), --host NAME, --format ini",
      (y) =>
        y
          .option("list", { type: "boolean", default: false, describe: "the whole inventory (the default)" })
          .option("host", { type: "string", describe: "one host's variables", requiresArg: true })
          .option("format", {
            choices: ["json", "ini"] as const,
            default: "json" as const,
            describe: "json (Ansible's script protocol) or a static INI inventory",
          })
          .example("ansible-inventory -i inventory.sh --list", 'with inventory.sh: exec autoscaler inventory "$@"')
          .example("$0 inventory --format ini > hosts.ini", "a static inventory"),
      (argv) => setAction(async () => (await import("./commands/fleet.js")).runInventory(io, withGlobals(argv))),
    )
    .command(
      "leave",
      "on a node: ask the masters, through the running agent, to drain and terminate this node",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }).example("sudo $0 leave", "this node leaves the cluster"),
      (argv) => setAction(async () => (await import("./commands/fleet.js")).runLeave(io, withGlobals(argv))),
    )
    .command(
      "pause",
      "stop automatic scaling decisions (persisted); manual scale-up/scale-down still work",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/control.js")).runControl(io, withGlobals(argv), "pause")),
    )
    .command(
      "resume",
      "start automatic scaling decisions again",
      (y) => y.option("json", { type: "boolean", default: false, describe: "print JSON" }),
      (argv) => setAction(async () => (await import("./commands/control.js")).runControl(io, withGlobals(argv), "resume")),
    )
    .command(
      "demo",
      "the whole loop on this machine: HAProxy, SSH, a master and web nodes that scale up under load and back down",
      (y) =>
        y
          .option("duration", { type: "number", default: 150, describe: "seconds until it ends by itself (at least 30)" })
          .option("ssh", {
            choices: ["auto", "sshd", "embedded"] as const,
            default: "auto" as const,
            describe: "the SSH endpoint: OpenSSH's sshd, or an embedded one (auto: sshd when usable)",
          })
          .option("keep", { type: "boolean", default: false, describe: "keep the demo's folder (configs, logs) instead of removing it" })
          .check((a) => {
            if (!Number.isFinite(a.duration) || a.duration < 30 || a.duration > 3600)
              throw new Error(`--duration ${a.duration} is not valid; expected 30 to 3600 seconds`);
            return true;
          })
          .example("$0 demo", "watch a cluster grow under load and shrink back (about 2.5 minutes)"),
      (argv) => setAction(async () => (await import("./demo/run-demo.js")).runDemo(io, { duration: argv.duration, ssh: argv.ssh, keep: argv.keep })),
    )
    .command({
      command: "demo-node <action> <dir>",
      describe: false,
      builder: (y) =>
        y.positional("action", { choices: ["launch", "terminate"] as const, demandOption: true }).positional("dir", { type: "string", demandOption: true }),
      handler: (argv) => setAction(async () => (await import("./demo/node-launcher.js")).runDemoNode(argv.action, argv.dir, io.env, io.stdout, io.stderr)),
    })
    .command({
      command: "demo-web",
      describe: false,
      builder: (y) =>
        y
          .option("name", { type: "string", demandOption: true })
          .option("address", { type: "string", default: "127.0.0.1" })
          .option("port", { type: "number", demandOption: true })
          .option("pid-file", { type: "string", demandOption: true })
          .option("work-ms", { type: "number", default: 4 }),
      handler: (argv) =>
        setAction(async () => {
          await (
            await import("./demo/web.js")
          ).runDemoWeb({ name: argv.name, address: argv.address, port: argv.port, pidFile: argv.pidFile, workMs: argv.workMs });
          return 0;
        }),
    })
    .command(
      "install-service <role>",
      "write the systemd unit of the agent or the master (--dry-run prints it)",
      (y) =>
        y
          .positional("role", { choices: ["agent", "master"] as const, describe: "which daemon's unit" })
          .option("dry-run", { type: "boolean", default: false, describe: "print the unit and write nothing" })
          .option("unit-dir", { type: "string", describe: "write the unit here (default /etc/systemd/system)", requiresArg: true })
          .option("force", { type: "boolean", default: false, describe: "replace a unit file that differs from the shipped one" })
          .example("$0 install-service master", "write /etc/systemd/system/autoscaler-master.service")
          .example("$0 install-service agent --dry-run", "print the agent's unit"),
      (argv) => setAction(async () => (await import("./commands/install-service.js")).runInstallService(io, withGlobals(argv) as never)),
    )
    .command(
      "authorize-key <pubkey-file>",
      "print the authorized_keys line that lets a node key reach only the master's port, then the sshd_config Match block",
      (y) =>
        y
          .positional("pubkey-file", { type: "string", describe: "the node's public key (.pub)" })
          .option("line-only", { type: "boolean", default: false, describe: "print only the authorized_keys line" })
          .example("$0 authorize-key node_key.pub", "the key line, then the Match User block for sshd_config")
          .example("$0 authorize-key --line-only node_key.pub >> ~autoscaler/.ssh/authorized_keys", ""),
      (argv) => setAction(async () => (await import("./commands/authorize-key.js")).runAuthorizeKey(io, withGlobals(argv) as never)),
    )
    .demandCommand(1, "name a command; see --help")
    .recommendCommands()
    .strict()
    .version(version)
    .alias("h", "help")
    .wrap(Math.min(100, (io.stdout as { columns?: number }).columns ?? 100))
    .exitProcess(false);
}

/** Run one command line; returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let action: Action | undefined;
  const parser = buildParser(io, (a) => (action = a));
  let usage: { error: Error | undefined; output: string } | undefined;
  parser.parse(argv, {}, (error, _args, output) => {
    usage = { error: error ?? undefined, output };
  });
  if (usage?.error) {
    // The error and the command's usage line, not the whole help (that is --help).
    const line = usage.output.split("\n").find((l) => l.startsWith("autoscaler "));
    const command = argv.find((a) => !a.startsWith("-"));
    io.stderr.write(`error: ${usage.error.message}\n`);
    if (line) io.stderr.write(`usage: ${line.trim()}\n`);
    const own = command !== undefined && line?.startsWith(`autoscaler ${command}`);
    const didYouMean = usage.output.split("\n").find((l) => l.startsWith("Did you mean"));
    if (didYouMean) io.stderr.write(`${didYouMean}\n`);
    io.stderr.write(`see: autoscaler ${own ? `${command} ` : ""}--help\n`);
    return EXIT_USAGE;
  }
  if (!action) {
    // --help or --version: yargs produced the text.
    if (usage?.output) io.stdout.write(usage.output + "\n");
    return 0;
  }
  try {
    return await action();
  } catch (err) {
    return printError(io, err);
  }
}
