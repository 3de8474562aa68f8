/**
 * The status page in the browser: polls `/page/data` once a second and draws it with uPlot.
 * Everything the master sends is set as text (textContent, title), never parsed as markup.
 * The arithmetic lives in src/page-view.ts; this file only touches the DOM.
 */
import uPlot from "uplot";
import type { Marker } from "../src/history.js";
import type { PageData, PageNode, Range } from "../src/page-data.js";
import {
  capacityChart,
  cooldownText,
  cpuChart,
  eventKinds,
  filterEvents,
  haproxyRows,
  markerText,
  nodeChart,
  percent,
  pointCount,
  roleText,
  type ChartData,
} from "../src/page-view.js";

const POLL_MS = 1000;
/** The latest answer (read by the charts' x range and markers) and the range shown. */
let data: PageData | undefined;
let range: Range = "hour";

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** A new element with a class and text. */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = "", text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}

/** Draw each marker as a vertical line over the plot, with its reason as the hover title. */
function markersPlugin(markers: () => Marker[]): uPlot.Plugin {
  return {
    hooks: {
      draw: (u) => {
        for (const old of u.over.querySelectorAll(".marker")) old.remove();
        const [min, max] = [u.scales.x!.min ?? 0, u.scales.x!.max ?? 0];
        for (const m of markers()) {
          const x = m.at / 1000;
          if (x < min || x > max) continue;
          const line = el("div", `marker ${m.kind === "scale_up" ? "up" : "down"}`);
          line.title = markerText(m);
          line.style.left = `${u.valToPos(x, "x")}px`;
          u.over.appendChild(line);
        }
      },
    },
  };
}

/** A uPlot chart that keeps its series list and is redrawn with new data. */
function createChart(host: HTMLElement, opts: { width: number; height: number; legend: boolean; axes: boolean; span: () => number; markers?: () => Marker[] }) {
  let plot: uPlot | undefined;
  let labels = "";
  return (chart: ChartData) => {
    const aligned = [chart.x, ...chart.series.map((s) => s.values)] as uPlot.AlignedData;
    host.dataset.points = String(pointCount(chart));
    const key = chart.series.map((s) => s.label).join("|");
    if (plot && key === labels) {
      plot.setData(aligned);
      return;
    }
    plot?.destroy();
    labels = key;
    plot = new uPlot(
      {
        width: opts.width,
        height: opts.height,
        legend: { show: opts.legend },
        cursor: { show: opts.legend },
        axes: opts.axes ? [{}, {}] : [{ show: false }, { show: false }],
        // The x axis always spans the range up to now, however few points there are yet.
        scales: {
          x: { time: true, range: () => [(data?.now ?? Date.now()) / 1000 - opts.span(), (data?.now ?? Date.now()) / 1000] },
          y: { range: (_u, lo, hi) => [Math.min(0, lo ?? 0), Math.max(1, hi ?? 1)] },
        },
        series: [
          {},
          ...chart.series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 1.5,
            points: { size: 4 },
            ...(s.dash ? { dash: [6, 4] } : {}),
            spanGaps: false,
          })),
        ],
        plugins: opts.markers ? [markersPlugin(opts.markers)] : [],
      },
      aligned,
      host,
    );
  };
}

let eventKind = "";
/** A node beyond the first CHARTED_NODES whose charts the operator asked for (by clicking its row). */
let focus: string | undefined;
const dataUrl = () => `/page/data?range=${range}${focus ? `&node=${encodeURIComponent(focus)}` : ""}`;
const windowSpan = () => data?.policy.window_seconds ?? 60;
const rangeSpan = () => (range === "window" ? windowSpan() : range === "hour" ? 3600 : 86_400);
const big = { width: 900, legend: true, axes: true, span: rangeSpan, markers: () => data?.markers ?? [] };
const capacity = createChart(byId("capacity-chart"), { ...big, height: 240 });
const cpu = createChart(byId("cpu-chart"), { ...big, height: 200 });
const rows = new Map<string, { row: HTMLTableRowElement; cells: HTMLTableCellElement[]; window: (d: ChartData) => void; hour: (d: ChartData) => void }>();

function renderSummary(d: PageData) {
  byId("version").textContent = d.version;
  byId("role").textContent = roleText(d);
  byId("paused").textContent = d.paused ? "yes: automatic scaling is paused" : "no";
  byId("cooldown").textContent = cooldownText(d.cooldown);
  byId("capacity-now").textContent =
    `${d.capacity.active} active, ${d.capacity.pending} pending, ${d.capacity.leaving} leaving, ${d.capacity.desired} desired (min ${d.capacity.min}, max ${d.capacity.max})`;
  byId("last-decision").textContent = d.last_decision ? `${d.last_decision.at} ${d.last_decision.action}: ${d.last_decision.reason}` : "none yet";
  byId("updated").textContent = `updated ${new Date(d.now).toLocaleTimeString()}`;
  const dl = byId("haproxy");
  dl.replaceChildren(...haproxyRows(d.haproxy).flatMap(([k, v]) => [el("dt", "", k), el("dd", "", v)]));
}

function renderDecisions(d: PageData) {
  const list = byId("decisions");
  const items = [...d.markers].reverse().map((m) => {
    const li = el("li", m.kind === "scale_up" ? "up" : "down");
    li.append(el("time", "", new Date(m.at).toLocaleTimeString()), el("span", "kind", m.kind), el("span", "message", m.message));
    return li;
  });
  list.replaceChildren(...(items.length > 0 ? items : [el("li", "none", "no scale-up or scale-down in this range")]));
}

function renderEvents(d: PageData) {
  const select = byId<HTMLSelectElement>("event-kind");
  const kinds = ["", ...eventKinds(d.events)];
  if (select.options.length !== kinds.length || kinds.some((k, i) => select.options[i]!.value !== k)) {
    select.replaceChildren(
      ...kinds.map((k) => {
        const o = el("option", "", k === "" ? "all kinds" : k);
        o.value = k;
        return o;
      }),
    );
    select.value = kinds.includes(eventKind) ? eventKind : "";
  }
  byId("events").replaceChildren(
    ...filterEvents(d.events, eventKind).map((e) => {
      const li = el("li");
      const time = el("time", "", new Date(e.at).toLocaleTimeString());
      time.title = e.at;
      li.append(time, el("span", "kind", e.kind), el("span", "message", e.message));
      return li;
    }),
  );
}

function nodeRow(n: PageNode) {
  const row = el("tr");
  row.dataset.node = n.name;
  row.addEventListener("click", () => (focus = n.name));
  const cells = Array.from({ length: 7 }, () => el("td"));
  const [windowCell, hourCell] = [el("td", "chart"), el("td", "chart")];
  row.append(...cells, windowCell, hourCell);
  const small = { width: 180, height: 40, legend: false, axes: false };
  return { row, cells, window: createChart(windowCell, { ...small, span: windowSpan }), hour: createChart(hourCell, { ...small, span: () => 3600 }) };
}

function renderNodes(d: PageData) {
  const body = byId("nodes");
  const seen = new Set<string>();
  for (const n of d.nodes) {
    seen.add(n.name);
    let r = rows.get(n.name);
    if (!r) {
      r = nodeRow(n);
      rows.set(n.name, r);
    }
    body.appendChild(r.row); // in the answer's order (by name)
    const texts = [n.name, `${n.address}:${n.port}`, n.state, n.source, n.credential ?? "—", percent(n.cpu_now), percent(n.cpu_window)];
    texts.forEach((t, i) => (r.cells[i]!.textContent = t));
    r.row.className = n.state;
    if (n.chart) {
      r.window(nodeChart(n.chart.window));
      r.hour(nodeChart(n.chart.hour));
    }
  }
  for (const [name, r] of rows) {
    if (seen.has(name)) continue;
    r.row.remove();
    rows.delete(name);
  }
  byId("node-count").textContent = String(d.nodes.length);
}

function render(d: PageData) {
  renderSummary(d);
  capacity(capacityChart(d.series));
  cpu(cpuChart(d.series, d.policy));
  renderDecisions(d);
  renderNodes(d);
  renderEvents(d);
}

async function poll() {
  try {
    const res = await fetch(dataUrl(), { cache: "no-store" });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    data = (await res.json()) as PageData;
    render(data);
    byId("error").textContent = "";
  } catch (err) {
    byId("error").textContent = `cannot reach the master: ${(err as Error).message}`;
  } finally {
    setTimeout(() => void poll(), POLL_MS);
  }
}

for (const button of document.querySelectorAll<HTMLButtonElement>("#ranges button")) {
  button.addEventListener("click", () => {
    range = button.value as Range;
    for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("on", b === button);
    if (data) void fetch(dataUrl()).then(async (r) => render((data = (await r.json()) as PageData)));
  });
}
byId<HTMLSelectElement>("event-kind").addEventListener("change", (e) => {
  eventKind = (e.target as HTMLSelectElement).value;
  if (data) renderEvents(data);
});
void poll();
