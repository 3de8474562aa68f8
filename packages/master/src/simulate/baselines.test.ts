import { describe, expect, test } from "vitest";
import type { NodeObservation } from "../decide.js";
import { createHpaController, createStaticController, hpaReplicas, staticFleetFor } from "./baselines.js";
import { simulate, type ClusterView } from "./model.js";

describe("hpaReplicas (the replica calculator)", () => {
  const base = { unready: 0, targetCpu: 60, tolerance: 0.1 };
  test.each<[string, { usageSum: number; ready: number; unready?: number; current: number }, number]>([
    ["2 nodes at 90 % of a 60 % target: ceil(1.5 × 2)", { usageSum: 180, ready: 2, current: 2 }, 3],
    ["within tolerance (ratio 1.067): keep", { usageSum: 128, ready: 2, current: 2 }, 2],
    ["4 nodes at 30 %: ceil(0.5 × 4)", { usageSum: 120, ready: 4, current: 4 }, 2],
    ["no metrics: keep", { usageSum: 0, ready: 0, unready: 2, current: 2 }, 2],
    ["a ramp already answered by a booting node (2 at 90 % + 1 booting: 180 / 3 = the target): keep", { usageSum: 180, ready: 2, unready: 1, current: 3 }, 3],
    ["a ramp larger than the booting node (2 at 100 % + 1 booting: ratio 1.11 over 3): ceil(3.33)", { usageSum: 200, ready: 2, unready: 1, current: 3 }, 4],
    ["a scale-down ignores booting nodes: 2 at 15 % + 1 booting → ceil(0.25 × 2)", { usageSum: 30, ready: 2, unready: 1, current: 3 }, 1],
  ])("%s", (_name, input, expected) => {
    expect(hpaReplicas({ ...base, ...input })).toBe(expected);
  });
});

/** A view of serving nodes, each with one latest reading; node i was added at i. */
function view(now: number, cpus: number[], booting = 0): ClusterView {
  const nodes: NodeObservation[] = cpus.map((cpu, i) => ({
    name: `n${i + 1}`,
    live: true,
    firstSeenAt: i,
    addedAt: i,
    removable: true,
    readings: [{ at: now, cpu }],
  }));
  return { now, nodes, booting, draining: 0 };
}

describe("createHpaController", () => {
  test.each<[string, ClusterView, { targetCpu?: number; maxNodes?: number }, unknown[]]>([
    ["hot: launches up to the desired count", view(0, [90, 90]), {}, [{ type: "launch", count: 1 }]],
    [
      "very hot (1 node at 10× a 10 % target): at most max(4, 100 %) more per period",
      view(0, [100]),
      { targetCpu: 10, maxNodes: 100 },
      [{ type: "launch", count: 4 }],
    ],
    ["very hot with 6 nodes: at most double", view(0, [100, 100, 100, 100, 100, 100]), { targetCpu: 10, maxNodes: 100 }, [{ type: "launch", count: 6 }]],
    ["at the target: nothing", view(0, [60, 62]), {}, []],
    ["capped by max_nodes", view(0, [100, 100, 100, 100, 100, 100, 100, 100]), { maxNodes: 10 }, [{ type: "launch", count: 2 }]],
  ])("%s", (_name, v, options, actions) => {
    expect(createHpaController({ minNodes: 1, maxNodes: 10, ...options }).tick(v)).toEqual(actions);
  });

  test("scale-down waits for the highest recommendation of the last 300 s, then drains the newest nodes", () => {
    const hpa = createHpaController({ minNodes: 1, maxNodes: 10 });
    expect(hpa.tick(view(0, [60, 60, 60, 60]))).toEqual([]); // recommends 4
    for (let t = 15_000; t < 300_000; t += 15_000) expect(hpa.tick(view(t, [15, 15, 15, 15])), `at ${t} ms`).toEqual([]); // recommends 1, held at 4
    expect(hpa.tick(view(300_000, [15, 15, 15, 15]))).toEqual([
      { type: "drain", node: "n4" },
      { type: "drain", node: "n3" },
      { type: "drain", node: "n2" },
    ]);
  });

  test("never below min_nodes", () => {
    const hpa = createHpaController({ minNodes: 2, maxNodes: 10, stabilisationMs: 0 });
    expect(hpa.tick(view(0, [5, 5, 5]))).toEqual([{ type: "drain", node: "n3" }]);
  });

  test("on a ramp, scales up as the demand rises and ends at ceil(demand / (60 % of a node))", () => {
    // 60 → 600 req/min over 10 minutes, then 20 minutes flat; a node serves 60 req/min.
    const requests = Float64Array.from({ length: 30 }, (_, m) => 60 * Math.min(10, m + 1));
    const r = simulate({ startMs: 0, requests }, createHpaController({ minNodes: 1, maxNodes: 50 }), {
      nodeCapacity: 60,
      bootMs: 60_000,
      sampleIntervalMs: 5_000,
      tickMs: 1_000,
      drainMs: 30_000,
      initialNodes: 1,
    });
    const nodes = r.timeline.map((p) => p.nodes);
    for (let m = 1; m < 12; m++) expect(nodes[m]!, `minute ${m}`).toBeGreaterThanOrEqual(nodes[m - 1]!);
    expect(nodes.at(-1)).toBe(Math.ceil(600 / 36));
    expect(r.peakNodes).toBeLessThanOrEqual(Math.ceil(600 / 36) + 2);
  });
});

describe("the static fleet", () => {
  test.each<[string, number[], number]>([
    ["the peak minute at ≤ 90 %: 108 req/min on nodes of 60 is exactly 2 at 90 %", [10, 108, 20], 2],
    ["one more request needs a third node", [109], 3],
    ["an idle trace still gets one node", [0, 0], 1],
  ])("%s", (_name, requests, expected) => {
    expect(staticFleetFor(Float64Array.from(requests), 60)).toBe(expected);
  });

  test("never acts and says its size", () => {
    const s = createStaticController(3);
    expect(s.fleet).toBe(3);
    expect(s.tick(view(0, [100, 100, 100]))).toEqual([]);
  });
});
