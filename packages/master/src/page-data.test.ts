import { describe, expect, test } from "vitest";
import { createHistory } from "./history.js";
import { buildPageData, CHARTED_NODES, parseRange, windowColumns, type PageInputs } from "./page-data.js";
import { capacityChart, cooldownText, cpuGuides, eventKinds, filterEvents, pointCount, roleText } from "./page-view.js";
import type { ScalingPolicy } from "./policy.js";
import type { MasterStatus, NodeStatus } from "./status.js";

const NOW = Date.UTC(2024, 0, 1, 12, 0, 0);
const node = (name: string): NodeStatus => ({
  name,
  address: "10.0.0.1",
  port: 80,
  source: "agent",
  state: "live",
  healthy: true,
  cpu_now: 12,
  cpu_window: 10,
  samples_in_window: 3,
  last_seen_seconds_ago: 1,
  connections: 1,
  instance_id: null,
  instance_id_trusted: false,
  credential: "node",
  added_at: null,
  available_now: null,
});
const status = (nodes: NodeStatus[]): MasterStatus =>
  ({
    version: "1",
    role: "decider",
    role_reason: "only proxy",
    nodes,
    capacity: { active: nodes.length, pending: 0, leaving: 0, desired: nodes.length, min: 1, max: 5 },
    paused: false,
    cooldown: { scale_up_seconds: 0, scale_down_seconds: 12 },
    last_decision: null,
    haproxy: {},
    events: [
      { at: "a", kind: "started", message: "first" },
      { at: "b", kind: "registered", message: "second" },
    ],
    cluster: null,
  }) as unknown as MasterStatus;
const policy = { mode: "instance", targetCpu: 60, upThreshold: 80, downThreshold: 20, windowMs: 60_000 } as ScalingPolicy;
const inputs = (over: Partial<PageInputs> = {}): PageInputs => ({
  status: status([node("a")]),
  history: createHistory(),
  policy,
  readings: () => [
    { at: NOW - 120_000, cpu: 99 },
    { at: NOW - 30_000, cpu: 10.04 },
    { at: NOW, cpu: 20 },
  ],
  now: NOW,
  range: "hour",
  ...over,
});

describe("page data", () => {
  test("events come newest first; the policy shows thresholds outside target mode", () => {
    const d = buildPageData(inputs());
    expect(d.events.map((e) => e.message)).toEqual(["second", "first"]);
    expect(d.policy).toEqual({ mode: "instance", target_cpu: null, up_threshold: 80, down_threshold: 20, window_seconds: 60 });
  });

  test("a node's window chart holds only the readings inside the window, rounded", () => {
    const d = buildPageData(inputs());
    expect(d.nodes[0]!.chart!.window).toEqual({ t: [(NOW - 30_000) / 1000, NOW / 1000], values: { cpu: [10, 20] } });
  });

  test("charts ride along for the first CHARTED_NODES nodes and the one asked for", () => {
    const many = Array.from({ length: CHARTED_NODES + 5 }, (_, i) => node(`n${String(i).padStart(3, "0")}`));
    const d = buildPageData(inputs({ status: status(many), node: "n052" }));
    expect(d.nodes.filter((n) => n.chart).map((n) => n.name)).toHaveLength(CHARTED_NODES + 1);
    expect(d.nodes.find((n) => n.name === "n052")!.chart).toBeDefined();
    expect(d.nodes.find((n) => n.name === "n053")!.chart).toBeUndefined();
  });

  test.each([
    ["window", "window"],
    ["day", "day"],
    [null, "hour"],
    ["<script>", "hour"],
  ])("range %s is read as %s", (given, read) => expect(parseRange(given)).toBe(read));

  test("window columns skip readings older than the window", () => {
    expect(windowColumns([{ at: 1000, cpu: 5 }], 2000)).toEqual({ t: [], values: { cpu: [] } });
  });
});

describe("page view", () => {
  test.each([
    ["target mode: the target alone", { target_cpu: 60, up_threshold: null, down_threshold: null }, ["target_cpu 60 %"]],
    ["threshold modes: both thresholds", { target_cpu: null, up_threshold: 80, down_threshold: 20 }, ["scale_up_threshold 80 %", "scale_down_threshold 20 %"]],
  ])("guides, %s", (_name, p, labels) => {
    expect(cpuGuides({ mode: "target", window_seconds: 60, ...p }).map((g) => g.label)).toEqual(labels);
  });

  test("the capacity chart draws min_nodes and max_nodes dashed, and counts only measured points", () => {
    const chart = capacityChart(createHistory().minutes(0));
    expect(chart.series.filter((s) => s.dash).map((s) => s.label)).toEqual(["min_nodes", "max_nodes"]);
    const h = createHistory();
    h.record({ at: NOW, active: 1, pending: 0, leaving: 0, desired: 1, min: 1, max: 2, cpuMean: 5, cpuMax: 5 }, []);
    expect(pointCount(capacityChart(h.fine(0)))).toBe(4);
  });

  test("events filter by kind, and the kinds are listed once, sorted", () => {
    const events = [
      { at: "3", kind: "scale_up", message: "x" },
      { at: "2", kind: "registered", message: "y" },
      { at: "1", kind: "scale_up", message: "z" },
    ];
    expect(eventKinds(events)).toEqual(["registered", "scale_up"]);
    expect(filterEvents(events, "scale_up").map((e) => e.message)).toEqual(["x", "z"]);
    expect(filterEvents(events, "")).toHaveLength(3);
  });

  test("role and cooldown words", () => {
    const d = buildPageData(inputs());
    expect(roleText(d)).toBe("decider (only proxy)");
    expect(roleText({ ...d, role: "follower", cluster: { member: "p2", leader: "p1", etcd_up: true, leader_changes: 2, problem: null } })).toBe(
      "follower as p2; leader p1; etcd up; 2 leader change(s)",
    );
    expect(cooldownText(d.cooldown)).toBe("up 0 s, down 12 s");
    expect(cooldownText({ scale_up_seconds: 0, scale_down_seconds: 0 })).toBe("none");
  });
});
