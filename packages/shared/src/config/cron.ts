/**
 * 5-field cron expressions through croner (npm `croner`: no dependencies, time zones from the
 * runtime's own zone data, strict "5-part" mode, previous and next runs): never a parser of our
 * own. Loaded on first use only, so a node's agent, whose ini has no schedules, never loads it.
 */
import { createRequire } from "node:module";

type CronerModule = typeof import("croner");
let croner: CronerModule | undefined;
const load = (): CronerModule => (croner ??= createRequire(import.meta.url)("croner") as CronerModule);

/** A parsed cron expression in a time zone: pure functions of a time (ms since the epoch). */
export interface CronSchedule {
  /** The latest run at or before `at`, or undefined when there is none. */
  previous(at: number): number | undefined;
  /** The first run after `at`, or undefined when there is none. */
  next(at: number): number | undefined;
}

/** Parse `expression` (5 fields) read in `timezone` (IANA; empty: UTC); throws with croner's reason when it is not valid. */
export function parseCron(expression: string, timezone: string): CronSchedule {
  const { Cron } = load();
  const job = new Cron(expression, { mode: "5-part", timezone: timezone || "Etc/UTC", paused: true });
  // Computing one run also checks the zone, which croner reads only then.
  job.nextRun(new Date(0));
  return {
    previous: (at) => job.previousRuns(1, new Date(at + 1))[0]?.getTime(),
    next: (at) => job.nextRun(new Date(at))?.getTime() ?? undefined,
  };
}

/** Why an expression is not valid, or undefined when it is. */
export function cronProblem(expression: string, timezone: string): string | undefined {
  try {
    parseCron(expression, timezone);
    return undefined;
  } catch (err) {
    return (err as Error).message.replace(/^Cron\w*: /, "");
  }
}
