/**
 * Keeps HAProxy in step with hosts.d and the template: bursts of changes are debounced
 * (quiet period, with a ceiling) into one apply, applies never overlap, and a change that
 * arrives during an apply triggers one more. A failed apply is retried on the next change
 * or after `retryMs`.
 */
import type { ApplyResult, Logger } from "@autoscaler/shared";

/** What the applier remembers for status and metrics. */
export interface ApplierState {
  applies: number;
  reloads: number;
  reloadFailures: number;
  checkFailures: number;
  lastResult: ApplyResult | undefined;
  lastError: { at: number; code: string; message: string; details: string[] } | undefined;
  lastAppliedAt: number | undefined;
}

/** Options: the quiet period and the ceiling (ms), the retry delay after a failure, and the apply itself. */
export interface ApplierOptions {
  quietMs: number;
  ceilingMs: number;
  retryMs: number;
  apply: () => Promise<ApplyResult>;
  logger: Logger;
  now: () => number;
  /** Called after each successful apply (for example to re-send runtime drains after a reload). */
  onApplied?: (result: ApplyResult) => void;
}

/** The applier: `schedule()` on any change; `flush()` waits until nothing is pending. */
export interface Applier {
  schedule(reason: string): void;
  flush(): Promise<void>;
  stop(): void;
  readonly state: ApplierState;
}

/** Create an applier. Nothing runs until the first `schedule`. */
export function createApplier(options: ApplierOptions): Applier {
  const state: ApplierState = {
    applies: 0,
    reloads: 0,
    reloadFailures: 0,
    checkFailures: 0,
    lastResult: undefined,
    lastError: undefined,
    lastAppliedAt: undefined,
  };
  let quietTimer: NodeJS.Timeout | undefined;
  let ceilingTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let dirty = false;
  let stopped = false;
  const reasons = new Set<string>();
  const waiters: (() => void)[] = [];

  const clearTimers = () => {
    if (quietTimer) clearTimeout(quietTimer);
    if (ceilingTimer) clearTimeout(ceilingTimer);
    quietTimer = ceilingTimer = undefined;
  };

  const settle = () => {
    if (!running && !dirty && !quietTimer) waiters.splice(0).forEach((w) => w());
  };

  const fire = () => {
    clearTimers();
    if (stopped) return;
    if (running) {
      dirty = true;
      return;
    }
    dirty = false;
    const why = [...reasons].join(", ");
    reasons.clear();
    running = (async () => {
      try {
        const result = await options.apply();
        state.applies++;
        state.lastResult = result;
        state.lastAppliedAt = options.now();
        if (result.reloaded) state.reloads++;
        if (result.changed)
          options.logger.info("haproxy applied", {
            reason: why,
            reloaded: result.reloaded,
            confirmed: result.confirmed ?? null,
            ms: Math.round(result.timings.totalMs),
          });
        state.lastError = undefined;
        options.onApplied?.(result);
      } catch (err) {
        const e = err as { code?: string; message?: string; details?: string[] };
        if (e.code === "AUTOSCALER_HAPROXY_RELOAD_FAILED") state.reloadFailures++;
        if (e.code === "AUTOSCALER_HAPROXY_CHECK_FAILED") state.checkFailures++;
        state.lastError = { at: options.now(), code: e.code ?? "ERROR", message: e.message ?? String(err), details: e.details ?? [] };
        options.logger.error("haproxy apply failed; the live config stays the last good one", {
          reason: why,
          code: e.code ?? "ERROR",
          error: e.message ?? String(err),
          details: e.details ?? [],
        });
        if (!stopped && !retryTimer) {
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            schedule("retry after failure");
          }, options.retryMs);
        }
      } finally {
        running = undefined;
        if (dirty && !stopped) fire();
        settle();
      }
    })();
  };

  function schedule(reason: string): void {
    if (stopped) return;
    reasons.add(reason);
    if (quietTimer) clearTimeout(quietTimer);
    quietTimer = setTimeout(fire, options.quietMs);
    if (!ceilingTimer) ceilingTimer = setTimeout(fire, options.ceilingMs);
  }

  return {
    schedule,
    flush: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        settle();
      }),
    stop() {
      stopped = true;
      clearTimers();
      if (retryTimer) clearTimeout(retryTimer);
      waiters.splice(0).forEach((w) => w());
    },
    state,
  };
}
