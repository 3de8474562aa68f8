import { describe, expect, test } from "vitest";
import { parseConfig } from "@autoscaler/shared";
import type { NodeObservation } from "../decide.js";
import type { ClusterView } from "./model.js";
import { createEngineController } from "./ours.js";

const T0 = 1_800_000_000_000;
const config = parseConfig("[scaling]\nmin_nodes = 1\nmax_nodes = 20\n", "/x/autoscaler.ini").config!;
const options = { nodeCapacity: 60, bootMs: 120_000, sampleIntervalMs: 5_000, tickMs: 1_000, drainMs: 30_000, initialNodes: 2 };

/** A node serving since `since`, read every 5 s at `cpu` up to `now`. */
const node = (name: string, cpu: number, since: number, now: number): NodeObservation => ({
  name,
  live: true,
  firstSeenAt: since,
  addedAt: since,
  removable: true,
  readings: Array.from({ length: Math.floor((now - since) / 5_000) }, (_, i) => ({ at: since + (i + 1) * 5_000, cpu })),
});
const view = (now: number, nodes: NodeObservation[], booting = 0): ClusterView => ({ now, nodes, booting, draining: 0 });

describe("our engine in the simulator", () => {
  test("the model's new nodes fulfil the launch that made them, so the next decision counts no phantom pending nodes", () => {
    const engine = createEngineController(config, options);
    const old = (now: number) => [node("n-1", 100, T0 - 600_000, now), node("n-2", 100, T0 - 600_000, now)];
    expect(engine.tick(view(T0, old(T0)))).toEqual([{ type: "launch", count: 2 }]);
    // Two minutes later both new nodes serve, all four at 100 %: 4 × 100 / 60 → 7 wanted, 3 more.
    const t1 = T0 + 120_000;
    const four = [...old(t1), node("n-3", 100, T0 + 1_000, t1), node("n-4", 100, T0 + 1_000, t1)];
    expect(engine.tick(view(t1, four))).toEqual([{ type: "launch", count: 3 }]);
  });
});
