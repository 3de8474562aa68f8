/** `autoscaler scale-up|scale-down [N]`, `pause`, `resume`: operator requests to the running master over its control socket. */
import net from "node:net";
import { AutoscalerError } from "@autoscaler/shared";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

/** The requests the control socket takes besides `status`. */
export type ControlCommand = "scale-up" | "scale-down" | "pause" | "resume";

/** Check the optional count argument: a whole number from 1 to 1000. */
export function parseCount(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^[0-9]{1,4}$/.test(text) || Number(text) < 1 || Number(text) > 1000) {
    throw new AutoscalerError("AUTOSCALER_USAGE", `count ${JSON.stringify(text)} is not valid; expected a whole number from 1 to 1000`, { exitCode: 2 });
  }
  return Number(text);
}

/** The count argument of scale-up / scale-down: `N` nodes, or `N%` of the current count (rounded away from zero, at least 1). */
export function parseAmount(raw: unknown): { count: number } | { percent: number } | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  const m = /^([0-9]{1,4}(?:\.[0-9]+)?)%$/.exec(text);
  if (!m) {
    const count = parseCount(raw);
    return count === undefined ? undefined : { count };
  }
  const percent = Number(m[1]);
  if (!(percent > 0 && percent <= 1000))
    throw new AutoscalerError("AUTOSCALER_USAGE", `${JSON.stringify(text)} is not valid; expected a percent greater than 0 and at most 1000, such as 50%`, {
      exitCode: 2,
    });
  return { percent };
}

/** True when something listens on the control socket (a master, or another pause being written). */
function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: socket });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code !== "ENOENT" && err.code !== "ECONNREFUSED"));
  });
}

/** Send one request and print what the master did. */
export async function runControl(io: Io, args: GlobalArgs & { count?: unknown }, cmd: ControlCommand): Promise<number> {
  const amount = cmd === "scale-up" || cmd === "scale-down" ? parseAmount(args.count) : undefined;
  const ctx = await loadContext(io, args);
  const { callControl, controlSocketPath, setPausedWithoutMaster } = await import("@autoscaler/master");
  const socket = controlSocketPath(ctx.config.master.state_dir);
  if ((cmd === "pause" || cmd === "resume") && !(await answers(socket))) {
    // No master yet (before the first start, say): recorded in state_dir, read by the master at start.
    if (ctx.config.cluster.etcd.length > 0) {
      throw new AutoscalerError(
        "AUTOSCALER_NOT_FOUND",
        `no master is running here (nothing answers on ${socket}), and with [cluster] etcd the pause is kept in etcd by the leader: run autoscaler ${cmd} where a master runs`,
      );
    }
    const changed = await setPausedWithoutMaster(ctx.config.master.state_dir, cmd === "pause");
    const file = `${ctx.config.master.state_dir}/state.json`;
    if (args.json) io.stdout.write(JSON.stringify({ paused: cmd === "pause", changed, file, master: "not running" }, null, 2) + "\n");
    else if (cmd === "pause")
      io.stdout.write(
        `no master is running: ${changed ? "recorded" : "already recorded"} in ${file}; the master starts paused (no automatic launch or scale-down; manual scale-up and scale-down still work). Undo with: autoscaler resume\n`,
      );
    else io.stdout.write(`no master is running: ${changed ? "recorded" : "already so"} in ${file}; the master starts with automatic scaling on\n`);
    return 0;
  }
  const result = (await callControl(socket, { cmd, ...amount }, 15_000)) as Record<string, unknown>;
  if (args.json) {
    io.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return 0;
  }
  switch (cmd) {
    case "scale-up":
      io.stdout.write(`launching ${String(result.launched)} node(s): ${String(result.reason)}\nfollow it with: autoscaler status\n`);
      break;
    case "scale-down":
      io.stdout.write(`draining ${(result.draining as string[]).join(", ")}, then terminating: ${String(result.reason)}\nfollow it with: autoscaler status\n`);
      break;
    case "pause":
      io.stdout.write("automatic scaling is paused (persisted across restarts); manual scale-up and scale-down still work. Undo with: autoscaler resume\n");
      break;
    case "resume":
      io.stdout.write("automatic scaling is on again\n");
      break;
  }
  return 0;
}
