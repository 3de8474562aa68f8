/**
 * Our decision engine as a simulate controller: the scaler's own state machine (`step`), with
 * the model standing in for the cloud. A launch command "succeeds" at once and prints no
 * run-instances JSON, so the next new node claims it; a node that appears in the view
 * registers; a drain's terminate is confirmed as soon as the state machine asks. Only the
 * runner's IO is replaced: every decision, cooldown, backoff and drain goes through `step`.
 */
import type { Config } from "@autoscaler/shared";
import { initialState, step, type Effect, type ScalerEvent, type ScalerState } from "../machine.js";
import { policyFromConfig } from "../policy.js";
import { DEMAND_HISTORY_MINUTES, type DemandHistory } from "../predictive.js";
import { emptyState } from "../state-store.js";
import type { ClusterView, Controller, ControllerAction, ModelOptions } from "./model.js";
import type { Trace } from "./trace.js";

/**
 * The demand history a master running before the replay would have recorded (predictive): the
 * minutes of `before`, as the sum of CPU percent they needed at `nodeCapacity` requests per node.
 */
export function demandHistoryFrom(before: Trace, nodeCapacity: number): DemandHistory {
  const values = Array.from(before.requests.slice(-DEMAND_HISTORY_MINUTES), (r) => (100 * r) / nodeCapacity);
  return { lastMinute: Math.floor(before.startMs / 60_000) + before.requests.length - 1, values };
}

/** Our engine, with the policy of `config`, called every `[master] interval`. */
export function createEngineController(config: Config, options: ModelOptions, extra: { name?: string; history?: DemandHistory } = {}): Controller {
  // The simulation runs no command: both directions count as configured. A drain lasts what the model says.
  const policy = { ...policyFromConfig(config), scaleUpEnabled: true, scaleDownEnabled: true, drainMs: options.drainMs };
  let state: ScalerState = initialState(emptyState(), extra.history);
  const known = new Set<string>();
  let started = false;

  /** Feed one event and everything its effects lead to; collect the model's actions. */
  const run = (first: ScalerEvent, now: number, actions: ControllerAction[]) => {
    const queue: ScalerEvent[] = [first];
    while (queue.length > 0) {
      const result = step(state, queue.shift()!, policy, now);
      state = result.state;
      for (const effect of result.effects) queue.push(...react(effect, actions));
    }
  };
  const react = (effect: Effect, actions: ControllerAction[]): ScalerEvent[] => {
    switch (effect.kind) {
      case "launch":
        actions.push({ type: "launch", count: effect.count });
        return [{ type: "launch_finished", id: effect.id, ok: true, instances: [], detail: "" }];
      case "drain":
        actions.push({ type: "drain", node: effect.node });
        return [];
      case "remove_from_config":
        return [{ type: "removed_from_config", id: effect.id, confirmed: true }];
      case "terminate":
        // The model removes a drained node by itself, drainMs after the drain.
        return [{ type: "terminate_finished", id: effect.id, ok: true, detail: "" }];
      default:
        return [];
    }
  };

  return {
    name: extra.name ?? "ours",
    periodMs: config.master.interval * 1000,
    tick(view: ClusterView): ControllerAction[] {
      const actions: ControllerAction[] = [];
      if (!started) {
        started = true;
        for (const n of view.nodes) known.add(n.name);
      }
      for (const n of view.nodes) {
        if (known.has(n.name)) continue;
        known.add(n.name);
        // The model's new nodes are its launches' own (as with a join credential); its launches print
        // no instances, so each new node is taken as "any new node".
        run({ type: "node_registered", hello: { name: n.name, address: n.name, anyLaunch: true } }, view.now, actions);
      }
      run({ type: "tick", nodes: view.nodes }, view.now, actions);
      if (known.size > view.nodes.length * 4 + 64) for (const name of [...known]) if (!view.nodes.some((n) => n.name === name)) known.delete(name);
      return actions;
    },
  };
}
