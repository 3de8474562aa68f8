/**
 * The predictive floor (`[scaling] predictive = on`), after AWS predictive scaling: the fleet's
 * demand is recorded per minute (the sum of CPU percent over nodes), and the floor for the next
 * boot time's worth of minutes is what the same minutes needed both 1 day and 7 days earlier
 * (the lower of the two), at target_cpu per node.
 * Pure: the scaler's state machine records, the runner keeps the history in state_dir.
 */

const MINUTE_MS = 60_000;
/** Eight days of minutes: enough for "7 days earlier" plus the look-ahead. */
export const DEMAND_HISTORY_MINUTES = 8 * 1440;
const LOOKBACK_MINUTES = [1440, 7 * 1440] as const;

/** Demand per minute (sum of CPU percent across nodes), oldest first, ending at `lastMinute`. */
export interface DemandHistory {
  /** Minute number (epoch ms / 60 000) of the last value. */
  lastMinute: number;
  values: number[];
  /** The minute being recorded: sum and count of its ticks. */
  open?: { minute: number; sum: number; count: number };
}

/** An empty history. */
export function emptyDemandHistory(): DemandHistory {
  return { lastMinute: 0, values: [] };
}

/**
 * Add one tick's fleet demand. A minute is closed when the next one starts; missing minutes
 * (the master was down) are recorded as gaps (NaN), so a look-back never lands on the wrong minute.
 * Returns the same object, changed: the history is the one mutable part of the state machine, kept
 * out of the durable state for size.
 */
export function recordDemand(history: DemandHistory, now: number, demand: number): { history: DemandHistory; closed: boolean } {
  const minute = Math.floor(now / MINUTE_MS);
  const open = history.open;
  if (open && open.minute === minute) {
    open.sum += demand;
    open.count++;
    return { history, closed: false };
  }
  let closed = false;
  if (open) {
    if (history.values.length > 0) for (let m = history.lastMinute + 1; m < open.minute; m++) history.values.push(Number.NaN);
    history.values.push(open.sum / open.count);
    history.lastMinute = open.minute;
    if (history.values.length > DEMAND_HISTORY_MINUTES) history.values.splice(0, history.values.length - DEMAND_HISTORY_MINUTES);
    closed = true;
  }
  history.open = { minute, sum: demand, count: 1 };
  return { history, closed };
}

/** The demand recorded for one minute, or undefined. */
function demandAt(history: DemandHistory, minute: number): number | undefined {
  const i = history.values.length - 1 - (history.lastMinute - minute);
  const v = i >= 0 && i < history.values.length ? history.values[i] : undefined;
  return v === undefined || Number.isNaN(v) ? undefined : v;
}

/**
 * The floor in nodes for the next `lookaheadMs`: over those minutes, the highest of the demand
 * that the same minute saw both 1 and 7 days earlier, at `targetCpu` per node. Undefined when
 * neither day was recorded.
 */
export function predictiveFloor(history: DemandHistory, now: number, lookaheadMs: number, targetCpu: number): { nodes: number; demand: number } | undefined {
  const minute = Math.floor(now / MINUTE_MS);
  const ahead = Math.max(1, Math.ceil(lookaheadMs / MINUTE_MS));
  let best: number | undefined;
  for (let k = 0; k <= ahead; k++) {
    // The demand both days saw: the lower of the two (weekends are about half of weekdays, and
    // the day before a Monday is a Sunday). One recorded day stands alone.
    let agreed: number | undefined;
    for (const back of LOOKBACK_MINUTES) {
      const v = demandAt(history, minute + k - back);
      if (v !== undefined) agreed = agreed === undefined ? v : Math.min(agreed, v);
    }
    if (agreed !== undefined && (best === undefined || agreed > best)) best = agreed;
  }
  if (best === undefined) return undefined;
  return { nodes: Math.ceil(best / targetCpu - 1e-9), demand: best };
}
