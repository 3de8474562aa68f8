import { describe, expect, test } from "vitest";
import { createStaticController } from "./baselines.js";
import { READING_RETENTION_MS, simulate, type ClusterView, type Controller, type ControllerAction, type ModelOptions } from "./model.js";

const model: ModelOptions = { nodeCapacity: 60, bootMs: 120_000, sampleIntervalMs: 5_000, tickMs: 1_000, drainMs: 30_000, initialNodes: 1 };
const trace = (...requests: number[]) => ({ startMs: 0, requests: Float64Array.from(requests) });

/** A controller that acts at given times and remembers what it saw. */
function scripted(
  script: Record<number, ControllerAction[]>,
): Controller & { seen: Map<number, { nodes: string[]; booting: number; draining: number; firstSeen: number[] }> } {
  const seen = new Map<number, { nodes: string[]; booting: number; draining: number; firstSeen: number[] }>();
  return {
    name: "scripted",
    seen,
    tick(view: ClusterView) {
      seen.set(view.now, {
        nodes: view.nodes.map((n) => n.name),
        booting: view.booting,
        draining: view.draining,
        firstSeen: view.nodes.map((n) => n.firstSeenAt),
      });
      return script[view.now] ?? [];
    },
  };
}

describe("simulate on a hand-computed trace", () => {
  // 2 static nodes of 60 req/min: fleet CPU = demand / 120: 50, 50, 100, 125, 25, 0, 75, 90, 150, 50 %.
  const demand = [60, 60, 120, 150, 30, 0, 90, 108, 180, 60];
  const result = simulate(
    trace(...demand),
    createStaticController(2),
    { ...model, initialNodes: 2 },
    {
      wallNow: (() => {
        let t = 0;
        return () => (t += 300);
      })(),
    },
  );

  test.each<[string, number, number]>([
    ["node-hours: 2 nodes × 10 minutes", result.nodeHours, 20 / 60],
    ["minutes over 90 %: the minutes at 100, 125 and 150 % (90 % itself is not over)", result.overloadMinutes90, 3],
    ["minutes over 100 %: the minutes at 125 and 150 %", result.overloadMinutes100, 2],
    ["events: a static fleet has none", result.events, 0],
    ["peak nodes", result.peakNodes, 2],
    ["ticks: one a second", result.ticks, 600],
    ["wall time from the injected clock", result.wallMs, 300],
    ["decisions per second: 600 ticks in 0.3 s", result.decisionsPerSecond, 2000],
  ])("%s", (_name, actual, expected) => {
    expect(actual).toBeCloseTo(expected, 9);
  });

  test("the timeline has one point per minute with the fleet CPU, capacity and nodes", () => {
    expect(result.timeline.map((p) => p.fleetCpu)).toEqual([50, 50, 100, 125, 25, 0, 75, 90, 150, 50]);
    expect(result.timeline.map((p) => p.demand)).toEqual(demand);
    expect(new Set(result.timeline.map((p) => `${p.capacity}/${p.nodes}`))).toEqual(new Set(["120/2"]));
    expect(result.timeline[3]!.minute).toBe(180_000);
  });
});

describe("a scripted controller", () => {
  // 1 node, 60 req/min each minute; a launch at 60 s serves at 180 s; a drain of it at 240 s ends at 270 s.
  const controller = scripted({ 60_000: [{ type: "launch", count: 1 }], 240_000: [{ type: "drain", node: "sim-2" }] });
  const result = simulate(trace(60, 60, 60, 60, 60), controller, model);

  test.each<[string, number, number]>([
    ["node-hours: 5 minutes of the first node + 3.5 of the second (booting 60–180 s, serving to 240 s, draining to 270 s)", result.nodeHours * 60, 8.5],
    ["over 90 %: the first node alone at 100 % until 180 s, and again from the drain at 240 s", result.overloadMinutes90, 4],
    ["over 100 %: never", result.overloadMinutes100, 0],
    ["events: one added, one removed", result.events, 2],
    ["peak nodes: booting counts", result.peakNodes, 2],
  ])("%s", (_name, actual, expected) => {
    expect(actual).toBeCloseTo(expected, 9);
  });

  test.each<[string, number, { nodes: string[]; booting: number; draining: number }]>([
    ["before the launch: one node", 59_000, { nodes: ["sim-1"], booting: 0, draining: 0 }],
    ["while it boots: not in the view, counted as booting", 179_000, { nodes: ["sim-1"], booting: 1, draining: 0 }],
    ["from 120 s after the launch: serving and in the view", 180_000, { nodes: ["sim-1", "sim-2"], booting: 0, draining: 0 }],
    ["after the drain: out of the view, counted as draining", 241_000, { nodes: ["sim-1"], booting: 0, draining: 1 }],
    ["drainMs after the drain: gone", 270_000, { nodes: ["sim-1"], booting: 0, draining: 0 }],
  ])("%s", (_name, at, expected) => {
    expect(controller.seen.get(at)).toMatchObject(expected);
  });

  test("a new node is first seen when it starts serving; the initial fleet long before the start", () => {
    expect(controller.seen.get(180_000)!.firstSeen).toEqual([-86_400_000, 180_000]);
  });
});

describe("readings", () => {
  /** The readings the controller sees at the end of a run of `minutes` at `demand`. */
  function lastView(minutes: number, demand: number, options: Partial<ModelOptions>): ClusterView {
    let last: ClusterView | undefined;
    const spy: Controller = { name: "spy", tick: (view) => ((last = { ...view, nodes: view.nodes.map((n) => ({ ...n, readings: [...n.readings] })) }), []) };
    simulate(trace(...Array<number>(minutes).fill(demand)), spy, { ...model, ...options });
    return last!;
  }

  test("the initial fleet has 10 minutes of readings at the first minute's CPU before the start", () => {
    const seen: { at: number; cpu: number }[][] = [];
    const spy: Controller = { name: "spy", tick: (view) => (seen.length === 0 && seen.push([...view.nodes[0]!.readings]), []) };
    simulate(trace(30), spy, { ...model, initialNodes: 2 });
    expect(seen[0]!.length).toBe(READING_RETENTION_MS / 5_000);
    expect(seen[0]![0]!.at).toBe(-595_000);
    expect(new Set(seen[0]!.map((r) => r.cpu))).toEqual(new Set([25]));
  });

  test("only the last 10 to 12 minutes of readings are kept", () => {
    for (const minutes of [30, 31, 32, 33]) {
      const view = lastView(minutes, 30, {});
      const readings = view.nodes[0]!.readings;
      expect(readings.length, `after ${minutes} minutes`).toBeGreaterThanOrEqual(120);
      expect(readings.length, `after ${minutes} minutes`).toBeLessThanOrEqual(144);
      expect(readings[0]!.at).toBeGreaterThan(view.now - READING_RETENTION_MS - 120_000);
    }
  });

  test("even shares without skew; uneven, fixed and reproducible shares with skew", () => {
    const even = lastView(2, 120, { initialNodes: 3 }).nodes.map((n) => n.readings.at(-1)!.cpu);
    expect(even).toEqual([200 / 3, 200 / 3, 200 / 3]);
    const skewed = lastView(2, 120, { initialNodes: 3, skew: 0.3, seed: 7 }).nodes.map((n) => n.readings.at(-1)!.cpu);
    expect(new Set(skewed).size).toBe(3);
    expect(skewed.reduce((a, b) => a + b, 0)).toBeCloseTo(200, 6); // shares add up to the demand (no node capped at 100 here)
    expect(lastView(2, 120, { initialNodes: 3, skew: 0.3, seed: 7 }).nodes.map((n) => n.readings.at(-1)!.cpu)).toEqual(skewed);
  });

  test("jitter adds noise within 0..100, the same for the same seed", () => {
    const a = lastView(3, 54, { jitter: 0.5, seed: 3 }).nodes[0]!.readings.map((r) => r.cpu);
    const b = lastView(3, 54, { jitter: 0.5, seed: 3 }).nodes[0]!.readings.map((r) => r.cpu);
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(50);
    expect(Math.min(...a)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...a)).toBeLessThanOrEqual(100);
    expect(a).toContain(100); // 90 % × (1 + 0.5 N) passes 100 often: clamped
  });
});

describe("the model's edges", () => {
  test("no serving node while demand is there: every second is overload, the timeline stays a number", () => {
    const r = simulate(trace(10, 0), createStaticController(0), { ...model, initialNodes: 0 });
    expect(r.overloadMinutes100).toBe(1);
    expect(r.timeline[0]!.fleetCpu).toBe(1000);
    expect(r.timeline[1]!.fleetCpu).toBe(0);
  });

  test.each<[string, ControllerAction]>([
    ["a launch of 0 nodes", { type: "launch", count: 0 }],
    ["a drain of a node that is not serving", { type: "drain", node: "sim-9" }],
  ])("a controller asking for %s is a bug: it throws", (_name, action) => {
    expect(() => simulate(trace(1), scripted({ 0: [action] }), model)).toThrow(/controller scripted asked to/);
  });

  test("a controller with a 15 s period is called every 15 s from the start", () => {
    const calls: number[] = [];
    simulate(trace(1), { name: "slow", periodMs: 15_000, tick: (v) => (calls.push(v.now), []) }, model);
    expect(calls).toEqual([0, 15_000, 30_000, 45_000]);
  });
});
