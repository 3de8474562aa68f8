import { describe, expect, test } from "vitest";
import { createHpaController, createStaticController } from "./baselines.js";
import { simulate, type SimulationResult } from "./model.js";
import { MAX_POINTS, plotSpec, renderPlotSvg } from "./plot.js";
import { describeRun, formatResultsTable, resultsJson } from "./report.js";

const model = { nodeCapacity: 60, bootMs: 120_000, sampleIntervalMs: 5_000, tickMs: 1_000, drainMs: 30_000, initialNodes: 1 };
const START = Date.parse("1995-07-08T04:00:00Z");

function run(minutes: number, startMs = START): SimulationResult[] {
  const requests = Float64Array.from({ length: minutes }, (_, m) => 60 + 200 * Math.max(0, Math.sin(m / 90)));
  return [
    simulate({ startMs, requests }, createHpaController({ minNodes: 1, maxNodes: 20 }), model),
    simulate({ startMs, requests }, createStaticController(2), { ...model, initialNodes: 2 }),
  ];
}

describe("renderPlotSvg", () => {
  test("renders an SVG in Node, without a canvas, naming each policy", async () => {
    const svg = await renderPlotSvg(run(180), { title: "a test trace" });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("hpa");
    expect(svg).toContain("static");
    expect(svg).toContain("a test trace");
  });

  test("a CPU series (no date) is plotted in hours from the start", async () => {
    const svg = await renderPlotSvg(run(120, 0));
    expect(svg).toContain("hours from the start");
  });

  test("a week is cut to at most MAX_POINTS buckets per series, overload periods included", () => {
    const spec = plotSpec(run(7 * 1440)) as { datasets: Record<string, { series: string }[]> };
    const perSeries = (rows: { series: string }[]) =>
      Math.max(...[...new Set(rows.map((r) => r.series))].map((s) => rows.filter((r) => r.series === s).length));
    expect(perSeries(spec.datasets.load!)).toBeLessThanOrEqual(MAX_POINTS);
    expect(perSeries(spec.datasets.nodes!)).toBeLessThanOrEqual(MAX_POINTS);
    expect(perSeries(spec.datasets.overload!)).toBeLessThanOrEqual(MAX_POINTS);
  });
});

describe("the report", () => {
  const results = run(60);
  const info = { file: "t.csv", startMs: START, minutes: 60, startDay: 0, days: undefined, scale: 1, model };

  test("the table has a header and one row per policy, the figures right-aligned", () => {
    const lines = formatResultsTable(results).trimEnd().split("\n");
    expect(lines[0]).toMatch(/^POLICY +NODE-HOURS +MIN CPU>90% +MIN CPU>100% +EVENTS +PEAK NODES +DECISIONS\/S$/);
    expect(lines.slice(1).map((l) => l.split(/ +/)[0])).toEqual(["hpa", "static"]);
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
    expect(lines[2]).toMatch(/^static +2\.0 +/);
  });

  test("the JSON leaves the timeline out unless asked", () => {
    const small = resultsJson(info, results);
    expect(small.results.map((r) => r.policy)).toEqual(["hpa", "static"]);
    expect(small.results[0]).not.toHaveProperty("timeline");
    expect(small.trace).toMatchObject({ file: "t.csv", start: "1995-07-08T04:00:00.000Z", minutes: 60, days: null });
    expect(resultsJson(info, results, { timeline: true }).results[1]!.timeline).toHaveLength(60);
  });

  test("the run is described in one line", () => {
    expect(describeRun(info)).toBe(
      "t.csv: 60 minutes from 1995-07-08T04:00Z (day 0 to the end), ×1; a node serves 60 req/min at 100 %, boots in 120 s, drains in 30 s, samples every 5 s\n",
    );
  });
});
