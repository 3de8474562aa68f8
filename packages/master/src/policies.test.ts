/**
 * Named policies and schedules: the arithmetic (percent rounding, min/max clamping, when a
 * schedule is due) as tables, and their lifecycles through the state machine on a fake clock
 * (cooldowns, limits, schedules, a restart while a policy's command runs). No IO, no sleeps.
 */
import { describe, expect, test } from "vitest";
import { parseConfig, parseCron } from "@autoscaler/shared";
import type { NodeObservation } from "./decide.js";
import { effectivePolicy, initialState, step, type ScalerEvent, type ScalerState } from "./machine.js";
import { clampToLimits, percentChange, policyTarget, scheduleDue } from "./policies.js";
import { policyFromConfig, type ScalingPolicy } from "./policy.js";

describe("percentChange: rounded away from zero, at least one node", () => {
  test.each([
    [4, 50, 2],
    [3, 50, 2],
    [3, 10, 1],
    [30, 10, 3],
    [31, 10, 4],
    [0, 50, 1],
    [10, 0.1, 1],
    [3, -50, -2],
    [3, -10, -1],
    [30, -10, -3],
    [10, -100, -10],
    [5, 200, 10],
  ])("%i nodes, %s percent: %i", (current, percent, expected) => {
    expect(percentChange(current, percent)).toBe(expected);
  });
});

describe("policyTarget then clampToLimits: min and max always hold", () => {
  test.each([
    ["change +2 from 3", { kind: "change", nodes: 2 }, 3, 1, 10, 5, undefined],
    ["change +5 from 8 is capped by max", { kind: "change", nodes: 5 }, 8, 1, 10, 10, "capped 13 → 10 by max_nodes"],
    ["change -3 from 2 is raised to min", { kind: "change", nodes: -3 }, 2, 1, 10, 1, "raised -1 → 1 by min_nodes"],
    ["+50% of 4", { kind: "percent", percent: 50 }, 4, 1, 10, 6, undefined],
    ["+50% of 8 is capped", { kind: "percent", percent: 50 }, 8, 1, 10, 10, "capped 12 → 10 by max_nodes"],
    ["-50% of 3", { kind: "percent", percent: -50 }, 3, 0, 10, 1, undefined],
    ["-10% of 2 with min 2", { kind: "percent", percent: -10 }, 2, 2, 10, 2, "raised 1 → 2 by min_nodes"],
    ["desired 4", { kind: "desired", nodes: 4 }, 9, 1, 10, 4, undefined],
    ["desired 0 with min 2", { kind: "desired", nodes: 0 }, 3, 2, 10, 2, "raised 0 → 2 by min_nodes"],
    ["desired 20 with max 6", { kind: "desired", nodes: 20 }, 3, 1, 6, 6, "capped 20 → 6 by max_nodes"],
  ] as const)("%s", (_name, action, current, min, max, target, clamped) => {
    const r = clampToLimits(policyTarget(action, current), min, max);
    expect(r.target).toBe(target);
    expect(r.clamped).toBe(clamped);
  });
});

describe("scheduleDue", () => {
  // 09:00 on weekdays in Amsterdam (UTC+1 in December): 08:00Z.
  const rule = { runs: parseCron("0 9 * * 1-5", "Europe/Amsterdam"), graceMs: 300_000 };
  const monday = Date.parse("2026-12-07T08:00:00Z");
  test.each([
    ["a minute before: nothing new since Friday's run was handled", monday - 60_000, Date.parse("2026-12-04T08:00:00Z"), "none"],
    ["at the run time", monday, Date.parse("2026-12-04T08:00:00Z"), "run"],
    ["4 min late (within grace)", monday + 240_000, Date.parse("2026-12-04T08:00:00Z"), "run"],
    ["6 min late (beyond grace)", monday + 360_000, Date.parse("2026-12-04T08:00:00Z"), "missed"],
    ["already handled", monday + 10_000, monday, "none"],
    ["the weekend: Friday's run handled, nothing due", Date.parse("2026-12-06T12:00:00Z"), Date.parse("2026-12-04T08:00:00Z"), "none"],
  ])("%s", (_name, now, lastSlot, kind) => {
    const due = scheduleDue(rule, lastSlot, now);
    expect(due.kind).toBe(kind);
    if (due.kind !== "none") expect(due.slot).toBe(monday);
  });
  test("a time zone moves the run: 09:00 in New York is 14:00Z in December", () => {
    const ny = { runs: parseCron("0 9 * * *", "America/New_York"), graceMs: 0 };
    expect(scheduleDue(ny, undefined, Date.parse("2026-12-07T14:00:01Z"))).toEqual({ kind: "run", slot: Date.parse("2026-12-07T14:00:00Z") });
  });
});

// ---- through the state machine -----------------------------------------------------------

const T0 = Date.parse("2026-12-07T07:50:00Z"); // a Monday, 08:50 in Amsterdam
const INI = `[machine]
scale_up_command = launch
scale_down_command = terminate
[scaling]
mode = instance
min_nodes = 1
max_nodes = 10
scale_up_cooldown = 120
scale_down_cooldown = 60
[policy:out]
change = +2
cooldown = 600
[policy:half]
change_percent = -50
[policy:four]
desired = 4
[schedule:morning]
cron = 0 9 * * 1-5
timezone = Europe/Amsterdam
min_nodes = 3
[schedule:alarm]
cron = 30 9 * * *
timezone = Europe/Amsterdam
policy = out
grace = 60
`;
const config = parseConfig(INI, "/x/autoscaler.ini");
const policy: ScalingPolicy = policyFromConfig(config.config!);

const node = (name: string, now: number): NodeObservation => ({
  name,
  live: true,
  firstSeenAt: T0 - 3_600_000,
  addedAt: T0 - 3_600_000 + name.charCodeAt(0),
  removable: true,
  readings: [{ at: now - 1000, cpu: 50 }],
  instanceId: `i-${name}`,
  address: `10.0.0.${name.charCodeAt(0) % 200}`,
});
const nodes = (n: number) => (now: number) => Array.from({ length: n }, (_, i) => node(String.fromCharCode(97 + i), now));

type Step = [seconds: number, event: ScalerEvent | ((now: number, s: ScalerState) => ScalerEvent)];
function run(steps: Step[], state: ScalerState = initialState()) {
  const effects: string[][] = [];
  const replies: unknown[] = [];
  for (const [s, e] of steps) {
    const now = T0 + s * 1000;
    const r = step(state, typeof e === "function" ? e(now, state) : e, policy, now);
    state = r.state;
    effects.push(r.effects.filter((x) => x.kind !== "log").map((x) => x.kind));
    replies.push(r.reply);
  }
  return { effects, replies, state, d: state.durable };
}
const execute =
  (name: string, count: number, via = "execute", manual = true): Step[1] =>
  (now) => ({ type: "execute_policy", name, trigger: { via, manual }, nodes: nodes(count)(now) });
const tick =
  (count: number): Step[1] =>
  (now) => ({ type: "tick", nodes: nodes(count)(now) });

test("the config read every section: policies, schedules and their keys", () => {
  expect(config.errors).toEqual([]);
  expect(policy.policies?.map((p) => [p.name, p.action, p.cooldownMs])).toEqual([
    ["out", { kind: "change", nodes: 2 }, 600_000],
    ["half", { kind: "percent", percent: -50 }, 0],
    ["four", { kind: "desired", nodes: 4 }, 0],
  ]);
  expect(policy.schedules?.map((x) => [x.name, x.action, x.graceMs])).toEqual([
    ["morning", { kind: "limits", minNodes: 3 }, 300_000],
    ["alarm", { kind: "policy", policy: "out" }, 60_000],
  ]);
});

describe("a policy's cooldown and the group's", () => {
  test("a run is recorded with its launch in one save before the command; the next run inside the policy's cooldown is discarded and says so", () => {
    const r = run([
      [0, execute("out", 3)],
      [700, execute("out", 3)], // 3 serving + 2 pending
      [900, execute("out", 3)], // 3 serving + 4 pending
    ]);
    expect(r.effects[0]).toEqual(["save", "launch"]);
    expect(r.replies[0]).toMatchObject({ ok: true, value: { policy: "out", outcome: "executed", launched: 2 } });
    // 700 s: the policy's 600 s are over, the group's 120 s too: runs. 900 s: inside its own again.
    expect(r.replies[1]).toMatchObject({ ok: true, value: { launched: 2 } });
    expect(r.effects[2]).toEqual(["save"]);
    expect(r.replies[2]).toEqual({ ok: false, error: "policy out discarded: +2 from 7 to 9: inside policy out's own cooldown (400 s left)" });
    expect(r.d.policies?.out).toEqual({
      lastChangeAt: T0 + 700_000,
      last: { at: T0 + 900_000, via: "execute", outcome: "discarded", result: "+2 from 7 to 9: inside policy out's own cooldown (400 s left)" },
    });
    expect(r.state.runs.policies.out).toEqual({ executed: 2, discarded: 1 });
  });

  test("a policy without a cooldown of its own is held by the group's cooldown of that direction only", () => {
    const r = run([
      [0, execute("four", 2)], // up to 4: starts the group's scale-up cooldown (120 s)
      [30, execute("out", 2)], // 2 serving + 2 pending, up: inside the group's scale-up cooldown
      [31, execute("half", 4)], // 4 + 2 pending, down to 3: the scale-down cooldown has not started, so it runs
      [40, execute("half", 1)], // down again: inside the group's scale-down cooldown (60 s)
    ]);
    expect(r.replies[0]).toMatchObject({ ok: true, value: { launched: 2 } });
    expect(r.replies[1]).toEqual({ ok: false, error: "policy out discarded: +2 from 4 to 6: inside the group's scale_up_cooldown (90 s left)" });
    expect(r.replies[2]).toMatchObject({ ok: true, value: { draining: ["a", "b", "c"] } });
    expect(r.replies[3]).toMatchObject({ ok: false, error: expect.stringMatching(/inside the group's scale_down_cooldown \(51 s left\)/) as unknown });
  });

  test("both at once: the answer names both", () => {
    const r = run([
      [0, execute("out", 2)],
      [10, execute("out", 2)],
    ]);
    expect(r.replies[1]).toEqual({
      ok: false,
      error: "policy out discarded: +2 from 4 to 6: inside policy out's own cooldown (590 s left) and the group's scale_up_cooldown (110 s left)",
    });
  });

  test("a run that changes nothing starts no cooldown; min/max hold", () => {
    const r = run([
      [0, execute("four", 4)],
      [1, execute("half", 1)],
      [2, execute("out", 9)],
    ]);
    expect(r.replies[0]).toMatchObject({ ok: true, value: { outcome: "no_change", result: "=4 from 4: already at 4" } });
    expect(r.replies[1]).toMatchObject({ ok: true, value: { outcome: "no_change", result: "-50% from 1 (raised 0 → 1 by min_nodes): already at 1" } });
    expect(r.replies[2]).toMatchObject({ ok: true, value: { launched: 1, result: "+2 from 9 (capped 11 → 10 by max_nodes) to 10" } });
    expect(r.d.lastScaleUpAt).toBe(T0 + 2000);
  });

  test("paused: a webhook's run is refused, a run by hand goes ahead; an unknown policy is refused", () => {
    const r = run([
      [0, { type: "pause" }],
      [1, execute("out", 2, "webhook alarm", false)],
      [2, execute("out", 2)],
      [3, execute("nope", 2)],
    ]);
    expect(r.replies[1]).toMatchObject({ ok: false, error: expect.stringMatching(/^policy out refused: automatic scaling is paused/) as unknown });
    expect(r.replies[2]).toMatchObject({ ok: true, value: { launched: 2 } });
    expect(r.replies[3]).toEqual({ ok: false, error: 'unknown policy "nope"; the ini has out, half, four' });
  });
});

describe("manual commands: N% and set-capacity", () => {
  test("scale-up 50% of 3 is 2; scale-down 50% of 3 is 2; set-capacity within min/max, no cooldown", () => {
    const r = run([
      [0, (now) => ({ type: "scale_up", count: undefined, percent: 50, nodes: nodes(3)(now) })],
      [1, (now) => ({ type: "scale_down", count: undefined, percent: 50, nodes: nodes(3)(now) })],
      [2, (now) => ({ type: "set_capacity", desired: 50, nodes: nodes(3)(now) })],
      [3, (now) => ({ type: "set_capacity", desired: 3, nodes: nodes(3)(now) })],
    ]);
    expect(r.replies[0]).toMatchObject({ ok: true, value: { launched: 2, reason: "manual scale-up of 50% of 3 = 2" } });
    expect(r.replies[1]).toMatchObject({ ok: true, value: { draining: ["a", "b"], reason: "manual scale-down of 50% of 3 = 2" } });
    // a and b are draining: 1 serving + 2 pending = 3, to 50 capped at max 10.
    expect(r.replies[2]).toMatchObject({ ok: true, value: { changed: true, launched: 7, reason: "set-capacity 50 (capped 50 → 10 by max_nodes)" } });
    // Back to 3: the 7 pending cannot be drained and the one serving node is min_nodes.
    expect(r.replies[3]).toEqual({ ok: false, error: "cannot scale down: 1 backend(s) is already at min_nodes (1)" });
  });
});

describe("schedules on the fake clock", () => {
  test("09:00 Amsterdam: min_nodes 3 is set once (durable, over the ini's 1), and the tick's decision launches up to it", () => {
    const r = run([
      [0, tick(1)], // 08:50: nothing due (the last run was Friday's, beyond grace: skipped once)
      [599, tick(1)],
      [600, tick(1)], // 09:00:00
      [601, tick(3)],
    ]);
    expect(r.d.schedules?.morning?.last.outcome).toBe("executed");
    expect(r.d.schedules?.morning?.slot).toBe(Date.parse("2026-12-07T08:00:00Z"));
    expect(r.d.limits).toEqual({ minNodes: 3, by: "schedule morning", at: T0 + 600_000 });
    expect(r.state.runs.schedules.morning).toEqual({ skipped: 1, executed: 1 });
    // 09:00: the limits change, then the decision sees 1 node below min_nodes 3 and launches 2.
    expect(r.effects[2]).toEqual(["save", "save", "launch"]);
    expect(r.effects[3]).toEqual([]);
  });

  test("limits hold only while the schedule that set them is in the ini: without it, the ini's come back", () => {
    const r = run([
      [0, tick(1)],
      [600, tick(1)],
    ]);
    expect(effectivePolicy(policy, r.d).minNodes).toBe(3);
    const without = { ...policy, schedules: policy.schedules!.filter((x) => x.name !== "morning") };
    expect(effectivePolicy(without, r.d).minNodes).toBe(1);
  });

  test("a schedule that runs a policy records its run time before the launch: a restart within grace does not run it again", () => {
    const first = run([
      [2399, tick(3)],
      [2400, tick(3)], // 09:30:00
    ]);
    expect(first.d.schedules?.alarm).toMatchObject({ slot: Date.parse("2026-12-07T08:30:00Z"), last: { outcome: "executed" } });
    // One save records the run time, the policy's run and the launch; the next one the result.
    expect(first.effects[1]).toEqual(["save", "launch", "save"]);
    // The master is killed now (the launch command running) and starts again 20 s later.
    const again = run(
      [
        [2420, { type: "start", hosts: [] }],
        [2421, tick(3)],
      ],
      initialState(structuredClone(first.d)),
    );
    expect(again.effects).toEqual([["save"], []]);
    expect(again.d.launches.filter((l) => l.reason.includes("policy out"))).toHaveLength(1);
    expect(again.d.launches[0]!.status).toBe("pending");
  });

  test("a run missed while the master was down is run late within grace, and skipped beyond it", () => {
    const late = run([[2400 + 45, tick(3)]]); // 45 s late, grace 60 s
    expect(late.d.schedules?.alarm?.last.outcome).toBe("executed");
    const missed = run([[2400 + 90, tick(3)]]); // 90 s late
    expect(missed.d.schedules?.alarm?.last).toMatchObject({ outcome: "skipped", result: expect.stringMatching(/90 s past.*beyond grace \(60 s\)/) as unknown });
    expect(missed.d.launches).toEqual([]);
  });
});

describe("a restart while a policy's command runs", () => {
  test("the launch is recorded before the command; on start it is pending, never run again; the policy's cooldown survives", () => {
    const first = run([[0, execute("out", 3)]]);
    expect(first.effects).toEqual([["save", "launch"]]);
    const again = run(
      [
        [5, { type: "start", hosts: [] }],
        [6, tick(3)],
        [7, execute("out", 3)],
      ],
      initialState(structuredClone(first.d)),
    );
    expect(again.effects[0]).toEqual(["save"]);
    expect(again.d.launches).toMatchObject([{ status: "pending", count: 2 }]);
    expect(again.replies[2]).toMatchObject({ ok: false, error: expect.stringMatching(/own cooldown \(593 s left\)/) as unknown });
  });
});

describe("webhooks in the durable state", () => {
  test("add (known policy, unique name), remove; only the hash is kept", () => {
    const sha = "a".repeat(64);
    const r = run([
      [0, { type: "webhook_add", name: "alarm", policy: "out", sha256: sha }],
      [1, { type: "webhook_add", name: "alarm", policy: "out", sha256: sha }],
      [2, { type: "webhook_add", name: "x", policy: "nope", sha256: sha }],
      [3, { type: "webhook_remove", name: "alarm" }],
      [4, { type: "webhook_remove", name: "alarm" }],
    ]);
    expect(r.effects).toEqual([["save"], [], [], ["save"], []]);
    expect(r.replies.map((x) => (x as { ok: boolean }).ok)).toEqual([true, false, false, true, false]);
    expect(r.d.webhooks).toEqual([]);
  });
});
