/**
 * Named policies and schedules, the arithmetic part: what count a policy asks for, how min/max
 * clamp it (with the reason), and whether a schedule is due. Pure; the state machine
 * (machine.ts) records and acts on the results.
 */
import type { PolicyAction, ScheduleAction } from "@autoscaler/shared";
import type { ScheduleRule } from "./policy.js";

/**
 * The nodes a percent change adds or removes from `current`: rounded away from zero, and at
 * least one node (Rackspace's rule), so +10 % of 3 is +1 and −50 % of 3 is −2.
 */
export function percentChange(current: number, percent: number): number {
  const exact = (current * percent) / 100;
  // Round away from zero; a tiny epsilon keeps 10 % of 30 at exactly 3, not 4.
  const away = Math.ceil(Math.abs(exact) - 1e-9);
  return Math.sign(percent) * Math.max(1, away);
}

/** The count a policy asks for, from the current count (serving plus pending), before min/max. */
export function policyTarget(action: PolicyAction, current: number): number {
  switch (action.kind) {
    case "change":
      return current + action.nodes;
    case "percent":
      return current + percentChange(current, action.percent);
    case "desired":
      return action.nodes;
  }
}

/** Clamp a target into [min, max]; the reason says what was cut ("capped 12 → 10 by max_nodes"). */
export function clampToLimits(target: number, min: number, max: number): { target: number; clamped?: string } {
  if (target > max) return { target: max, clamped: `capped ${target} → ${max} by max_nodes` };
  if (target < min) return { target: min, clamped: `raised ${target} → ${min} by min_nodes` };
  return { target };
}

/** A policy's action in a few characters: `+2`, `-1`, `+50%`, `=4`. */
export function describeAction(action: PolicyAction): string {
  const signed = (n: number) => (n > 0 ? `+${n}` : `${n}`);
  return action.kind === "change" ? signed(action.nodes) : action.kind === "percent" ? `${signed(action.percent)}%` : `=${action.nodes}`;
}

/** A schedule's action in words: `policy morning`, `min_nodes 3, desired 4`. */
export function describeScheduleAction(action: ScheduleAction): string {
  if (action.kind === "policy") return `policy ${action.policy}`;
  const parts = [
    action.minNodes !== undefined ? `min_nodes ${action.minNodes}` : "",
    action.maxNodes !== undefined ? `max_nodes ${action.maxNodes}` : "",
    action.desired !== undefined ? `desired ${action.desired}` : "",
  ];
  return parts.filter(Boolean).join(", ");
}

/** A run this late is still on time, whatever `grace` says: ticks come once per `[master] interval` (the caller passes more for a long one). */
export const ON_TIME_MS = 5_000;

/** What a schedule should do at `now`, given the run time it last handled. */
export type ScheduleDue = { kind: "none" } | { kind: "run"; slot: number } | { kind: "missed"; slot: number; lateMs: number };

/**
 * Whether a schedule is due: its latest run time at or before `now` that was not handled yet
 * runs when it is at most `grace` old; an older one (the master was down) is skipped, and only
 * the latest run time counts, so a long outage never runs a schedule several times.
 */
export function scheduleDue(rule: Pick<ScheduleRule, "runs" | "graceMs">, lastSlot: number | undefined, now: number, onTimeMs = ON_TIME_MS): ScheduleDue {
  const slot = rule.runs.previous(now);
  if (slot === undefined || (lastSlot !== undefined && slot <= lastSlot)) return { kind: "none" };
  const lateMs = now - slot;
  return lateMs <= Math.max(rule.graceMs, onTimeMs) ? { kind: "run", slot } : { kind: "missed", slot, lateMs };
}
