import { describe, expect, test } from "vitest";
import { capCount, decide, type NodeObservation, type ScalingPolicy, type ScalingState } from "./decide.js";

const policy: ScalingPolicy = {
  mode: "instance",
  upThreshold: 75,
  downThreshold: 25,
  windowMs: 60_000,
  upCooldownMs: 300_000,
  downCooldownMs: 300_000,
  minNodes: 1,
  maxNodes: 10,
  step: 1,
  scaleDownOrder: "oldest",
  scaleUpEnabled: true,
  scaleDownEnabled: true,
  sampleIntervalMs: 5_000,
  targetCpu: 60,
  tolerance: 0.1,
  scaleDownWindowMs: 300_000,
  scaleUpWindowMs: 0,
  scaleDownLimit: 2,
  predictive: false,
  bootMs: 120_000,
  launchTimeoutMs: 600_000,
  drainMs: 30_000,
  forgetAfterMs: 600_000,
  minAvailable: 0,
  nodeCapacity: undefined,
};
const state: ScalingState = { pendingLaunches: 0, leaving: 0, lastScaleUpAt: undefined, lastScaleDownAt: undefined, paused: false };
const NOW = 1_000_000;

/** A node seen since long ago with one reading every 5 s over the last 90 s, each `cpu`. */
function node(name: string, cpu: number | ((i: number) => number), extra: Partial<NodeObservation> = {}): NodeObservation {
  const readings = Array.from({ length: 19 }, (_, i) => ({ at: NOW - 90_000 + i * 5_000, cpu: typeof cpu === "function" ? cpu(i) : cpu }));
  return { name, live: true, firstSeenAt: NOW - 600_000, addedAt: NOW - 600_000, removable: true, readings, ...extra };
}

describe("decide", () => {
  test.each<[string, ScalingState, NodeObservation[], Partial<ScalingPolicy>, RegExp | { action: string; count?: number; nodes?: string[] }]>([
    [
      "instance mode: one node at or over the threshold for the whole window scales up by step",
      state,
      [node("a", 80), node("b", 10)],
      {},
      { action: "scale_up", count: 1 },
    ],
    [
      "instance mode: a node that dipped below the threshold once in the window does not",
      state,
      [node("a", (i) => (i === 15 ? 70 : 90))],
      {},
      { action: "none" },
    ],
    ["instance mode: exactly at the threshold counts as hot", state, [node("a", 75)], {}, { action: "scale_up", count: 1 }],
    [
      "average mode: the mean of all nodes at or over the threshold scales up",
      state,
      [node("a", 100), node("b", 60)],
      { mode: "average" },
      { action: "scale_up", count: 1 },
    ],
    ["average mode: one hot node among cold ones does not", state, [node("a", 100), node("b", 10)], { mode: "average" }, { action: "none" }],
    ["step adds that many nodes", state, [node("a", 90)], { step: 3 }, { action: "scale_up", count: 3 }],
    ["pending launches count toward max_nodes", { ...state, pendingLaunches: 1 }, [node("a", 90)], { maxNodes: 2 }, /but capped 1 → 0 by max_nodes/],
    ["a step past max_nodes is capped and says why", state, [node("a", 90), node("b", 90)], { step: 5, maxNodes: 4 }, { action: "scale_up", count: 2 }],
    ["scale-up cooldown holds a hot cluster", { ...state, lastScaleUpAt: NOW - 100_000 }, [node("a", 90)], {}, /scale-up cooldown \(200 s left\)/],
    ["scale-up cooldown over: scales up again", { ...state, lastScaleUpAt: NOW - 300_000 }, [node("a", 90)], {}, { action: "scale_up", count: 1 }],
    ["below min_nodes launches up to min_nodes", state, [node("a", 50)], { minNodes: 3 }, { action: "scale_up", count: 2 }],
    ["below min_nodes counts pending launches", { ...state, pendingLaunches: 2 }, [node("a", 50)], { minNodes: 3 }, { action: "none" }],
    ["an unreachable node does not count toward scale-up", state, [node("a", 95, { live: false })], { minNodes: 0 }, /no node has data/],
    ["a node younger than one window does not count", state, [node("a", 95, { firstSeenAt: NOW - 30_000 })], {}, /no node has data/],
    [
      "a node with a gap in its readings does not count",
      state,
      [{ ...node("a", 95), readings: node("a", 95).readings.filter((r) => r.at < NOW - 40_000) }],
      {},
      /no node has data/,
    ],
    ["paused: nothing, even when hot", { ...state, paused: true }, [node("a", 99)], {}, /paused/],
    ["paused: nothing, even below min_nodes", { ...state, paused: true }, [], { minNodes: 2 }, /paused/],
    [
      "all nodes below the down threshold for the window scales down the oldest removable node",
      state,
      [node("new", 5, { addedAt: NOW - 100 }), node("old", 5, { addedAt: NOW - 900_000 })],
      { minNodes: 1 },
      { action: "scale_down", nodes: ["old"] },
    ],
    [
      "scale_down_order newest picks the newest",
      state,
      [node("new", 5, { addedAt: NOW - 100 }), node("old", 5, { addedAt: NOW - 900_000 })],
      { scaleDownOrder: "newest" },
      { action: "scale_down", nodes: ["new"] },
    ],
    [
      "hand-added hosts are never scaled down",
      state,
      [node("manual", 5, { removable: false }), node("agent", 5, { removable: true, addedAt: NOW })],
      {},
      { action: "scale_down", nodes: ["agent"] },
    ],
    [
      "only hand-added hosts: no scale-down",
      state,
      [node("m1", 5, { removable: false }), node("m2", 5, { removable: false })],
      {},
      /hand-added hosts are never scaled down/,
    ],
    ["never below min_nodes", state, [node("a", 5)], { minNodes: 1 }, /at min_nodes/],
    ["no scale-down while a launch is pending", { ...state, pendingLaunches: 1 }, [node("a", 5), node("b", 5)], {}, /launch\(es\) pending/],
    ["no scale-down without a scale_down_command", state, [node("a", 5), node("b", 5)], { scaleDownEnabled: false }, /scale-down is off/],
    ["no scale-down when one node was above the down threshold once", state, [node("a", 5), node("b", (i) => (i === 17 ? 30 : 5))], {}, /within thresholds/],
    [
      "no scale-down while a node is unreachable (it may be the busy one; the reachable ones may be all that serves)",
      state,
      [node("a", 5), node("b", 5), node("gone", 0, { live: false, unreachable: true, readings: [] })],
      {},
      /no scale-down while gone is unreachable/,
    ],
    [
      "no scale-down while a live node lacks a full window (it may be the busy one)",
      state,
      [node("a", 5), node("b", 5), node("young", 90, { firstSeenAt: NOW - 10_000 })],
      {},
      /not every live node/,
    ],
    ["scale-down cooldown holds", { ...state, lastScaleDownAt: NOW - 60_000 }, [node("a", 5), node("b", 5)], {}, /scale-down cooldown \(240 s left\)/],
    ["no automatic scale-down while another is in progress", { ...state, leaving: 1 }, [node("a", 5), node("b", 5)], { minNodes: 1 }, /already in progress/],
    [
      "an unreachable backend still counts as capacity for min_nodes (missing data never scales)",
      state,
      [node("a", 50, { live: false, readings: [] })],
      { minNodes: 1 },
      /no node has data/,
    ],
    [
      "a backend without an agent (hand-added) counts as capacity toward max_nodes",
      state,
      [node("a", 90), node("m", 0, { live: false, removable: false, readings: [] })],
      { maxNodes: 2 },
      /capped 1 → 0 by max_nodes/,
    ],
    ["a hand-added host counts toward min_nodes", state, [node("m", 0, { live: false, removable: false, readings: [] })], { minNodes: 1 }, /no node has data/],
    ["no scale-up command: a hot cluster does not launch, and says why", state, [node("a", 90)], { scaleUpEnabled: false }, /scale-up is off/],
    ["no scale-up command: below min_nodes says why", state, [], { minNodes: 1, scaleUpEnabled: false }, /below min_nodes.*scale-up is off/],
    [
      "a failed launch blocks automatic scale-up until its backoff ends",
      { ...state, upBlockedUntil: NOW + 20_000 },
      [node("a", 90)],
      {},
      /backoff \(20 s left\)/,
    ],
    ["a failed launch blocks below-min launches too", { ...state, upBlockedUntil: NOW + 20_000 }, [], { minNodes: 1 }, /below min_nodes.*backoff/],
    ["after the backoff a hot cluster scales up again", { ...state, upBlockedUntil: NOW - 1 }, [node("a", 90)], {}, { action: "scale_up", count: 1 }],
    [
      "a failed terminate blocks automatic scale-down until its backoff ends",
      { ...state, downBlockedUntil: NOW + 5_000 },
      [node("a", 5), node("b", 5)],
      {},
      /scale-down failed; retrying after a backoff/,
    ],
    ["average mode: a cold mean scales down", state, [node("a", 20), node("b", 10)], { mode: "average" }, { action: "scale_down", nodes: ["a"] }],
    ["average mode: a warm mean does not scale down", state, [node("a", 40), node("b", 15)], { mode: "average" }, /within thresholds/],
    [
      "a window with readings only at its very end does not count (it started too late)",
      state,
      [{ ...node("a", 95), readings: node("a", 95).readings.filter((r) => r.at > NOW - 20_000) }],
      {},
      /no node has data/,
    ],
  ])("%s", (_name, s, nodes, overrides, expected) => {
    const d = decide(s, nodes, { ...policy, ...overrides }, NOW);
    if (expected instanceof RegExp) {
      expect(d.action).toBe("none");
      expect(d.reason).toMatch(expected);
    } else {
      expect(d).toMatchObject(expected);
      expect(d.reason.length).toBeGreaterThan(5);
    }
  });

  test("the reason of a scale-up names the node, its CPU, the threshold and the window", () => {
    const d = decide(state, [node("web-2", 91)], policy, NOW);
    expect(d.reason).toBe("scale-up: node web-2 at 91 % ≥ 75 % for 60 s");
  });

  test("a capped scale-up keeps its reason for status", () => {
    const d = decide(state, [node("a", 90), node("b", 90)], { ...policy, step: 5, maxNodes: 4 }, NOW);
    expect(d).toMatchObject({ action: "scale_up", count: 2, capped: "capped 5 → 2 by max_nodes (2 of 4 backends or pending)" });
  });

  test("the same inputs always give the same decision (no clock, no randomness inside)", () => {
    const nodes = [node("a", 80), node("b", 20)];
    expect(decide(state, nodes, policy, NOW)).toEqual(decide(state, nodes, policy, NOW));
  });
});

test.each([
  [1, 3, 10, { count: 1 }],
  [5, 8, 10, { count: 2, capped: "capped 5 → 2 by max_nodes (8 of 10 backends or pending)" }],
  [1, 10, 10, { count: 0, capped: "capped 1 → 0 by max_nodes (10 of 10 backends or pending)" }],
  [1, 12, 10, { count: 0, capped: "capped 1 → 0 by max_nodes (12 of 10 backends or pending)" }],
])("capCount(%i wanted, %i capacity, max %i)", (wanted, capacity, max, expected) => {
  expect(capCount(wanted, capacity, max)).toEqual(expected);
});

describe("decide in target mode (the default), as the HPA computes it", () => {
  const target: ScalingPolicy = { ...policy, mode: "target", upCooldownMs: 30_000, downCooldownMs: 0 };
  /** Recommendations made every second since `since`, each `desired`. */
  const history = (since: number, desired: number): Pick<ScalingState, "recommendations" | "recommendingSince"> => ({
    recommendations: [
      { at: since, desired },
      { at: NOW - 1000, desired },
    ],
    recommendingSince: since,
  });
  test.each<[string, ScalingState, NodeObservation[], Partial<ScalingPolicy>, RegExp | { action: string; count?: number; nodes?: string[] }]>([
    [
      "sized by the deficit in one decision: 5 nodes at 84 % need ceil(420/60) = 7",
      state,
      ["a", "b", "c", "d", "e"].map((n) => node(n, 84)),
      {},
      { action: "scale_up", count: 2 },
    ],
    ["a deviation within the tolerance does nothing (65 % is within 10 % of 60 %)", state, [node("a", 65), node("b", 65)], {}, /within 10 % of 60 %/],
    [
      "booting nodes count in the current size: a ramp already answered is not answered twice",
      { ...state, pendingLaunches: 2 },
      ["a", "b", "c", "d", "e"].map((n) => node(n, 84)),
      {},
      /desired 7 = ceil\(420 % \/ 60 %\); 5 measured/,
    ],
    [
      "a node without data yet counts as idle for a scale-up: the others' readings still hold the load it now takes",
      state,
      [node("a", 90), node("b", 90), node("young", 10, { firstSeenAt: NOW - 10_000 })],
      {},
      /^desired 3 = between ceil\(180 % \/ 60 %\) and ceil\(280 % \/ 60 %\) \(the nodes without data counted idle, then busy\); 2 measured \+ 1 without data$/,
    ],
    [
      "…and as busy for a scale-down, so it can cause neither",
      { ...state, recommendations: [{ at: NOW - 400_000, desired: 1 }], recommendingSince: NOW - 400_000 },
      [node("a", 30), node("b", 30), node("young", 10, { firstSeenAt: NOW - 10_000 })],
      {},
      /^desired 3 = between ceil\(60 % \/ 60 %\) and ceil\(160 % \/ 60 %\) \(the nodes without data counted idle, then busy\); 2 measured \+ 1 without data$/,
    ],
    [
      "hot nodes beside a young one still scale up",
      state,
      [node("a", 100), node("b", 100), node("young", 10, { firstSeenAt: NOW - 10_000 })],
      {},
      { action: "scale_up", count: 1 },
    ],
    ["no node with data: nothing (missing data never scales)", state, [node("young", 99, { firstSeenAt: NOW - 10_000 })], {}, /no node has data/],
    [
      "a large deficit is limited to +4 per scale-up on a small fleet (2 → 6, not 10)",
      state,
      [node("a", 100), node("b", 100)],
      { targetCpu: 20 },
      { action: "scale_up", count: 4 },
    ],
    [
      "a large deficit is limited to double per scale-up on a big fleet (8 → 16, not 40)",
      state,
      "abcdefgh".split("").map((n) => node(n, 100)),
      { targetCpu: 20, maxNodes: 100 },
      { action: "scale_up", count: 8 },
    ],
    ["max_nodes caps the desired count and says so", state, ["a", "b", "c"].map((n) => node(n, 100)), { maxNodes: 4 }, { action: "scale_up", count: 1 }],
    [
      "scale-up cooldown holds the next one",
      { ...state, lastScaleUpAt: NOW - 10_000 },
      [node("a", 100), node("b", 100)],
      {},
      /scale-up cooldown \(20 s left\)/,
    ],
    [
      "scale-down waits until recommendations cover the whole scale_down_window",
      { ...state, ...history(NOW - 100_000, 1) },
      [node("a", 10), node("b", 10), node("c", 10)],
      {},
      /cover 100 s of the 300 s scale_down_window/,
    ],
    [
      "scale-down goes to the highest recommendation of the window",
      { ...state, ...history(NOW - 400_000, 2) },
      [node("a", 10), node("b", 10), node("c", 10), node("d", 10)],
      {},
      { action: "scale_down", nodes: ["a", "b"] },
    ],
    [
      "one higher recommendation in the window holds the scale-down",
      {
        ...state,
        recommendations: [
          { at: NOW - 400_000, desired: 1 },
          { at: NOW - 200_000, desired: 4 },
          { at: NOW - 1000, desired: 1 },
        ],
        recommendingSince: NOW - 400_000,
      },
      [node("a", 10), node("b", 10), node("c", 10), node("d", 10)],
      {},
      /highest recommendation of the last 300 s is 4/,
    ],
    [
      "scale-down removes at most scale_down_limit nodes per decision",
      { ...state, ...history(NOW - 400_000, 1) },
      ["a", "b", "c", "d", "e"].map((n) => node(n, 5)),
      { scaleDownLimit: 2 },
      { action: "scale_down", nodes: ["a", "b"] },
    ],
    [
      "scale-down never takes a hand-added host",
      { ...state, ...history(NOW - 400_000, 1) },
      [node("m", 5, { removable: false }), node("b", 5)],
      {},
      { action: "scale_down", nodes: ["b"] },
    ],
    [
      "no scale-down while a node is unreachable",
      { ...state, ...history(NOW - 400_000, 1) },
      [node("a", 5), node("b", 5), node("gone", 0, { live: false, unreachable: true, readings: [] })],
      {},
      /unreachable/,
    ],
    [
      "scale_up_window: a spike shorter than the window is not answered",
      { ...state, recommendations: [{ at: NOW - 20_000, desired: 2 }], recommendingSince: NOW - 100_000 },
      [node("a", 100), node("b", 100)],
      { scaleUpWindowMs: 30_000 },
      /lowest recommendation of the last 30 s is 2/,
    ],
  ])("%s", (_name, s, nodes, overrides, expected) => {
    const d = decide(s, nodes, { ...target, ...overrides }, NOW);
    if (expected instanceof RegExp) {
      expect(d.action).toBe("none");
      expect(d.reason).toMatch(expected);
    } else {
      expect(d).toMatchObject(expected);
    }
  });

  test("the reason names the numbers", () => {
    const d = decide(
      { ...state, pendingLaunches: 1 },
      ["a", "b", "c", "d", "e"].map((n) => node(n, 80.4)),
      target,
      NOW,
    );
    expect(d.reason).toBe("scale-up: desired 7 = ceil(402 % / 60 %); 5 measured + 1 booting; +1");
    expect(d).toMatchObject({ action: "scale_up", count: 1, recommendation: 7 });
  });

  test("a flood of readings cannot overflow the stack", () => {
    const readings = Array.from({ length: 200_000 }, (_, i) => ({ at: NOW - 60_000 + i * 0.3, cpu: 90 }));
    expect(decide(state, [{ ...node("a", 90), readings }], policy, NOW).action).toBe("scale_up");
    expect(decide(state, [{ ...node("a", 90), readings }], target, NOW).action).toBe("scale_up");
  });
});

describe("decide in resources mode (SimpleScaleVM's model): keep min_available units free", () => {
  const resources: ScalingPolicy = { ...policy, mode: "resources", upCooldownMs: 30_000, downCooldownMs: 0, minAvailable: 10, nodeCapacity: 8, maxNodes: 20 };
  /** A node reporting `free` units with every reading (or `undefined`: a capacity_url that failed). */
  const slots = (name: string, free: number | undefined, extra: Partial<NodeObservation> = {}): NodeObservation => {
    const n = node(name, 10, extra);
    return { ...n, readings: n.readings.map((r) => (free === undefined ? r : { ...r, available: free })) };
  };
  const covered = { ...state, recommendations: [{ at: NOW - 400_000, desired: 1 }], recommendingSince: NOW - 400_000 };
  test.each<[string, ScalingState, NodeObservation[], Partial<ScalingPolicy>, RegExp | { action: string; count?: number; nodes?: string[] }]>([
    ["enough free: nothing", state, [slots("a", 6), slots("b", 6)], {}, /^desired 2 \(12 free, min_available 10: removing a node would leave less\)/],
    ["a deficit of 7 with 8 units a node launches ceil(7/8) = 1", state, [slots("a", 1), slots("b", 2)], {}, { action: "scale_up", count: 1 }],
    [
      "a deficit of 17 launches ceil(17/8) = 3 at once (no ×2/+4 limit on units)",
      state,
      [slots("a", 0)],
      { minAvailable: 17 },
      { action: "scale_up", count: 3 },
    ],
    [
      "booting nodes count at the per-node capacity: a deficit already answered is not answered twice",
      { ...state, pendingLaunches: 1 },
      [slots("a", 1), slots("b", 2)],
      {},
      /^desired 2 \(11 free/,
    ],
    [
      "without node_capacity, the highest free count any node reported is the per-node capacity",
      state,
      [slots("a", 0), slots("b", 4)],
      { nodeCapacity: undefined, minAvailable: 13 },
      { action: "scale_up", count: 3 },
    ],
    [
      "a node without a report counts as fully free for a scale-up, so it causes none",
      state,
      [slots("a", 1), slots("quiet", undefined)],
      { minAvailable: 9 },
      /^desired 2 \(1 to 9 free, min_available 9: removing a node would leave less\)/,
    ],
    [
      "no report at all: nothing (missing data never scales)",
      state,
      [slots("a", undefined), slots("b", undefined)],
      {},
      /no node has reported free resource units/,
    ],
    [
      "a young node's reports are not data yet",
      state,
      [slots("young", 0, { firstSeenAt: NOW - 10_000 })],
      { minAvailable: 50 },
      /no node has reported free resource units/,
    ],
    [
      "no per-node capacity known (all report 0, no node_capacity): nothing",
      state,
      [slots("a", 0)],
      { nodeCapacity: undefined },
      /capacity a new node brings is unknown/,
    ],
    [
      "scale-down only when removing the node still leaves min_available, after the whole scale_down_window",
      covered,
      [slots("a", 8), slots("b", 8), slots("c", 8)],
      {},
      { action: "scale_down", nodes: ["a"] },
    ],
    [
      "…held while recommendations do not cover the window",
      { ...state, recommendations: [{ at: NOW - 100_000, desired: 1 }], recommendingSince: NOW - 100_000 },
      [slots("a", 8), slots("b", 8), slots("c", 8)],
      {},
      /cover 100 s of the 300 s scale_down_window/,
    ],
    [
      "…and a node without a report counts as full for a scale-down, and is never the one counted out",
      covered,
      [slots("a", undefined), slots("b", 8), slots("c", 4)],
      {},
      /12 to 20 free, min_available 10: the next node to remove \(a\) has no report/,
    ],
    ["max_nodes caps a deficit and says so", state, [slots("a", 0), slots("b", 0)], { maxNodes: 3, minAvailable: 40 }, { action: "scale_up", count: 1 }],
    ["the up cooldown holds the next launch", { ...state, lastScaleUpAt: NOW - 10_000 }, [slots("a", 0)], {}, /scale-up cooldown \(20 s left\)/],
  ])("%s", (_name, s, nodes, overrides, expected) => {
    const d = decide(s, nodes, { ...resources, ...overrides }, NOW);
    if (expected instanceof RegExp) {
      expect(d.action).toBe("none");
      expect(d.reason).toMatch(expected);
    } else {
      expect(d).toMatchObject(expected);
    }
  });

  test("the reason names the units", () => {
    const d = decide(state, [slots("a", 1), slots("b", 2)], resources, NOW);
    expect(d.reason).toBe("scale-up: desired 3 (3 free < min_available 10: ceil(7 / 8 per node)); 2 reporting; +1");
  });
});
