/**
 * `autoscaler simulate` through the real CLI: the table, --json, --plot, the refusals, and that it
 * writes nothing but the plot (no state_dir, hosts.d, haproxy.cfg, no command run).
 */
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { DEFAULT_CONFIG_PATH } from "@autoscaler/shared";
import { runCli, Scope, snapshotDir } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

let dir: string;
let ini: string;
let before: Record<string, string>;

/** 10 minutes, from the model test: on 2 static nodes of 60 req/min, 3 minutes over 90 % and 2 over 100 %. */
const HAND_TRACE =
  ["minute_utc,requests", ...[60, 60, 120, 150, 30, 0, 90, 108, 180, 60].map((r, m) => `1995-07-01T04:${String(m).padStart(2, "0")}:00Z,${r}`)].join("\n") +
  "\n";

beforeEach(async () => {
  dir = await scope.tempDir("autoscaler-simulate-");
  ini = path.join(dir, "autoscaler.ini");
  // Every path and command points into the folder: anything simulate ran or wrote would show there.
  const settings = [
    "[machine]",
    `scale_up_command = touch ${path.join(dir, "launched")}`,
    `scale_down_command = touch ${path.join(dir, "terminated")}`,
    "[haproxy]",
    "config = haproxy.cfg",
    "[master]",
    "state_dir = state",
    "token = a-long-enough-test-token",
    "[scaling]",
    "max_nodes = 20",
  ];
  await fs.writeFile(ini, settings.join("\n") + "\n", { mode: 0o600 });
  await fs.writeFile(path.join(dir, "trace.csv"), HAND_TRACE);
  before = await snapshotDir(dir);
});

const simulate = (...args: string[]) => runCli(["simulate", "--config", ini, ...args], { cwd: dir });

test("simulate prints a table with one row per policy and writes nothing", async () => {
  const r = await simulate("--trace", "trace.csv", "--compare", "hpa,static");

  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^trace\.csv: 10 minutes from 1995-07-01T04:00Z/);
  expect(r.stdout).toMatch(/^POLICY +NODE-HOURS +MIN CPU>90% +MIN CPU>100% +EVENTS +PEAK NODES +DECISIONS\/S$/m);
  expect(
    r.stdout
      .trimEnd()
      .split("\n")
      .slice(-3)
      .map((l) => l.split(/ +/)[0]),
  ).toEqual(["ours", "hpa", "static"]);
  expect(await snapshotDir(dir)).toEqual(before);
});

test("simulate --json parses and gives the hand-computed figures of a static fleet", async () => {
  const r = await simulate("--trace", "trace.csv", "--compare", "static", "--static", "2", "--json");

  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { trace: { minutes: number }; results: Record<string, unknown>[] };
  expect(out.trace.minutes).toBe(10);
  expect(out.results.map((x) => x.policy)).toEqual(["ours", "static"]);
  expect(out.results[1]).toMatchObject({ nodeHours: 0.333, overloadMinutes90: 3, overloadMinutes100: 2, events: 0, peakNodes: 2, ticks: 600 });
  expect(out.results[0]).not.toHaveProperty("timeline");
  expect(await snapshotDir(dir)).toEqual(before);
});

test("simulate --plot writes an SVG naming the policies, and nothing else", async () => {
  const r = await simulate("--trace", "trace.csv", "--compare", "hpa", "--plot", "out.svg");

  expect(r.code, r.stderr).toBe(0);
  const svg = await fs.readFile(path.join(dir, "out.svg"), "utf8");
  expect(svg.startsWith("<svg")).toBe(true);
  expect(svg).toMatch(/ours/);
  expect(svg).toMatch(/hpa/);
  const after = await snapshotDir(dir);
  delete after["out.svg"];
  expect(after).toEqual(before);
});

test("a CPU-percent series is read as percent of one node", async () => {
  await fs.writeFile(path.join(dir, "cpu.txt"), "# two nodes' worth, then idle\n200\n200\n\n0\n");
  const r = await simulate("--trace", "cpu.txt", "--compare", "static", "--json");

  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { trace: { start: string | null; minutes: number }; results: { policy: string; peakNodes: number }[] };
  expect(out.trace).toMatchObject({ start: null, minutes: 3 });
  expect(out.results[1]).toMatchObject({ policy: "static", peakNodes: 3 }); // 120 req/min at ≤ 90 % of 60 each
});

test.each<[string, string, RegExp]>([
  ["a bad row", HAND_TRACE.replace("04:05:00Z,0", "04:05:00Z,zero"), /trace\.csv line 7: "zero" is not a number; expected a request count of 0 or more/],
  ["a gap", HAND_TRACE.replace(/^.*04:05:00Z.*\n/m, ""), /trace\.csv line 7: 1995-07-01T04:06:00Z leaves a gap after 1995-07-01T04:04Z \(1 minute missing\)/],
  ["a negative count", HAND_TRACE.replace("04:02:00Z,120", "04:02:00Z,-120"), /trace\.csv line 4: the count -120 is negative/],
])("a trace with %s exits 2 naming the line, and writes nothing", async (_name, text, message) => {
  await fs.writeFile(path.join(dir, "trace.csv"), text);
  before = await snapshotDir(dir);

  const r = await simulate("--trace", "trace.csv", "--plot", "out.svg");

  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(await snapshotDir(dir)).toEqual(before);
});

test.each<[string, string[], number, RegExp]>([
  [
    "a negative min_nodes exits 78 naming scaling.min_nodes",
    ["--set", "scaling.min_nodes=-1"],
    78,
    /scaling\.min_nodes: "-1" is not valid; expected a whole number of at least 0/,
  ],
  ["min_nodes above max_nodes exits 78", ["--set", "scaling.min_nodes=30"], 78, /scaling\.min_nodes: 30 is greater than scaling\.max_nodes/],
  ["an unknown key exits 2", ["--set", "scaling.no_such_key=1"], 2, /--set scaling\.no_such_key: no such setting/],
  ["a key outside [scaling] exits 2", ["--set", "haproxy.config=other.cfg"], 2, /--set haproxy\.config: simulate reads only \[scaling\] and agent\.interval/],
  [
    "a target_cpu over 100 exits 78 naming scaling.target_cpu",
    ["--set", "scaling.target_cpu=150"],
    78,
    /scaling\.target_cpu: "150" is not valid; expected a CPU percentage/,
  ],
  ["a bad number exits 2", ["--scale", "abc"], 2, /--scale "abc" is not valid; expected a number greater than 0/],
  ["a negative skew exits 2", ["--skew", "-0.3"], 2, /--skew "-0\.3" is not valid; expected a number of at least 0/],
  [
    "an unknown policy exits 2",
    ["--compare", "hpa,magic"],
    2,
    /--compare "magic" is not a policy; expected a comma list of ini, instance, predictive, hpa, static/,
  ],
  ["a slice past the end exits 2", ["--start", "1"], 2, /--start 1 is past the end: the trace has 10 minutes/],
  ["a missing trace file exits 2", ["--trace", "nope.csv"], 2, /cannot read the trace nope\.csv/],
])("%s, and writes nothing", async (_name, args, code, message) => {
  const r = await simulate(...(args.includes("--trace") ? args : ["--trace", "trace.csv", ...args]), "--plot", "out.svg");

  expect(r.code, r.stderr).toBe(code);
  expect(r.stderr).toMatch(message);
  expect(await snapshotDir(dir)).toEqual(before);
});

test("--config naming a missing file exits 78, as for every command", async () => {
  const r = await runCli(["simulate", "--trace", "trace.csv", "--config", path.join(dir, "missing.ini")], { cwd: dir });

  expect(r.code).toBe(78);
  expect(r.stderr).toMatch(/missing\.ini not found/);
});

test("without --config and no default ini, simulate uses the default settings", async () => {
  // Tests never write the machine's /etc: on a machine of this kind there is no default ini.
  expect(existsSync(DEFAULT_CONFIG_PATH), `${DEFAULT_CONFIG_PATH} exists on this machine`).toBe(false);
  // An undefined value leaves the variable out of the child's environment.
  const r = await runCli(["simulate", "--trace", "trace.csv"], { cwd: dir, env: { AUTOSCALER_CONFIG: undefined } });

  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/not found; simulating with the default settings/);
  expect(r.stdout).toMatch(/^ours +/m);
});

test("our default policy on a hand-computed trace: steady at 50 % on one node nothing moves; a doubling to 100 % launches one node, once, within a tick or so", async () => {
  // 30 minutes of one node's worth at 50 % (30 req/min at 60 per node): desired = ceil(50 / 60) = 1, so
  // 0.5 node-hours, no event, no overload. Then 60 req/min (one node at 100 %): desired = ceil(100 / 60) = 2.
  const rows = Array.from(
    { length: 40 },
    (_, m) => `1995-07-01T${String(4 + Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}:00Z,${m < 30 ? 30 : 60}`,
  );
  await fs.writeFile(path.join(dir, "steady.csv"), ["minute_utc,requests", ...rows].join("\n") + "\n");
  const steady = JSON.parse((await simulate("--trace", "steady.csv", "--days", "1", "--json", "--set", "scaling.min_nodes=1")).stdout || "null");
  expect(steady).toBeNull(); // --days 1 is past the end of 40 minutes: refused (exit 2, nothing printed)

  await fs.writeFile(path.join(dir, "steady.csv"), ["minute_utc,requests", ...rows.slice(0, 30)].join("\n") + "\n");
  const flat = await simulate("--trace", "steady.csv", "--json");
  expect(flat.code, flat.stderr).toBe(0);
  expect((JSON.parse(flat.stdout) as { results: unknown[] }).results[0]).toMatchObject({
    policy: "ours",
    nodeHours: 0.5,
    overloadMinutes90: 0,
    events: 0,
    peakNodes: 1,
  });

  await fs.writeFile(path.join(dir, "steady.csv"), ["minute_utc,requests", ...rows].join("\n") + "\n");
  const step = await simulate("--trace", "steady.csv", "--json", "--boot", "60");
  expect(step.code, step.stderr).toBe(0);
  const ours = (JSON.parse(step.stdout) as { results: { events: number; peakNodes: number; overloadMinutes90: number; nodeHours: number }[] }).results[0]!;
  // One launch of one node, at minute 30 plus the first sample that shows it (≤ 5 s); it serves 60 s later, and
  // the two nodes then run at 50 %: in tolerance of nothing, so no further event. Overload: minute 30 until the
  // node serves, 60–65 s; node-hours: 40 minutes of one node plus 10 minutes less ≤ 5 s of the second.
  expect(ours.events).toBe(1);
  expect(ours.peakNodes).toBe(2);
  expect(ours.overloadMinutes90).toBeGreaterThanOrEqual(1);
  expect(ours.overloadMinutes90).toBeLessThanOrEqual(65 / 60 + 1e-9);
  expect(ours.nodeHours).toBeGreaterThanOrEqual(40 / 60 + (10 * 60 - 5) / 3600 - 1e-9);
  expect(ours.nodeHours).toBeLessThanOrEqual(40 / 60 + 10 / 60 + 1e-9);
});
