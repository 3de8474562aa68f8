/**
 * The fleet over the master's control socket: `autoscaler instances`, `terminate <name | id>`,
 * `teardown --yes`, `inventory` (Ansible's dynamic-inventory protocol); and on a node,
 * `autoscaler leave`, which asks the running agent (its leave socket) to leave.
 */
import { AutoscalerError, EXIT_FAILURE, EXIT_USAGE } from "@autoscaler/shared";
import type { Instance, MasterStatus } from "@autoscaler/master";
import { loadContext, type CommandContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { formatTable, instanceCell } from "../table.js";

const usage = (message: string) => new AutoscalerError("AUTOSCALER_USAGE", message, { exitCode: EXIT_USAGE });

/** What the master answers `instances`. */
export interface FleetAnswer {
  instances: Instance[];
  paused: boolean;
  teardown: { since: string } | null;
  drains: MasterStatus["drains"];
}

async function call(ctx: CommandContext, request: { cmd: string; [k: string]: unknown }, timeoutMs = 15_000): Promise<unknown> {
  const { callControl, controlSocketPath } = await import("@autoscaler/master");
  return callControl(controlSocketPath(ctx.config.master.state_dir), request, timeoutMs);
}
const fleet = async (ctx: CommandContext) => (await call(ctx, { cmd: "instances" })) as FleetAnswer;

const ago = (s: number | null) => (s === null ? "-" : s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`);

/** The instances as a table for people (pure). */
export function formatInstances(list: readonly Instance[]): string {
  if (list.length === 0) return "no nodes and no pending launches\n";
  return formatTable(
    ["NAME", "ADDRESS", "PORT", "INSTANCE", "SOURCE", "STATE", "LAUNCH", "AGE", "LAST SAMPLE"],
    list.map((i) => [
      i.name ?? "(awaited)",
      i.address ?? "-",
      i.port === null ? "-" : String(i.port),
      i.name === null ? (i.instance_id ?? "-") : instanceCell(i),
      i.source,
      i.state,
      i.launch ?? "-",
      ago(i.age_seconds),
      i.last_sample === null
        ? "-"
        : `${i.last_sample.seconds_ago}s ago${i.last_sample.cpu === null ? "" : `, cpu ${i.last_sample.cpu}%`}${i.last_sample.available === null ? "" : `, ${i.last_sample.available} free`}`,
    ]),
  );
}

/** `autoscaler instances [--json]`. */
export async function runInstances(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const answer = await fleet(ctx);
  if (args.json) {
    io.stdout.write(JSON.stringify(answer.instances, null, 2) + "\n");
    return 0;
  }
  io.stdout.write(formatInstances(answer.instances));
  if (answer.teardown) io.stdout.write(`teardown since ${answer.teardown.since}: launched nodes are being removed (autoscaler resume ends it)\n`);
  return 0;
}

/** The node a name or an instance id names in the listing, or exit 2. */
function named(list: readonly Instance[], target: string): Instance & { name: string } {
  const found = list.find((i) => i.name === target) ?? list.find((i) => i.instance_id === target && i.name !== null);
  if (!found || found.name === null) {
    const awaited = list.find((i) => i.instance_id === target);
    throw usage(
      awaited
        ? `${target} is a launch's instance that has not registered yet: nothing to terminate through the autoscaler (stop it in the cloud, or wait for it to register)`
        : `unknown node or instance id ${JSON.stringify(target)}; see autoscaler instances`,
    );
  }
  return found as Instance & { name: string };
}

/** `autoscaler terminate <name | instance-id> [--no-drain] [--force]`. */
export async function runTerminate(io: Io, args: GlobalArgs & { target?: unknown; drain?: boolean; force?: boolean }): Promise<number> {
  const target = String(args.target ?? "");
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(target)) throw usage(`${JSON.stringify(target)} is not a node name or an instance id`);
  const ctx = await loadContext(io, args);
  const node = named((await fleet(ctx)).instances, target);
  if (node.source === "manual")
    throw new AutoscalerError(
      "AUTOSCALER_INPUT_INVALID",
      `${node.name} is a hand-added host: the autoscaler never terminates one; use autoscaler remove-host ${node.name}`,
      {
        exitCode: EXIT_FAILURE,
      },
    );
  const result = (await call(ctx, { cmd: "terminate", target, drain: args.drain !== false, force: args.force === true })) as {
    node: string;
    instance_id: string | null;
    terminate: boolean;
    drain_until: number;
  };
  if (args.json) {
    io.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return 0;
  }
  const wait = Math.max(0, Math.round((result.drain_until - Date.now()) / 1000));
  io.stdout.write(
    `${args.drain === false ? "taking" : "draining"} ${result.node} out of service${args.drain === false ? " now" : ` for ${wait} s`}, then ${
      result.terminate
        ? `terminating it through scale_down_command (INSTANCE_ID=${result.instance_id ?? ""})`
        : "removing it without a terminate: its instance id is only its own word (autoscaler trust, or name the id)"
    }\nfollow it with: autoscaler instances\n`,
  );
  return 0;
}

/** Why each launched node (or awaited launch) is still there after a teardown. */
export function teardownLeft(answer: FleetAnswer): { name: string; why: string }[] {
  const since = answer.teardown ? Date.parse(answer.teardown.since) : 0;
  const lastDrain = (name: string) => answer.drains.filter((d) => d.node === name && Date.parse(d.decided_at) >= since).at(-1);
  const left: { name: string; why: string }[] = [];
  for (const i of answer.instances) {
    if (i.source === "launch") {
      left.push({
        name: i.instance_id ?? `a node of ${i.launch}`,
        why: `launch ${i.launch} still waits for it; it is drained once it registers, or counts no more after launch_timeout`,
      });
      continue;
    }
    if (i.source !== "launched") continue;
    const d = lastDrain(i.name!);
    const why =
      i.state === "draining"
        ? `draining until ${d?.drain_until ?? "its drain_seconds are over"}`
        : i.state === "terminating"
          ? "its terminate command is running"
          : d?.status === "failed"
            ? `its terminate failed (${d.error ?? "no detail"}); it is tried again after a backoff`
            : "not drained yet";
    left.push({ name: i.name!, why });
  }
  // Removed but not terminated: the instance may still run.
  for (const d of answer.drains)
    if (Date.parse(d.decided_at) >= since && d.status === "done" && /terminate skipped/.test(d.note ?? ""))
      left.push({
        name: d.node,
        why: `taken out of service and removed, but not terminated: ${(d.note ?? "").replace(/^terminate skipped: /, "")}; stop it in the cloud`,
      });
  return left;
}

/** `autoscaler teardown [--yes] [--timeout S]`: exit 0 only when nothing the autoscaler launched is left. */
export async function runTeardown(io: Io, args: GlobalArgs & { yes?: boolean; timeout?: number }): Promise<number> {
  const ctx = await loadContext(io, args);
  const before = await fleet(ctx);
  const launched = before.instances.filter((i) => i.source === "launched" && i.name !== null);
  const stays = before.instances.filter((i) => i.source === "manual" || i.source === "agent");
  const awaited = before.instances.filter((i) => i.source === "launch");
  if (!args.yes) {
    const lines = [
      "autoscaler teardown would pause automatic scaling, then drain and terminate every node the autoscaler launched:",
      ...(launched.length ? launched.map((i) => `  ${i.name}  ${i.address}  ${i.instance_id ?? "-"}  (${i.state})`) : ["  (none now)"]),
      ...(awaited.length ? [`and ${awaited.length} node(s) of pending launches once they register`] : []),
      `it leaves alone: ${stays.length ? stays.map((i) => `${i.name} (${i.source})`).join(", ") : "nothing (no hand-added or self-registered hosts)"}`,
      "run it with --yes to do it",
    ];
    io.stdout.write(lines.join("\n") + "\n");
    return EXIT_FAILURE;
  }
  const cmdTimeoutMs = ctx.config.machine.command_timeout * 1000;
  const started = (await call(ctx, { cmd: "teardown" })) as { draining: string[]; since: number };
  io.stdout.write(
    `teardown: automatic scaling paused; draining ${started.draining.length ? started.draining.join(", ") : "nothing new"}${args.json ? "" : ", then terminating"}\n`,
  );
  const timeoutMs = (args.timeout ?? ctx.config.scaling.drain_seconds + (2 * cmdTimeoutMs) / 1000 + 30) * 1000;
  const deadline = Date.now() + timeoutMs;
  let answer = await fleet(ctx);
  // Bounded: until nothing launched is left, or the timeout.
  while (teardownLeft(answer).some((l) => !/not terminated/.test(l.why)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    answer = await fleet(ctx);
  }
  const left = teardownLeft(answer);
  const terminated = answer.drains.filter((d) => Date.parse(d.decided_at) >= Date.parse(answer.teardown?.since ?? "0") && d.status === "done");
  if (args.json) io.stdout.write(JSON.stringify({ removed: terminated.map((d) => d.node), left, teardown: answer.teardown }, null, 2) + "\n");
  else {
    io.stdout.write(`removed: ${terminated.length ? terminated.map((d) => `${d.node} (${d.instance_id || "no instance id"})`).join(", ") : "none"}\n`);
    if (left.length === 0) io.stdout.write("nothing the autoscaler launched is left; automatic scaling stays paused (autoscaler resume ends the teardown)\n");
    else io.stdout.write(`left (${left.length}):\n${left.map((l) => `  ${l.name}: ${l.why}`).join("\n")}\n`);
  }
  return left.length === 0 ? 0 : EXIT_FAILURE;
}

/** `autoscaler inventory [--list | --host NAME] [--format json | ini]`: Ansible's dynamic inventory of the live fleet. */
export async function runInventory(io: Io, args: GlobalArgs & { list?: boolean; host?: string; format?: string }): Promise<number> {
  if (args.host !== undefined && args.list) throw usage("give --list or --host NAME, not both");
  if (args.host !== undefined && args.format === "ini") throw usage("--format ini prints the whole inventory; leave out --host");
  const ctx = await loadContext(io, args);
  const { buildInventory, hostVars, renderInventoryIni } = await import("@autoscaler/master");
  const { instances } = await fleet(ctx);
  if (args.host !== undefined) {
    const node = instances.find((i) => i.name === args.host);
    if (!node) throw usage(`unknown host ${JSON.stringify(args.host)}; see autoscaler inventory --list`);
    io.stdout.write(JSON.stringify(hostVars(node), null, 2) + "\n");
    return 0;
  }
  const inventory = buildInventory(instances);
  io.stdout.write(args.format === "ini" ? renderInventoryIni(inventory) : JSON.stringify(inventory, null, 2) + "\n");
  return 0;
}

/** `autoscaler leave` on a node: the running agent asks every master it is connected to to drain and terminate this node. */
export async function runLeave(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const { leaveSocketPath, requestLeave } = await import("@autoscaler/agent");
  // The socket is in the state folder: with [agent] name set, only that agent may leave (never another ini's sharing the folder).
  const answer = await requestLeave(leaveSocketPath(ctx.config.master.state_dir), ctx.config.agent.name || undefined);
  if (args.json) io.stdout.write(JSON.stringify(answer, null, 2) + "\n");
  if (!answer.ok) {
    if (!args.json) io.stderr.write(`error: ${answer.error}\n`);
    return EXIT_FAILURE;
  }
  if (!args.json)
    io.stdout.write(
      `asked ${answer.proxies.join(", ")} to drain and terminate this node (${answer.node}); the deciding master records it, drains it and runs scale_down_command\n`,
    );
  return 0;
}
