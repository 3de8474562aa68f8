/**
 * The section families `[policy:NAME]` and `[schedule:NAME]`: named policies (a change of N
 * nodes, a percent, or a desired count, with their own cooldown) and cron schedules that run a
 * policy or set new limits. Pure: reads the ini document, returns typed entries and problems
 * naming the section and the key.
 */
import { checkName } from "../validate.js";
import { cronProblem } from "./cron.js";
import type { IniDocument } from "./ini-reader.js";
import { FAMILY_SCHEMA, type KeySpec, type ParseContext } from "./schema.js";

/** What a named policy does. */
export type PolicyAction = { kind: "change"; nodes: number } | { kind: "percent"; percent: number } | { kind: "desired"; nodes: number };

/** A named policy, `[policy:NAME]`. */
export interface PolicyConfig {
  name: string;
  action: PolicyAction;
  /** The policy's own cooldown, in seconds (0: none; the group's still holds). */
  cooldown: number;
}

/** What a schedule does: execute a policy, or set limits and/or a desired count. */
export type ScheduleAction = { kind: "policy"; policy: string } | { kind: "limits"; minNodes?: number; maxNodes?: number; desired?: number };

/** A schedule, `[schedule:NAME]`. */
export interface ScheduleConfig {
  name: string;
  /** 5 fields, normalised to single spaces. */
  cron: string;
  /** IANA zone; empty: UTC. */
  timezone: string;
  action: ScheduleAction;
  /** A run missed while the master was down runs late only within this many seconds. */
  grace: number;
}

/** One problem, as load.ts reports it. */
interface Problem {
  subject: string;
  message: string;
}

/** The family and name of a section header such as `policy:morning`, or undefined for any other section. */
export function familyOf(section: string): { family: keyof typeof FAMILY_SCHEMA; name: string } | undefined {
  const m = /^(policy|schedule)\s*:\s*(.*)$/.exec(section);
  if (!m) return undefined;
  return { family: m[1] as keyof typeof FAMILY_SCHEMA, name: (m[2] ?? "").trim() };
}

/** Read every `[policy:NAME]` and `[schedule:NAME]` section; unknown keys are warnings as elsewhere. */
export function readFamilies(
  doc: IniDocument,
  ctx: ParseContext,
  errors: Problem[],
  warnings: Problem[],
): { policies: PolicyConfig[]; schedules: ScheduleConfig[] } {
  const policies: PolicyConfig[] = [];
  const schedules: ScheduleConfig[] = [];
  const pending: { section: string; schedule: ScheduleConfig }[] = [];
  for (const [section, keys] of doc) {
    const fam = familyOf(section);
    if (!fam) continue;
    if (checkName(fam.name) !== undefined) {
      errors.push({
        subject: `[${section}]`,
        message: `the name ${JSON.stringify(fam.name)} is not valid; expected [${fam.family}:NAME] with 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'`,
      });
      continue;
    }
    const specs = FAMILY_SCHEMA[fam.family] as Record<string, KeySpec<unknown>>;
    for (const [key, entry] of keys)
      if (!(key in specs))
        warnings.push({
          subject: `${section}.${key}`,
          message: `unknown key on line ${entry.line}, ignored; expected one of ${Object.keys(specs).join(", ")}`,
        });
    const values: Record<string, unknown> = {};
    let bad = false;
    for (const [key, spec] of Object.entries(specs)) {
      const raw = keys.get(key)?.value ?? spec.default;
      const result = spec.parse(raw, ctx);
      if (result.ok) values[key] = result.value;
      else {
        errors.push({ subject: `${section}.${key}`, message: `${JSON.stringify(raw)} is not valid; expected ${result.expected}` });
        bad = true;
      }
    }
    if (bad) continue;
    if (fam.family === "policy") {
      const policy = readPolicy(section, fam.name, values, errors);
      if (policy) policies.push(policy);
    } else {
      const schedule = readSchedule(section, fam.name, values, errors);
      if (schedule) pending.push({ section, schedule });
    }
  }
  for (const { section, schedule } of pending) {
    if (schedule.action.kind === "policy" && !policies.some((p) => p.name === (schedule.action as { policy: string }).policy)) {
      const known = policies.map((p) => p.name);
      errors.push({
        subject: `${section}.policy`,
        message: `${JSON.stringify(schedule.action.policy)} is not a policy of this ini; expected the NAME of a [policy:NAME] section${known.length ? ` (${known.join(", ")})` : " (there is none)"}`,
      });
      continue;
    }
    schedules.push(schedule);
  }
  return { policies, schedules };
}

function readPolicy(section: string, name: string, v: Record<string, unknown>, errors: Problem[]): PolicyConfig | undefined {
  const given = (["change", "change_percent", "desired"] as const).filter((k) => v[k] !== undefined);
  if (given.length !== 1) {
    errors.push({
      subject: `[${section}]`,
      message: `${given.length === 0 ? "has none" : `has ${given.join(" and ")}`}; expected exactly one of change (+N or -N), change_percent (+P or -P) or desired (N)`,
    });
    return undefined;
  }
  const action: PolicyAction =
    given[0] === "change"
      ? { kind: "change", nodes: v.change as number }
      : given[0] === "change_percent"
        ? { kind: "percent", percent: v.change_percent as number }
        : { kind: "desired", nodes: v.desired as number };
  return { name, action, cooldown: v.cooldown as number };
}

function readSchedule(section: string, name: string, v: Record<string, unknown>, errors: Problem[]): ScheduleConfig | undefined {
  const cron = v.cron as string;
  const timezone = v.timezone as string;
  const problem = cronProblem(cron, timezone);
  if (problem) {
    errors.push({
      subject: `${section}.cron`,
      message: `${JSON.stringify(cron)} is not valid (${problem}); expected 5 fields: minute hour day-of-month month day-of-week, such as "0 8 * * 1-5"`,
    });
    return undefined;
  }
  const limits = { minNodes: v.min_nodes as number | undefined, maxNodes: v.max_nodes as number | undefined, desired: v.desired as number | undefined };
  const hasLimits = Object.values(limits).some((x) => x !== undefined);
  const policy = v.policy as string;
  if ((policy !== "") === hasLimits) {
    errors.push({
      subject: `[${section}]`,
      message: `${policy !== "" ? "has both policy and min_nodes/max_nodes/desired" : "has no action"}; expected either policy = NAME, or any of min_nodes, max_nodes and desired`,
    });
    return undefined;
  }
  if (limits.minNodes !== undefined && limits.maxNodes !== undefined && limits.minNodes > limits.maxNodes) {
    errors.push({
      subject: `${section}.min_nodes`,
      message: `${limits.minNodes} is greater than ${section}.max_nodes (${limits.maxNodes}); expected min_nodes <= max_nodes`,
    });
    return undefined;
  }
  const action: ScheduleAction =
    policy !== ""
      ? { kind: "policy", policy }
      : {
          kind: "limits",
          ...(limits.minNodes !== undefined ? { minNodes: limits.minNodes } : {}),
          ...(limits.maxNodes !== undefined ? { maxNodes: limits.maxNodes } : {}),
          ...(limits.desired !== undefined ? { desired: limits.desired } : {}),
        };
  return { name, cron, timezone, action, grace: v.grace as number };
}
