/** `autoscaler scale-up|scale-down [N]`, `pause`, `resume`: operator requests to the running master over its control socket. */
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

/** Send one request and print what the master did. */
export async function runControl(io: Io, args: GlobalArgs & { count?: unknown }, cmd: ControlCommand): Promise<number> {
  const amount = cmd === "scale-up" || cmd === "scale-down" ? parseAmount(args.count) : undefined;
  const ctx = await loadContext(io, args);
  const { callControl, controlSocketPath } = await import("@autoscaler/master");
  const result = (await callControl(controlSocketPath(ctx.config.master.state_dir), { cmd, ...amount }, 15_000)) as Record<string, unknown>;
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
