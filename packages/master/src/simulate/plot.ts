/**
 * `simulate --plot`: an SVG of demand and capacity over time (overload shaded) above the node
 * count of each policy. A vega-lite spec compiled and rendered by vega in Node (no canvas:
 * the "none" renderer and toSVG). Every series is cut to at most MAX_POINTS buckets.
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { SimulationResult, TimelinePoint } from "./model.js";

/** Points per series at most: a week of minutes becomes 6-minute buckets. */
export const MAX_POINTS = 2000;
/** A minute whose mean fleet CPU is above this is shaded as overload. */
export const OVERLOAD_CPU = 90;

/** Options of the plot. */
export interface PlotOptions {
  title?: string;
  /** Width of the plotting area in pixels (default 900). */
  width?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const round = (x: number) => Math.round(x * 100) / 100;

/** A bucket's extreme of one field of the timeline. */
function bucketed(
  timeline: readonly TimelinePoint[],
  size: number,
  pick: (p: TimelinePoint) => number,
  keep: (a: number, b: number) => number,
): { minute: number; value: number }[] {
  const out: { minute: number; value: number }[] = [];
  for (let i = 0; i < timeline.length; i += size) {
    let value = pick(timeline[i]!);
    for (let j = i + 1; j < Math.min(i + size, timeline.length); j++) value = keep(value, pick(timeline[j]!));
    out.push({ minute: timeline[i]!.minute, value: round(value) });
  }
  return out;
}

/** A step line needs only the points where its value changes (and its last point): node counts change rarely. */
function changes<T extends { minute: number; value: number }>(points: T[]): T[] {
  return points.filter((p, i) => i === 0 || i === points.length - 1 || p.value !== points[i - 1]!.value);
}

/** Runs of overloaded minutes, merging runs less than `gapMinutes` apart so that there are at most about MAX_POINTS. */
function overloadPeriods(timeline: readonly TimelinePoint[], gapMinutes: number): { from: number; to: number }[] {
  const periods: { from: number; to: number }[] = [];
  for (const p of timeline) {
    if (!(p.fleetCpu > OVERLOAD_CPU)) continue;
    const last = periods[periods.length - 1];
    if (last && p.minute - last.to < gapMinutes * 60_000) last.to = p.minute + 60_000;
    else periods.push({ from: p.minute, to: p.minute + 60_000 });
  }
  return periods;
}

/** The vega-lite spec of the plot (exported for tests and for anyone who wants the spec, not the SVG). */
export function plotSpec(results: readonly SimulationResult[], opts: PlotOptions = {}): TopLevelSpec {
  const first = results[0]?.timeline ?? [];
  const size = Math.max(1, Math.ceil(first.length / MAX_POINTS));
  const startMs = first[0]?.minute ?? 0;
  // A CPU-percent series has no date (it starts at 0): hours from the start read better than 1970.
  const temporal = startMs !== 0;
  const t = (minute: number) => (temporal ? minute : round((minute - startMs) / 3_600_000));
  const policies = results.map((r) => r.policy);
  const load = bucketed(first, size, (p) => p.demand, Math.max).map((b) => ({ t: t(b.minute), v: b.value, series: "demand" }));
  const nodes: { t: number; nodes: number; series: string }[] = [];
  const overload: { t0: number; t1: number; series: string }[] = [];
  for (const r of results) {
    for (const b of changes(bucketed(r.timeline, size, (p) => p.capacity, Math.min))) load.push({ t: t(b.minute), v: b.value, series: r.policy });
    for (const b of changes(bucketed(r.timeline, size, (p) => p.nodes, Math.max))) nodes.push({ t: t(b.minute), nodes: b.value, series: r.policy });
    for (const p of overloadPeriods(r.timeline, size)) overload.push({ t0: t(p.from), t1: t(p.to), series: r.policy });
  }
  const days = first.length / 1440;
  const dayTicks = days >= 2 && days <= 20 ? { axis: { format: "%a %d %b", tickCount: { interval: "day" as const, step: 1 } } } : {};
  const x = temporal
    ? { field: "t", type: "temporal" as const, scale: { type: "utc" as const }, title: "time (UTC)", ...dayTicks }
    : { field: "t", type: "quantitative" as const, title: "hours from the start" };
  const color = {
    field: "series",
    type: "nominal" as const,
    title: null,
    scale: { domain: ["demand", ...policies], range: ["#222222", ...policies.map((_, i) => PALETTE[i % PALETTE.length]!)] },
  };
  const width = opts.width ?? 900;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: opts.title ?? "simulate",
      subtitle: [
        "Above: demand (black) and each policy's serving capacity, in requests per minute.",
        `Shaded: minutes with fleet CPU > ${OVERLOAD_CPU} %. Below: each policy's nodes, booting and draining included.`,
      ],
      anchor: "start",
    },
    datasets: { load, nodes, overload },
    config: { view: { stroke: null }, legend: { orient: "top", symbolType: "stroke", symbolStrokeWidth: 3, symbolOpacity: 1 } },
    vconcat: [
      {
        width,
        height: 260,
        layer: [
          {
            data: { name: "overload" },
            mark: { type: "rect", opacity: 0.18 },
            encoding: { x: { ...x, field: "t0" }, x2: { field: "t1" }, color },
          },
          {
            data: { name: "load" },
            mark: { type: "line", interpolate: "step-after", strokeWidth: 1.2 },
            encoding: { x, y: { field: "v", type: "quantitative", title: "requests per minute" }, color },
          },
        ],
      },
      {
        width,
        height: 150,
        data: { name: "nodes" },
        mark: { type: "line", interpolate: "step-after", strokeWidth: 1.2 },
        encoding: { x, y: { field: "nodes", type: "quantitative", title: "nodes" }, color },
      },
    ],
  } as TopLevelSpec;
}

/** Render the results as an SVG document (demand, capacity, overload, node count per policy). */
export async function renderPlotSvg(results: readonly SimulationResult[], opts: PlotOptions = {}): Promise<string> {
  const view = new vega.View(vega.parse(compile(plotSpec(results, opts)).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
