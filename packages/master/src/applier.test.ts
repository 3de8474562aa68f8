import { createLogger, type ApplyResult } from "@autoscaler/shared";
import { afterEach, expect, test, vi } from "vitest";
import { createApplier } from "./applier.js";

afterEach(() => vi.useRealTimers());

const runtimeResult = (added: string[]): ApplyResult => ({
  changed: true,
  checked: true,
  reloaded: false,
  confirmed: true,
  runtime: { added, removed: [], pendingDeletes: [] },
  timings: { renderMs: 0, checkMs: 0, reloadMs: 0, confirmMs: 0, totalMs: 0 },
});

function applierWith(applyMs: number) {
  const calls: number[] = [];
  const applier = createApplier({
    quietMs: 100,
    ceilingMs: 800,
    retryMs: 5000,
    logger: createLogger({ write: () => undefined }, { level: "error" }),
    now: () => Date.now(),
    apply: () => {
      calls.push(Date.now());
      return new Promise<ApplyResult>((resolve) => {
        const done = () => resolve(runtimeResult(["x"]));
        if (applyMs === 0) done();
        else setTimeout(done, applyMs);
      });
    },
  });
  return { applier, calls };
}

test("an urgent change is applied on the next turn, not after the quiet period; others wait for it", async () => {
  vi.useFakeTimers({ now: 0 });
  const { applier, calls } = applierWith(0);
  applier.schedule("registered web-1", { urgent: true });
  await vi.advanceTimersByTimeAsync(1);
  expect(calls).toEqual([0]);
  applier.schedule("edited template");
  await vi.advanceTimersByTimeAsync(99);
  expect(calls).toHaveLength(1);
  await vi.advanceTimersByTimeAsync(2);
  expect(calls).toEqual([0, 101]);
  expect(applier.state.runtimeApplies).toBe(2);
});

test("a burst of urgent changes during an apply is coalesced into one more apply, right after it", async () => {
  vi.useFakeTimers({ now: 0 });
  const { applier, calls } = applierWith(30);
  applier.schedule("registered web-1", { urgent: true });
  await vi.advanceTimersByTimeAsync(1);
  for (let i = 2; i <= 50; i++) applier.schedule(`registered web-${i}`, { urgent: true });
  await vi.advanceTimersByTimeAsync(100);
  expect(calls).toEqual([0, 30]);
});

test("a failed apply is logged as an error, and the first one that works again says the failure is over, once", async () => {
  vi.useFakeTimers({ now: 0 });
  const lines: string[] = [];
  let fail = true;
  const applier = createApplier({
    quietMs: 100,
    ceilingMs: 800,
    retryMs: 5000,
    logger: createLogger({ write: (l: string) => lines.push(l) }, { level: "info" }),
    now: () => Date.now(),
    apply: () =>
      fail
        ? Promise.reject(Object.assign(new Error("HAProxy refused the new configuration"), { code: "AUTOSCALER_HAPROXY_CHECK_FAILED" }))
        : Promise.resolve(runtimeResult(["x"])),
  });
  applier.schedule("edited template");
  await vi.advanceTimersByTimeAsync(150);
  expect(lines.filter((l) => l.includes("haproxy apply failed"))).toHaveLength(1);
  fail = false;
  await vi.advanceTimersByTimeAsync(5100); // the retry
  applier.schedule("edited template again");
  await vi.advanceTimersByTimeAsync(150);
  const recovered = lines.filter((l) => l.includes("apply_recovered"));
  expect(recovered).toHaveLength(1);
  expect(recovered[0]).toMatch(/haproxy applies again: the last failure \(AUTOSCALER_HAPROXY_CHECK_FAILED\) is over/);
});
