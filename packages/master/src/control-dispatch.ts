/**
 * The commands of the control socket (`autoscaler status`, `scale-up`, `scale-down`, `pause`,
 * `resume`, `policies`, `schedules`, `execute`, `set-capacity`, `webhook add/list/remove`, `instances`, `terminate`, `teardown`): one request in, the answer out, or an error whose message the CLI prints.
 */
import type { ControlHandler } from "./control.js";
import type { Scaler } from "./scaler.js";
import type { MasterStatus } from "./status.js";

/** What the commands act on. */
export interface ControlDeps {
  status: () => MasterStatus;
  /** The scaler, once the master has started it. */
  scaler: () =>
    | Pick<Scaler, "scaleUp" | "scaleDown" | "setPaused" | "executePolicy" | "setCapacity" | "addWebhook" | "removeWebhook" | "terminate" | "teardown">
    | undefined;
  /** `autoscaler instances` and `inventory`: every node and pending launch (fleet.ts). */
  instances: () => unknown;
}

/** A node name or an instance id in a request: 1-128 characters of letters, digits, '.', '_', ':' and '-'. */
function target(v: unknown): string {
  if (typeof v !== "string" || !/^[A-Za-z0-9._:-]{1,128}$/.test(v))
    throw new Error(`node ${JSON.stringify(v)} is not valid; expected a node name or an instance id (letters, digits, '.', '_', ':' and '-')`);
  return v;
}

/** A percent in a request (`scale-up 50%`): absent, or a number greater than 0 and at most 1000. */
function percent(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 1000)
    throw new Error(`percent ${JSON.stringify(v)} is not valid; expected a number greater than 0 and at most 1000`);
  return v;
}

/** A name in a request (a policy, a webhook): 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'. */
function name(v: unknown, what: string): string {
  if (typeof v !== "string" || !/^[A-Za-z0-9._-]{1,63}$/.test(v))
    throw new Error(`${what} ${JSON.stringify(v)} is not valid; expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'`);
  return v;
}

/** A desired count: a whole number from 0 to 1000. */
function desired(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 1000)
    throw new Error(`capacity ${JSON.stringify(v)} is not valid; expected a whole number from 0 to 1000`);
  return v;
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
        return s.scaleUp(count(req.count), percent(req.percent));
      case "scale-down":
        return s.scaleDown(count(req.count), percent(req.percent));
      case "policies": {
        const st = deps.status();
        return { policies: st.policies, cooldown: st.cooldown, paused: st.paused };
      }
      case "schedules": {
        const st = deps.status();
        return { schedules: st.schedules, limits: st.limits };
      }
      case "execute":
        return s.executePolicy(name(req.policy, "policy"), { via: "execute", manual: true });
      case "set-capacity":
        return s.setCapacity(desired(req.desired));
      case "webhook-add":
        return s.addWebhook(name(req.policy, "policy"), req.name === undefined ? undefined : name(req.name, "webhook name"));
      case "webhook-list":
        return { webhooks: deps.status().webhooks };
      case "webhook-remove":
        return s.removeWebhook(name(req.name, "webhook name"));
      case "instances":
        return deps.instances();
      case "terminate":
        return s.terminate(target(req.target), req.drain !== false, req.force === true);
      case "teardown":
        return s.teardown();
      case "pause":
        return s.setPaused(true);
      case "resume":
        return s.setPaused(false);
      default:
        throw new Error(
          `unknown command ${JSON.stringify(req.cmd)}; this master knows: status, scale-up, scale-down, pause, resume, policies, schedules, execute, set-capacity, webhook-add, webhook-list, webhook-remove, instances, terminate, teardown`,
        );
    }
  };
}
