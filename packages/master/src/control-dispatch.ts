/**
 * The commands of the control socket (`autoscaler status`, `scale-up`, `scale-down`, `pause`,
 * `resume`): one request in, the answer out, or an error whose message the CLI prints.
 */
import type { ControlHandler } from "./control.js";
import type { Scaler } from "./scaler.js";
import type { MasterStatus } from "./status.js";

/** What the commands act on. */
export interface ControlDeps {
  status: () => MasterStatus;
  /** The scaler, once the master has started it. */
  scaler: () => Pick<Scaler, "scaleUp" | "scaleDown" | "setPaused"> | undefined;
}

/** A node count in a request: absent, or a whole number from 1 to 1000. */
function count(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 1000)
    throw new Error(`count ${JSON.stringify(v)} is not valid; expected a whole number from 1 to 1000`);
  return v;
}

/**
 * The control socket's handler: answers each command, and refuses every request while the master
 * is still starting (no scaler yet) or when the command is unknown.
 */
export function createControlDispatch(deps: ControlDeps): ControlHandler {
  return async (req) => {
    const s = deps.scaler();
    if (!s) throw new Error("the master is still starting; try again in a moment");
    switch (req.cmd) {
      case "status":
        return deps.status();
      case "scale-up":
        return s.scaleUp(count(req.count));
      case "scale-down":
        return s.scaleDown(count(req.count));
      case "pause":
        return s.setPaused(true);
      case "resume":
        return s.setPaused(false);
      default:
        throw new Error(`unknown command ${JSON.stringify(req.cmd)}; this master knows: status, scale-up, scale-down, pause, resume`);
    }
  };
}
