/**
 * Keeps HAProxy in step with hosts.d and the template. Applies never overlap, and changes that
 * arrive during an apply are coalesced into the next one. An urgent change (a server added or
 * removed while HAProxy's runtime API takes such changes) is applied at once; any other is
 * debounced (quiet period, with a ceiling), since it costs a reload. A failed apply is retried
 * on the next change or after `retryMs`.
 */
import type { ApplyResult, Logger } from "@autoscaler/shared";

/** What the applier remembers for status and metrics. */
export interface ApplierState {
  applies: number;
  reloads: number;
  /** Changes applied through HAProxy's runtime API, without a reload. */
  runtimeApplies: number;
  /** Changes whose runtime commands failed and that were applied with a reload instead. */
  runtimeFallbacks: number;
  /** Why the last apply took the reload path although a runtime socket is set; undefined after a runtime apply. */
  reloadBecause: string | undefined;
  /** Applies in a row that took the reload path although a runtime socket is set (0 after a runtime apply). */
  reloadPathsInARow: number;
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
  /** A change to apply: `urgent` ones at once (bursts still coalesce per apply), others after the quiet period. */
  schedule(reason: string, options?: { urgent?: boolean }): void;
  flush(): Promise<void>;
  stop(): void;
  readonly state: ApplierState;
}

/** How soon a `del server` refused for open connections is tried again (ms). */
const PENDING_DELETE_RETRY_MS = 1000;

/** Create an applier. Nothing runs until the first `schedule`. */
export function createApplier(options: ApplierOptions): Applier {
  const state: ApplierState = {
    applies: 0,
    reloads: 0,
    runtimeApplies: 0,
    runtimeFallbacks: 0,
    reloadBecause: undefined,
    reloadPathsInARow: 0,
    reloadFailures: 0,
    checkFailures: 0,
    lastResult: undefined,
    lastError: undefined,
    lastAppliedAt: undefined,
  };
  /** The pending start of the next apply: a quiet-period timer, or the next turn of the event loop for an urgent change. */
  let quietTimer: { cancel(): void } | undefined;
  let ceilingTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let dirty = false;
  let stopped = false;
  const reasons = new Set<string>();
  const waiters: (() => void)[] = [];

  const clearTimers = () => {
    quietTimer?.cancel();
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
        if (result.runtime && result.changed) state.runtimeApplies++;
        if (result.runtimeFailure) state.runtimeFallbacks++;
        state.reloadBecause = result.runtime ? undefined : result.reloadBecause;
        state.reloadPathsInARow = result.runtime ? 0 : result.reloadBecause ? state.reloadPathsInARow + 1 : state.reloadPathsInARow;
        if (result.changed || result.reloaded)
          options.logger.info("haproxy applied", {
            reason: why,
            path: result.runtime ? "runtime" : "reload",
            ...(result.runtime ? { added: result.runtime.added, removed: result.runtime.removed } : {}),
            ...(result.reloadBecause ? { reload_because: result.reloadBecause } : {}),
            reloaded: result.reloaded,
            confirmed: result.confirmed ?? null,
            ms: Math.round(result.timings.totalMs),
            // Where the time went: until the plan (lock, render, show servers state), the runtime commands, the check.
            ms_render: Math.round(result.timings.renderMs),
            ...(result.runtime ? { ms_runtime: Math.round(result.timings.runtimeMs ?? 0) } : { ms_reload: Math.round(result.timings.reloadMs) }),
            ms_check: Math.round(result.timings.checkMs),
          });
        // A deleted server with connections still open: try its `del server` again soon.
        if (result.runtime && result.runtime.pendingDeletes.length > 0) retryLater("servers waiting for their connections to end", PENDING_DELETE_RETRY_MS);
        // Said once when it works again, so a log that showed the failure also shows its end.
        if (state.lastError)
          options.logger.info(`haproxy applies again: the last failure (${state.lastError.code}) is over`, {
            event: "apply_recovered",
            code: state.lastError.code,
            failed_at: new Date(state.lastError.at).toISOString(),
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
        retryLater("retry after failure", options.retryMs);
      } finally {
        running = undefined;
        if (dirty && !stopped) fire();
        settle();
      }
    })();
  };

  function retryLater(reason: string, ms: number): void {
    if (stopped || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      schedule(reason);
    }, ms);
  }

  function schedule(reason: string, how: { urgent?: boolean } = {}): void {
    if (stopped) return;
    reasons.add(reason);
    quietTimer?.cancel();
    // Urgent: on the next turn of the event loop (setImmediate: a 0 ms timer waits 1 ms), so the changes of one burst still go together.
    if (how.urgent) {
      const handle = setImmediate(fire);
      quietTimer = { cancel: () => clearImmediate(handle) };
    } else {
      const handle = setTimeout(fire, options.quietMs);
      quietTimer = { cancel: () => clearTimeout(handle) };
    }
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
