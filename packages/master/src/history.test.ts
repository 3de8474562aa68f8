import { describe, expect, test } from "vitest";
import { clusterSample, createHistory, FINE_SAMPLES, HISTORY_MINUTES, MAX_MARKERS, NODE_MINUTES, type ClusterSample } from "./history.js";

const T0 = Date.UTC(2024, 0, 1, 12, 0, 0);
const sample = (at: number, over: Partial<ClusterSample> = {}): ClusterSample => ({
  at,
  active: 2,
  pending: 0,
  leaving: 0,
  desired: 2,
  min: 1,
  max: 4,
  cpuMean: 10,
  cpuMax: 20,
  ...over,
});

describe("history", () => {
  test("per-tick samples are kept as they are, and the oldest go once FINE_SAMPLES are held", () => {
    const h = createHistory();
    for (let i = 0; i < FINE_SAMPLES + 10; i++) h.record(sample(T0 + i * 1000, { active: i }), []);
    const fine = h.fine(0);
    expect(fine.t).toHaveLength(FINE_SAMPLES);
    expect(fine.values.active[0]).toBe(10);
    expect(fine.t[0]).toBe((T0 + 10_000) / 1000);
    expect(h.fine(T0 + (FINE_SAMPLES + 5) * 1000).t).toHaveLength(5);
  });

  test("a minute keeps its last capacity figures, its mean CPU and its highest CPU; the current minute is shown as far as it went", () => {
    const h = createHistory();
    h.record(sample(T0, { active: 1, cpuMean: 10, cpuMax: 30 }), []);
    h.record(sample(T0 + 30_000, { active: 3, cpuMean: 30, cpuMax: 50 }), []);
    h.record(sample(T0 + 60_000, { active: 4, cpuMean: null, cpuMax: null }), []);
    const m = h.minutes(0);
    expect(m.t).toEqual([T0 / 1000, T0 / 1000 + 60]);
    expect(m.values.active).toEqual([3, 4]);
    expect(m.values.cpuMean).toEqual([20, null]);
    expect(m.values.cpuMax).toEqual([50, null]);
  });

  test("24 h of minutes at most", () => {
    const h = createHistory();
    for (let i = 0; i < HISTORY_MINUTES + 30; i++) h.record(sample(T0 + i * 60_000), []);
    expect(h.size().minutes).toBe(HISTORY_MINUTES);
    // The closed minutes plus the open one.
    expect(h.minutes(0).t).toHaveLength(HISTORY_MINUTES + 1);
  });

  test("each node keeps an hour of per-minute means; a node silent for an hour is dropped", () => {
    const h = createHistory();
    for (let i = 0; i < 90; i++)
      h.record(sample(T0 + i * 60_000), [
        ["web-1", i],
        ["web-2", i < 5 ? 50 : null],
      ]);
    const web1 = h.nodeMinutes("web-1")!;
    expect(web1.t).toHaveLength(NODE_MINUTES);
    expect(web1.values.cpu.at(-1)).toBe(89);
    expect(web1.values.cpu[0]).toBe(30);
    expect(h.nodeMinutes("web-2")).toBeUndefined();
    expect(h.size().nodes).toBe(1);
  });

  test("a node's minute is the mean of its readings in that minute; ticks without a reading leave gaps", () => {
    const h = createHistory();
    h.record(sample(T0), [["a", 10]]);
    h.record(sample(T0 + 20_000), [["a", 20]]);
    h.record(sample(T0 + 60_000), [["a", null]]);
    h.record(sample(T0 + 180_000), [["a", 40]]);
    expect(h.nodeMinutes("a")).toEqual({ t: [T0 / 1000, T0 / 1000 + 180], values: { cpu: [15, 40] } });
  });

  test("markers are kept up to MAX_MARKERS and read by time", () => {
    const h = createHistory();
    for (let i = 0; i < MAX_MARKERS + 3; i++) h.mark({ at: T0 + i, kind: "scale_up", message: `m${i}` });
    expect(h.size().markers).toBe(MAX_MARKERS);
    expect(h.markers(0)[0]!.message).toBe("m3");
    expect(h.markers(T0 + MAX_MARKERS + 2).map((m) => m.message)).toEqual([`m${MAX_MARKERS + 2}`]);
  });
});

describe("clusterSample", () => {
  const node = (cpu: number | undefined, state = "live") => ({ readings: cpu === undefined ? [] : [{ cpu }], state });
  test.each([
    ["mean and highest of the live nodes' latest readings", [node(10), node(30), node(90, "unreachable")], 20, 30],
    ["no live reading: null", [node(undefined), node(50, "unreachable")], null, null],
  ])("%s", (_name, nodes, mean, max) => {
    const s = clusterSample(T0, { active: 2, pending: 1, leaving: 0, desired: 3, min: 1, max: 5 }, nodes, (n) => n.state);
    expect([s.cpuMean, s.cpuMax, s.desired]).toEqual([mean, max, 3]);
  });

  test("before the scaler runs, capacity is the live nodes", () => {
    expect(clusterSample(T0, undefined, [node(10), node(20)], () => "live")).toMatchObject({ active: 2, desired: 2, min: 0, max: 0 });
  });
});
