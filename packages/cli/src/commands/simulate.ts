/**
 * `autoscaler simulate`: replay a trace through our engine (the policy of the ini plus --set)
 * and, with --compare, through other policies on the same load model. It reads the ini and the
 * trace and writes only the --plot file: no state_dir, hosts.d, HAProxy or command.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import {
  AutoscalerError,
  EXIT_CONFIG,
  EXIT_USAGE,
  SCHEMA,
  errnoCode,
  formatProblem,
  loadConfig,
  parseConfig,
  resolveConfigPath,
  setIniValue,
  writeFileAtomic,
  type Config,
} from "@autoscaler/shared";
import type { Controller, DemandHistory, ModelOptions, SimulationResult, Trace } from "@autoscaler/master/simulate";
import type { GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { parseSetting } from "./init.js";

/** Arguments of `simulate`; numbers arrive as text so that a bad one gets a clear message. */
export interface SimulateArgs extends GlobalArgs {
  trace?: string;
  set?: string[];
  scale?: string;
  start?: string;
  days?: string;
  nodeCapacity?: string;
  boot?: string;
  skew?: string;
  jitter?: string;
  seed?: string;
  compare?: string;
  static?: string;
  plot?: string;
  timeline?: boolean;
}

/** Policies `--compare` knows; `ini` is ours, which always runs. */
export const COMPARE_POLICIES = ["ini", "instance", "predictive", "hpa", "static"] as const;
type ComparePolicy = (typeof COMPARE_POLICIES)[number];

/** The seed's threshold rule: these [scaling] keys at their schema defaults, with mode = instance. */
const SEED_RULE_KEYS = ["scale_up_threshold", "scale_down_threshold", "window", "cooldown", "scale_up_cooldown", "scale_down_cooldown", "step"] as const;
/** What `--set` may change: simulate reads [scaling] and the agents' interval, nothing else. */
const SETTABLE = (section: string, key: string) => section === "scaling" || (section === "agent" && key === "interval");

const usage = (message: string) => new AutoscalerError("AUTOSCALER_USAGE", message, { exitCode: EXIT_USAGE });

/** A number option, or the usage error that says what was expected. */
function numberOption(
  name: string,
  raw: string | undefined,
  fallback: number,
  check: { min: number; above?: boolean; integer?: boolean; max?: number },
): number {
  if (raw === undefined) return fallback;
  const value = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(raw) ? Number(raw) : NaN;
  const expected = `${check.integer ? "a whole number" : "a number"} ${check.above ? "greater than" : "of at least"} ${check.min}${check.max !== undefined ? ` and at most ${check.max}` : ""}`;
  const ok =
    Number.isFinite(value) &&
    (check.above ? value > check.min : value >= check.min) &&
    (check.max === undefined || value <= check.max) &&
    (!check.integer || Number.isInteger(value));
  if (!ok) throw usage(`--${name} ${JSON.stringify(raw)} is not valid; expected ${expected}`);
  return value;
}

/** The --compare list, checked: known names, each once, `ini` folded into ours. */
function comparePolicies(raw: string | undefined): ComparePolicy[] {
  if (raw === undefined) return [];
  const names = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const n of names) {
    if (!(COMPARE_POLICIES as readonly string[]).includes(n))
      throw usage(`--compare ${JSON.stringify(n)} is not a policy; expected a comma list of ${COMPARE_POLICIES.join(", ")}`);
  }
  return [...new Set(names as ComparePolicy[])].filter((n) => n !== "ini");
}

/** Parse ini text into a config, or exit 78 naming each bad `section.key`. */
function configFrom(text: string, file: string, io: Io, what: string): Config {
  const parsed = parseConfig(text, file, { home: io.env.HOME });
  if (!parsed.config) {
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `${what} make a bad config:`, { exitCode: EXIT_CONFIG, details: parsed.errors.map(formatProblem) });
  }
  return parsed.config;
}

/**
 * The ini's text with the --set overrides applied. With --config or $AUTOSCALER_CONFIG the
 * file must load as for every command (exit 78); with neither, a missing default file means
 * the built-in defaults (a note on stderr), since simulate needs no installation.
 */
async function iniText(io: Io, args: SimulateArgs): Promise<{ text: string; file: string }> {
  const file = resolveConfigPath(args.config, io.env, io.cwd);
  const explicit = args.config !== undefined || io.env.AUTOSCALER_CONFIG !== undefined;
  let text = "";
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if (explicit || errnoCode(err) !== "ENOENT") await loadConfig(file, { home: io.env.HOME }); // throws the loader's own error
    io.stderr.write(`note: ${file} not found; simulating with the default settings\n`);
  }
  if (text !== "") {
    const { warnings } = await loadConfig(file, { home: io.env.HOME }); // the file as it is must load, as for every command
    for (const w of warnings) if (w.subject.startsWith("scaling.") || w.subject === "agent.interval") io.stderr.write(`warning: ${formatProblem(w)}\n`);
  }
  for (const s of args.set ?? []) {
    const { section, key, value } = parseSetting(s);
    if (!SETTABLE(section, key)) throw usage(`--set ${section}.${key}: simulate reads only [scaling] and agent.interval; expected scaling.key=value`);
    text = setIniValue(text, section, key, value);
  }
  return { text, file };
}

/** The seed's threshold rule on the same limits: [scaling] rule keys back to their defaults, mode = instance. */
function seedRuleText(text: string): string {
  let out = setIniValue(text, "scaling", "mode", "instance");
  const defaults = SCHEMA.scaling as Record<string, { default: string }>;
  for (const key of SEED_RULE_KEYS) out = setIniValue(out, "scaling", key, defaults[key]!.default);
  return out;
}

/** A controller under another name (the table's row), whatever name its factory gave it. */
function named(name: string, c: Controller): Controller {
  return { name, ...(c.periodMs !== undefined ? { periodMs: c.periodMs } : {}), tick: (view) => c.tick(view) };
}

/** One run to make: a controller and the fleet it starts with. */
interface PlannedRun {
  controller: Controller;
  initialNodes: number;
}

async function planRuns(
  policies: ComparePolicy[],
  ini: { text: string; file: string },
  config: Config,
  model: ModelOptions,
  trace: Trace,
  io: Io,
  staticFleet: number | undefined,
  history: DemandHistory | undefined,
): Promise<PlannedRun[]> {
  const sim = await import("@autoscaler/master/simulate");
  const min = config.scaling.min_nodes;
  const ours = (c: Config) => sim.createEngineController(c, model, c.scaling.predictive === "on" && history ? { history } : {});
  const runs: PlannedRun[] = [{ controller: named("ours", ours(config)), initialNodes: min }];
  for (const p of policies) {
    if (p === "instance") {
      const seed = configFrom(seedRuleText(ini.text), ini.file, io, "the seed's instance rule with these settings would");
      runs.push({ controller: named("instance", ours(seed)), initialNodes: min });
    } else if (p === "predictive") {
      const predictive = configFrom(setIniValue(ini.text, "scaling", "predictive", "on"), ini.file, io, "scaling.predictive = on with these settings would");
      runs.push({ controller: named("predictive", ours(predictive)), initialNodes: min });
    } else if (p === "hpa") {
      runs.push({ controller: sim.createHpaController({ minNodes: min, maxNodes: config.scaling.max_nodes }), initialNodes: min });
    } else if (p === "static") {
      const fleet = staticFleet ?? sim.staticFleetFor(trace.requests, model.nodeCapacity);
      runs.push({ controller: sim.createStaticController(fleet), initialNodes: fleet });
    }
  }
  return runs;
}

/** Run `simulate`. */
export async function runSimulate(io: Io, args: SimulateArgs): Promise<number> {
  if (args.trace === undefined || args.trace === "") throw usage("--trace FILE is required: a minute_utc,requests CSV or a per-minute CPU-percent series");
  const policies = comparePolicies(args.compare);
  if (args.static !== undefined && !policies.includes("static")) throw usage("--static N sizes the static fleet; add static to --compare");
  const staticFleet = args.static === undefined ? undefined : numberOption("static", args.static, 1, { min: 1, integer: true, max: 100_000 });
  const scale = numberOption("scale", args.scale, 1, { min: 0, above: true });
  const startDay = numberOption("start", args.start, 0, { min: 0, integer: true });
  const days = args.days === undefined ? undefined : numberOption("days", args.days, 1, { min: 1, integer: true });
  const nodeCapacity = numberOption("node-capacity", args.nodeCapacity, 60, { min: 0, above: true });
  const skew = numberOption("skew", args.skew, 0, { min: 0, max: 10 });
  const jitter = numberOption("jitter", args.jitter, 0, { min: 0, max: 10 });
  const seed = numberOption("seed", args.seed, 1, { min: 0, integer: true, max: 2 ** 32 - 1 });

  const ini = await iniText(io, args);
  const config = configFrom(ini.text, ini.file, io, "the settings given would");
  const bootSeconds = numberOption("boot", args.boot, config.scaling.boot_time, { min: 0 });

  const sim = await import("@autoscaler/master/simulate");
  const traceFile = path.resolve(io.cwd, args.trace);
  let text: string;
  try {
    text = await fs.readFile(traceFile, "utf8");
  } catch (err) {
    throw usage(`cannot read the trace ${args.trace}: ${(err as Error).message}`);
  }
  const whole = sim.parseTrace(text, { file: args.trace, nodeCapacity });
  const trace = sim.sliceTrace(whole, { startDay, days, scale });
  // What a master running before the replay would have recorded for the predictive floor (up to 8 days).
  const historyDays = Math.min(8, startDay);
  const history =
    historyDays > 0 ? sim.demandHistoryFrom(sim.sliceTrace(whole, { startDay: startDay - historyDays, days: historyDays, scale }), nodeCapacity) : undefined;
  const model: ModelOptions = {
    nodeCapacity,
    bootMs: bootSeconds * 1000,
    sampleIntervalMs: config.agent.interval * 1000,
    tickMs: 1000,
    drainMs: config.scaling.drain_seconds * 1000,
    initialNodes: config.scaling.min_nodes,
    skew,
    jitter,
    seed,
  };
  const results: SimulationResult[] = [];
  for (const run of await planRuns(policies, ini, config, model, trace, io, staticFleet, history)) {
    results.push(sim.simulate(trace, run.controller, { ...model, initialNodes: run.initialNodes }, { wallNow: () => performance.now() }));
  }

  const info = { file: args.trace, startMs: trace.startMs, minutes: trace.requests.length, startDay, days, scale, model };
  if (args.plot !== undefined) {
    const plotFile = path.resolve(io.cwd, args.plot);
    const title = `${path.basename(args.trace)}${scale !== 1 ? ` ×${scale}` : ""}, day ${startDay}${days !== undefined ? `, ${days} day(s)` : ""}`;
    await writeFileAtomic(plotFile, await sim.renderPlotSvg(results, { title }), { mode: 0o644 });
    (args.json ? io.stderr : io.stdout).write(`wrote the plot ${args.plot}\n`);
  }
  if (args.json) io.stdout.write(JSON.stringify(sim.resultsJson(info, results, { timeline: args.timeline ?? false }), null, 2) + "\n");
  else io.stdout.write(sim.describeRun(info) + "\n" + sim.formatResultsTable(results));
  return 0;
}
