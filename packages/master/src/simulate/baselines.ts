/**
 * Baselines that `simulate --compare` runs on the same model as our engine: a model of the
 * Kubernetes Horizontal Pod Autoscaler, and a static fleet.
 */
import type { NodeObservation } from "../decide.js";
import type { ClusterView, Controller, ControllerAction } from "./model.js";

/** The HPA model's settings; the defaults are Kubernetes' (target 60 % as in issue 10's table). */
export interface HpaOptions {
  /** Percent of a node's CPU the HPA aims each node at. */
  targetCpu: number;
  /** The HPA's sync period (--horizontal-pod-autoscaler-sync-period, 15 s). */
  periodMs: number;
  /** Scale-down stabilisation window (behavior.scaleDown.stabilizationWindowSeconds, 300 s). */
  stabilisationMs: number;
  /** No change while |utilisation / target − 1| ≤ this (--horizontal-pod-autoscaler-tolerance, 0.1). */
  tolerance: number;
  minNodes: number;
  maxNodes: number;
}

/** Kubernetes' defaults for everything but the node limits. */
export const DEFAULT_HPA_OPTIONS: Omit<HpaOptions, "minNodes" | "maxNodes"> = { targetCpu: 60, periodMs: 15_000, stabilisationMs: 300_000, tolerance: 0.1 };

const latest = (n: NodeObservation) => n.readings[n.readings.length - 1];

/**
 * The replica calculator's answer for CPU utilisation (kubernetes replica_calculator.go,
 * GetResourceReplicas, read not copied). `ready` nodes have a reading; `unready` ones are
 * booting or serving without a reading yet, and count as current replicas but not in the
 * ratio. Kubernetes treats them as using 0 % when the ratio asks for a scale-up and ignores
 * them otherwise; with no missing metrics that reduces to the two branches below.
 */
export function hpaReplicas(p: { usageSum: number; ready: number; unready: number; current: number; targetCpu: number; tolerance: number }): number {
  if (p.ready === 0) return p.current; // no metrics: Kubernetes does not scale
  const ratio = p.usageSum / p.ready / p.targetCpu;
  if (p.unready === 0 || ratio <= 1) {
    if (Math.abs(1 - ratio) <= p.tolerance) return p.current;
    return Math.ceil(ratio * p.ready);
  }
  // A scale-up with unready nodes: count them at 0 % and recompute; keep the count when that
  // lands within tolerance or flips the direction (a ramp already being answered by boots).
  const rebalanced = p.usageSum / (p.ready + p.unready) / p.targetCpu;
  if (Math.abs(1 - rebalanced) <= p.tolerance || rebalanced < 1) return p.current;
  return Math.ceil(rebalanced * (p.ready + p.unready));
}

/**
 * A model of the Kubernetes HPA with default behaviour, on CPU utilisation: every `periodMs`,
 * the utilisation is the mean of each serving node's latest reading; desired = the replica
 * calculator's answer (see `hpaReplicas`); scale-down goes only to the highest recommendation
 * of the last `stabilisationMs` (horizontal.go, stabilizeRecommendationWithBehaviors); a
 * scale-up adds at most max(4, 100 % of current) per period (the default scaleUp policies);
 * then min/max. Current replicas = serving + booting; scale-down drains the newest nodes.
 */
export function createHpaController(options: Partial<HpaOptions> & Pick<HpaOptions, "minNodes" | "maxNodes">): Controller {
  const o: HpaOptions = { ...DEFAULT_HPA_OPTIONS, ...options };
  /** Recommendations of the stabilisation window, oldest first. */
  const history: { at: number; replicas: number }[] = [];
  return {
    name: "hpa",
    periodMs: o.periodMs,
    tick(view: ClusterView): ControllerAction[] {
      const current = view.nodes.length + view.booting;
      let usageSum = 0;
      let ready = 0;
      for (const n of view.nodes) {
        const r = latest(n);
        if (r === undefined) continue;
        usageSum += r.cpu;
        ready++;
      }
      const recommended = hpaReplicas({ usageSum, ready, unready: current - ready, current, targetCpu: o.targetCpu, tolerance: o.tolerance });
      while (history.length > 0 && history[0]!.at <= view.now - o.stabilisationMs) history.shift();
      history.push({ at: view.now, replicas: recommended });
      // Scale-down stabilisation: never below the highest recommendation in the window.
      let desired = recommended;
      if (desired < current) desired = Math.min(current, Math.max(...history.map((h) => h.replicas)));
      if (desired > current) desired = Math.min(desired, current + Math.max(4, current));
      desired = Math.min(o.maxNodes, Math.max(o.minNodes, desired));
      if (desired > current) return [{ type: "launch", count: desired - current }];
      if (desired < current) return drainNewest(view, current - desired);
      return [];
    },
  };
}

/** Drain the `count` newest serving nodes (booting ones cannot be drained in this model). */
function drainNewest(view: ClusterView, count: number): ControllerAction[] {
  const newest = [...view.nodes].sort((a, b) => b.addedAt - a.addedAt || (a.name < b.name ? 1 : -1));
  return newest.slice(0, count).map((n) => ({ type: "drain", node: n.name }));
}

/** A fixed fleet: `fleet` nodes from the start (the caller sets initialNodes to it); it never acts. */
export interface StaticController extends Controller {
  readonly fleet: number;
}

/** A static fleet of `n` nodes: the run's initialNodes must be `n`; it launches and drains nothing. */
export function createStaticController(n: number): StaticController {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`static fleet ${n}; expected a whole number ≥ 0`);
  return { name: "static", fleet: n, periodMs: 60_000, tick: () => [] };
}

/** The smallest static fleet that runs the busiest minute at ≤ `targetCpu` percent (at least 1). */
export function staticFleetFor(requests: Float64Array, nodeCapacity: number, targetCpu = 90): number {
  let peak = 0;
  for (const r of requests) if (r > peak) peak = r;
  return Math.max(1, Math.ceil((100 * peak) / (targetCpu * nodeCapacity) - 1e-9));
}
