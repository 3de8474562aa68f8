/**
 * The scaler's state machine on a fake clock: each lifecycle (launch, register, timeout,
 * backoff, drain, terminate, each failure, a restart at each point) is a table of events at
 * given times → the effects it asks for and the state it ends in. No IO, no sleeps.
 */
import { describe, expect, test } from "vitest";
import type { NodeObservation } from "./decide.js";
import { excludedNames, initialState, removedByDrains, step, type Effect, type HostRef, type ScalerEvent, type ScalerState } from "./machine.js";
import { parseConfig } from "@autoscaler/shared";
import { policyFromConfig, type ScalingPolicy } from "./policy.js";
import { emptyState, type DrainRecord, type LaunchRecord } from "./state-store.js";

const T0 = 1_800_000_000_000;
/** The policy of a fresh ini with both commands set: every [scaling] default (target mode). */
const policy: ScalingPolicy = policyFromConfig(
  parseConfig("[machine]\nscale_up_command = launch\nscale_down_command = terminate\n", "/x/autoscaler.ini").config!,
);

/** A node heard every 5 s for the last 10 minutes at `cpu`, as of `now`. */
const node = (name: string, cpu: number, now: number, extra: Partial<NodeObservation> = {}): NodeObservation => ({
  name,
  live: true,
  firstSeenAt: T0 - 3_600_000,
  addedAt: T0 - 3_600_000 + name.charCodeAt(name.length - 1),
  removable: true,
  readings: Array.from({ length: 120 }, (_, i) => ({ at: now - 600_000 + (i + 1) * 5_000, cpu })),
  instanceId: `i-${name}`,
  address: `10.0.0.${name.charCodeAt(name.length - 1) % 200}`,
  ...extra,
});
const fleet = (cpu: number, names: string[]) => (now: number) => names.map((n) => node(n, cpu, now));

/** An event at a time offset (s); a function of the time for ticks and manual commands that carry nodes. */
type Step = [seconds: number, event: ScalerEvent | ((now: number, s: ScalerState) => ScalerEvent)];

/** Run the steps from `state`; return every step's effect kinds (logs left out) and the end state. */
function run(steps: Step[], state: ScalerState = initialState(), p: ScalingPolicy = policy) {
  const effects: string[][] = [];
  const all: Effect[] = [];
  for (const [s, e] of steps) {
    const now = T0 + s * 1000;
    const event = typeof e === "function" ? e(now, state) : e;
    const r = step(state, event, p, now);
    state = r.state;
    effects.push(r.effects.filter((x) => x.kind !== "log").map((x) => x.kind));
    all.push(...r.effects);
  }
  return { effects, state, all, d: state.durable };
}
const lastId = (s: ScalerState, kind: "launch" | "drain") => (kind === "launch" ? s.durable.launches.at(-1)!.id : s.durable.drains.at(-1)!.id);
const tick =
  (cpu: number, names = ["a"]): Step[1] =>
  (now) => ({ type: "tick", nodes: fleet(cpu, names)(now) });
const launched =
  (ok: boolean, detail = ""): Step[1] =>
  (_now, s) => ({ type: "launch_finished", id: lastId(s, "launch"), ok, instances: [], detail });
/** A node that presented the cluster secret (the weaker mode): it may stand in for "any new node". */
const hello = (name: string): ScalerEvent => ({ type: "node_registered", hello: { name, address: "10.0.0.99", anyLaunch: true } });

describe("launch lifecycle", () => {
  test("decided → saved before the command → command ok → pending → a node registers → done", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
      [60, hello("c")],
    ]);
    expect(r.effects).toEqual([["save", "launch"], ["save"], ["save"]]);
    expect(r.d.launches).toMatchObject([{ status: "pending", count: 2, nodes: ["c"] }]);
    expect(r.d.lastScaleUpAt).toBe(T0);
  });

  test("a launch of 2 is done once both nodes registered, and the second node cannot claim twice", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
      [60, hello("c")],
      [61, hello("d")],
      [62, hello("d")],
    ]);
    expect(r.d.launches).toMatchObject([{ status: "done", nodes: ["c", "d"] }]);
    expect(r.state.counters.launches).toBe(1);
  });

  test("a failed command: failed, no cooldown left behind, backoff 30 s then 60 s, and no launch meanwhile", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(false, "exit code 1: no credentials")],
      [10, tick(100, ["a", "b"])],
      [32, tick(100, ["a", "b"])],
      [33, launched(false, "exit code 1")],
      [60, tick(100, ["a", "b"])],
      [94, tick(100, ["a", "b"])],
    ]);
    expect(r.effects).toEqual([["save", "launch"], ["save"], [], ["save", "launch"], ["save"], [], ["save", "launch"]]);
    expect(r.d.launches.map((l) => l.status)).toEqual(["failed", "failed", "running"]);
    expect(r.d.launches[0]!.error).toBe("exit code 1: no credentials");
    expect(r.state.counters.launch_failures).toBe(2);
  });

  test("the failure backoff is durable: it is in state.json and holds after a restart", () => {
    const first = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(false)],
    ]);
    expect(first.d.backoff.up).toEqual({ failures: 1, until: T0 + 31_000 });
    const restarted = run(
      [
        [10, { type: "start", hosts: [] }],
        [11, tick(100, ["a", "b"])],
      ],
      initialState(structuredClone(first.d)),
    );
    expect(restarted.effects).toEqual([[], []]);
    expect(restarted.state.lastDecision?.decision.reason).toMatch(/backoff \(20 s left\)/);
  });

  test("launch_timeout: failed, counts no more, and backs off", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
      [599, tick(60, ["a", "b"])],
      [600, tick(60, ["a", "b"])],
    ]);
    expect(r.effects.at(-1)).toEqual(["save"]);
    expect(r.d.launches[0]).toMatchObject({ status: "failed", error: "launch_timeout: 0 of 2 node(s) registered within 600 s" });
    expect(r.d.backoff.up?.failures).toBe(1);
    expect(r.state.counters.launch_timeouts).toBe(1);
  });

  test("a registration resets the launch backoff", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(false)],
      [40, tick(100, ["a", "b"])],
      [41, launched(true)],
      [90, hello("c")],
    ]);
    expect(r.d.backoff.up).toBeUndefined();
  });

  test("a restart while the command ran: pending with a note, never run again, done when its node registers", () => {
    const before = run([[0, tick(100, ["a", "b"])]]);
    expect(before.d.launches[0]!.status).toBe("running");
    const r = run(
      [
        [5, { type: "start", hosts: [] }],
        [6, tick(60, ["a", "b"])],
        [30, hello("c")],
        [31, hello("d")],
      ],
      initialState(structuredClone(before.d)),
    );
    expect(r.effects).toEqual([["save"], [], ["save"], ["save"]]);
    expect(r.d.launches[0]).toMatchObject({ status: "done", nodes: ["c", "d"] });
    expect(r.d.launches[0]!.note).toMatch(/not run again/);
  });

  test("a restart finds the node that registered while the master was down, by instance id", () => {
    const before = run([
      [0, tick(100, ["a", "b"])],
      [1, (_n, s) => ({ type: "launch_finished", id: lastId(s, "launch"), ok: true, instances: [{ instanceId: "i-new" }], detail: "" })],
    ]);
    const hosts = [{ name: "c", address: "10.0.0.3", source: "agent", addedAt: new Date(T0 + 50_000).toISOString(), instanceId: "i-new" }];
    const r = run([[60, { type: "start", hosts }]], initialState(structuredClone(before.d)));
    expect(r.d.launches[0]).toMatchObject({ status: "done", nodes: ["c"] });
  });
});

describe("whose word claims a launch, and whose instance id reaches terminate", () => {
  const printed =
    (instances: { instanceId: string; privateAddress?: string }[]): Step[1] =>
    (_now, s) => ({ type: "launch_finished", id: lastId(s, "launch"), ok: true, instances, detail: "" });
  test("a join credential claims its own launch only; another launch's nodes are not taken", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
      [60, { type: "node_registered", hello: { name: "c", address: "10.0.0.99", launchId: "launch-elsewhere" } }],
      [61, (_now, s) => ({ type: "node_registered", hello: { name: "d", address: "10.0.0.98", launchId: lastId(s, "launch") } })],
    ]);
    expect(r.d.launches).toMatchObject([{ nodes: ["d"] }]);
  });

  test("a node the master may not take as 'any new node' (its own credential for a name already known) never stands in for a launch that printed no instances", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
      [60, { type: "node_registered", hello: { name: "c", address: "10.0.0.99", instanceId: "i-anything" } }],
    ]);
    expect(r.d.launches).toMatchObject([{ status: "pending", nodes: [] }]);
  });

  test("the claim answers the instance id from the launch's own output: by id, else by address; a node's other id is not taken", () => {
    const base = run([
      [0, tick(100, ["a", "b"])],
      [
        1,
        printed([
          { instanceId: "i-00000001", privateAddress: "10.0.0.31" },
          { instanceId: "i-00000002", privateAddress: "10.0.0.32" },
        ]),
      ],
    ]);
    const byId = step(base.state, { type: "node_registered", hello: { name: "c", address: "10.9.9.9", instanceId: "i-00000002" } }, policy, T0 + 60_000);
    expect(byId.reply).toEqual({ ok: true, value: { claimed: true, instanceId: "i-00000002" } });
    const byAddress = step(base.state, { type: "node_registered", hello: { name: "c", address: "10.0.0.31", instanceId: "i-forged" } }, policy, T0 + 60_000);
    expect(byAddress.reply).toEqual({ ok: true, value: { claimed: true, instanceId: "i-00000001" } });
    const neither = step(base.state, { type: "node_registered", hello: { name: "c", address: "10.9.9.9", instanceId: "i-forged" } }, policy, T0 + 60_000);
    expect(neither.reply).toEqual({ ok: true, value: { claimed: false } });
  });

  test("nodes that claimed a launch while its command ran are vouched for once it prints the instances: by reported id, else by address, each instance once, and only then", () => {
    const r = run([
      [0, tick(100, ["a", "b"])],
      [10, (_now, s) => ({ type: "node_registered", hello: { name: "c", address: "10.0.0.31", instanceId: "i-own", launchId: lastId(s, "launch") } })],
      [11, (_now, s) => ({ type: "node_registered", hello: { name: "d", address: "10.9.9.9", instanceId: "i-00000002", launchId: lastId(s, "launch") } })],
      [
        12,
        (_now, s) => ({
          type: "launch_finished",
          id: lastId(s, "launch"),
          ok: true,
          detail: "",
          instances: [
            { instanceId: "i-00000001", privateAddress: "10.0.0.31" },
            { instanceId: "i-00000002", privateAddress: "10.0.0.32" },
          ],
        }),
      ],
    ]);
    expect(r.all.filter((e) => e.kind === "vouch")).toEqual([
      { kind: "vouch", node: "c", instanceId: "i-00000001" },
      { kind: "vouch", node: "d", instanceId: "i-00000002" },
    ]);
    expect(r.state.earlyClaims).toEqual([]);
    expect(r.d.launches[0]).toMatchObject({ status: "done", nodes: ["c", "d"] });
  });

  test("a scale-down of a node whose id is only its own word drains and removes it, and skips the terminate command with an event naming autoscaler trust", () => {
    const own = (now: number) => ["a", "b", "c"].map((n) => node(n, 30, now, { instanceId: undefined, reportedInstanceId: `i-own-${n}` }));
    const r = run([
      [0, (now) => ({ type: "scale_down", count: 1, nodes: own(now) })],
      [30, (now) => ({ type: "tick", nodes: own(now) })],
      [31, (_now, s) => ({ type: "removed_from_config", id: lastId(s, "drain"), confirmed: true })],
    ]);
    expect(r.effects.at(-1)).toEqual(["remove_host", "save"]);
    expect(r.all.some((e) => e.kind === "terminate")).toBe(false);
    expect(r.d.drains[0]).toMatchObject({ node: "a", instanceId: "", reportedInstanceId: "i-own-a", status: "done" });
    const skipped = r.all.find((e) => e.kind === "log" && e.event === "terminate_skipped");
    expect(skipped).toMatchObject({ level: "warn" });
    expect((skipped as { message: string }).message).toMatch(/only the node's own word.*autoscaler trust a/);
    expect(r.state.counters.terminations).toBe(0);
  });

  test("a scale-down of a node with no instance id at all (its agent found none) runs the terminate with INSTANCE_ID empty, for a command that goes by name or address", () => {
    const none = (now: number) => ["a", "b", "c"].map((n) => node(n, 30, now, { instanceId: undefined, reportedInstanceId: undefined }));
    const r = run([
      [0, (now) => ({ type: "scale_down", count: 1, nodes: none(now) })],
      [30, (now) => ({ type: "tick", nodes: none(now) })],
      [31, (_now, s) => ({ type: "removed_from_config", id: lastId(s, "drain"), confirmed: true })],
    ]);
    expect(r.all.find((e) => e.kind === "terminate")).toMatchObject({ node: "a", instanceId: "" });
    expect(r.all.some((e) => e.kind === "log" && e.event === "terminate_skipped")).toBe(false);
  });
});

describe("drain lifecycle", () => {
  const three = ["a", "b", "c"];
  const down =
    (count: number): Step[1] =>
    (now) => ({ type: "scale_down", count, nodes: fleet(30, three)(now) });
  const drainId = (_now: number, s: ScalerState) => lastId(s, "drain");

  test("manual scale-down: saved → drained → after drain_seconds out of the config → terminate → entry removed", () => {
    const r = run([
      [0, down(1)],
      [10, tick(30, three)],
      [30, tick(30, three)],
      [31, (now, s) => ({ type: "removed_from_config", id: drainId(now, s), confirmed: true })],
      [33, (now, s) => ({ type: "terminate_finished", id: drainId(now, s), ok: true, detail: "" })],
    ]);
    expect(r.effects).toEqual([["save", "drain"], [], ["remove_from_config"], ["save", "terminate"], ["remove_host", "save"]]);
    expect(r.d.drains[0]).toMatchObject({ node: "a", instanceId: "i-a", status: "done" });
    expect(r.all.find((e) => e.kind === "terminate")).toMatchObject({ node: "a", instanceId: "i-a" });
    expect(excludedNames(r.d).size).toBe(0);
  });

  test("a draining node is left out of haproxy.cfg, for the master and for the CLI alike", () => {
    const r = run([[0, down(1)]]);
    expect([...excludedNames(r.d)]).toEqual(["a"]);
  });

  test("the live config still has the node: terminate waits for the next tick, and is asked again", () => {
    const r = run([
      [0, down(1)],
      [30, tick(30, three)],
      [31, (now, s) => ({ type: "removed_from_config", id: drainId(now, s), confirmed: false })],
      [32, tick(30, three)],
    ]);
    expect(r.effects.slice(1)).toEqual([["remove_from_config"], [], ["remove_from_config"]]);
  });

  test("a failed terminate: failed, the node back in service, a down backoff, its cooldown put back", () => {
    const r = run([
      [0, down(1)],
      [30, tick(30, three)],
      [31, (now, s) => ({ type: "removed_from_config", id: drainId(now, s), confirmed: true })],
      [32, (now, s) => ({ type: "terminate_finished", id: drainId(now, s), ok: false, detail: "exit code 255: UnauthorizedOperation" })],
    ]);
    expect(r.effects.at(-1)).toEqual(["save", "restore"]);
    expect(r.d.drains[0]).toMatchObject({ status: "failed", error: "exit code 255: UnauthorizedOperation" });
    expect(r.d.backoff.down).toEqual({ failures: 1, until: T0 + 62_000 });
    expect(r.d.lastScaleDownAt).toBeUndefined();
    expect(excludedNames(r.d).size).toBe(0);
  });

  test("a restart while draining drains again; a restart while terminating never runs the command again", () => {
    const draining = run([[0, down(1)]]);
    expect(run([[5, { type: "start", hosts: [] }]], initialState(structuredClone(draining.d))).effects).toEqual([["drain"]]);
    const terminating = run([
      [0, down(1)],
      [30, tick(30, three)],
      [31, (now, s) => ({ type: "removed_from_config", id: drainId(now, s), confirmed: true })],
    ]);
    const r = run([[40, { type: "start", hosts: [] }]], initialState(structuredClone(terminating.d)));
    expect(r.effects).toEqual([["remove_host", "save"]]);
    expect(r.d.drains[0]).toMatchObject({ status: "done", note: expect.stringMatching(/not run again/) });
  });

  test("manual scale-down never goes below min_nodes and never takes a hand-added host", () => {
    const nodes = (now: number) => [node("m", 10, now, { removable: false }), node("a", 10, now)];
    const r = run([[0, (now) => ({ type: "scale_down", count: 5, nodes: nodes(now) })]], initialState(), { ...policy, minNodes: 1 });
    expect(r.d.drains.map((d) => d.node)).toEqual(["a"]);
    const none = run([
      [0, (now) => ({ type: "scale_down", count: 1, nodes: [node("m", 10, now, { removable: false }), node("x", 10, now, { removable: false })] })],
    ]);
    expect(none.d.drains).toEqual([]);
  });
});

describe("automatic scale-down in target mode", () => {
  test("held for the whole scale_down_window, then down to its highest recommendation", () => {
    const names = ["a", "b", "c", "d"];
    const steps: Step[] = [];
    for (let s = 0; s <= 300; s += 10) steps.push([s, tick(10, names)]);
    const r = run(steps);
    const firstDown = r.effects.findIndex((e) => e.includes("drain"));
    expect(steps[firstDown]![0]).toBe(300);
    expect(r.d.drains.map((d) => d.node)).toEqual(["a", "b"]);
  });
});

describe("pause and the operator's commands", () => {
  test("pause is saved; a paused tick does nothing; manual scale-up still launches; resume is saved", () => {
    const r = run([
      [0, { type: "pause" }],
      [1, tick(100, ["a", "b"])],
      [2, (now) => ({ type: "scale_up", count: 2, nodes: fleet(100, ["a", "b"])(now) })],
      [3, { type: "resume" }],
    ]);
    expect(r.effects).toEqual([["save"], [], ["save", "launch"], ["save"]]);
    expect(r.d.paused).toBe(false);
    expect(r.d.launches[0]).toMatchObject({ manual: true, count: 2 });
  });

  test("manual scale-up is capped by max_nodes, counting pending launches, and says why", () => {
    const first = run([[0, (now) => ({ type: "scale_up", count: 20, nodes: fleet(10, ["a", "b"])(now) })]]);
    expect(first.d.launches[0]!.count).toBe(8);
    const r = step(first.state, { type: "scale_up", count: 1, nodes: fleet(10, ["a", "b"])(T0 + 1000) }, policy, T0 + 1000);
    expect(r.reply).toEqual({ ok: false, error: "cannot scale up: capped 1 → 0 by max_nodes (10 of 10 backends or pending)" });
    expect(r.effects).toEqual([]);
  });

  test("without a scale_up_command a manual scale-up is refused and nothing is saved", () => {
    const r = step(initialState(emptyState()), { type: "scale_up", count: 1, nodes: [] }, { ...policy, scaleUpEnabled: false }, T0);
    expect(r).toMatchObject({ effects: [], reply: { ok: false, error: expect.stringMatching(/no \[machine\] scale_up_command/) } });
  });
});

test("the same inputs give the same outputs (no clock, no randomness inside)", () => {
  const a = run([[0, tick(100, ["a", "b"])]]);
  const b = run([[0, tick(100, ["a", "b"])]]);
  expect(a.state).toEqual(b.state);
  expect(a.all).toEqual(b.all);
});

test("an agent that said hello but is not in hosts.d yet is not counted twice while the launch it will claim still waits", () => {
  const first = run(
    [
      [0, tick(100, ["a", "b"])],
      [1, launched(true)],
    ],
    initialState(),
    { ...policy, maxNodes: 4 },
  );
  expect(first.d.launches[0]).toMatchObject({ status: "pending", count: 2 });
  // "c" registered, its entry not written yet, and it has not claimed the launch: 2 nodes + c + 2 pending would be 5 > max 4.
  const nodes = (now: number) => [...fleet(100, ["a", "b"])(now), node("c", 0, now, { registering: true, firstSeenAt: now })];
  const r = step(first.state, { type: "scale_up", count: 1, nodes: nodes(T0 + 2000) }, { ...policy, maxNodes: 4 }, T0 + 2000);
  expect(r.reply).toEqual({ ok: false, error: "cannot scale up: capped 1 → 0 by max_nodes (4 of 4 backends or pending)" });
});

describe("which hosts.d entries a finished scale-down removes (removedByDrains)", () => {
  const end = T0;
  const drain: DrainRecord = {
    id: "drain-1",
    node: "web-1",
    instanceId: "",
    reportedInstanceId: "i-1",
    address: "10.0.0.1",
    decidedAt: end - 2_000,
    drainUntil: end - 1_000,
    status: "done",
    reason: "manual scale-down of 1",
    manual: true,
    finishedAt: end,
  };
  const at = (ms: number) => new Date(end + ms).toISOString();
  const entry = (addedMs: number, extra: Partial<HostRef> = {}): HostRef => ({
    name: "web-1",
    address: "10.0.0.1",
    source: "agent",
    addedAt: at(addedMs),
    instanceId: "i-1",
    ...extra,
  });
  const launch = (decidedAt: number, nodes: string[]): LaunchRecord => ({
    id: "launch-2",
    decidedAt,
    count: 1,
    reason: "manual scale-up of 1",
    status: "done",
    instances: [],
    nodes,
    manual: true,
    finishedAt: decidedAt + 1_000,
  });
  const state = (drainedId: string, launches: LaunchRecord[] = []) => ({ ...emptyState(), drains: [{ ...drain, instanceId: drainedId }], launches });
  // The drain's instance id: "i-1" when a launch's output vouched for it, "" when it was only the node's own word.
  test.each([
    ["an entry older than the drain's end", "", entry(-60_000), [], true],
    ["the same node registered again 2 s after, by a master that had not read the drain yet (by name and address)", "", entry(2_000), [], true],
    ["the same node registered again 2 s after (by instance id)", "i-1", entry(2_000), [], true],
    ["a new instance that took the name and address (hostname names), known by its own id", "i-1", entry(2_000, { instanceId: "i-2" }), [], false],
    ["a node of that name at another address, the drain knowing no id", "", entry(2_000, { address: "10.0.0.7" }), [], false],
    ["the same node, once a later launch claimed it (a warm pool brought it back)", "i-1", entry(5_000), [launch(end + 3_000, ["web-1"])], false],
    ["the same node, registered after forget_after", "", entry(policy.forgetAfterMs + 1_000), [], false],
    ["a hand-added host of that name, older than the drain", "", entry(-60_000, { source: "manual" }), [], false],
  ] as const)("%s: removed %s", (_what, drainedId, host, launches, removed) => {
    expect(removedByDrains(state(drainedId, [...launches]), [host], policy)).toEqual(removed ? ["web-1"] : []);
  });
});

describe("fleet operations: terminate one node, a node's leave, teardown", () => {
  const three = ["a", "b", "c"];
  const launchedFleet = (now: number, names = three, extra: Partial<NodeObservation> = {}) => names.map((n) => node(n, 30, now, { launched: true, ...extra }));
  const replyOf = (s: ScalerState, e: ScalerEvent, now: number, p: ScalingPolicy = policy) => step(s, e, p, now);

  test("terminate by name: recorded (saved) before the drain, drained for drain_seconds, then the usual terminate", () => {
    const r = run([
      [0, (now) => ({ type: "terminate_node", target: "b", drain: true, force: false, nodes: fleet(30, three)(now) })],
      [30, tick(30, three)],
      [31, (_now, s) => ({ type: "removed_from_config", id: lastId(s, "drain"), confirmed: true })],
      [32, (_now, s) => ({ type: "terminate_finished", id: lastId(s, "drain"), ok: true, detail: "" })],
    ]);
    expect(r.effects).toEqual([["save", "drain"], ["remove_from_config"], ["save", "terminate"], ["remove_host", "save"]]);
    expect(r.d.drains[0]).toMatchObject({ node: "b", instanceId: "i-b", manual: true, status: "done", reason: "autoscaler terminate b" });
  });

  test("terminate by instance id, --no-drain: out of the config at the next tick; naming an id only the node reported is the operator's say-so for it", () => {
    const own = (now: number) => three.map((n) => node(n, 30, now, { instanceId: undefined, reportedInstanceId: `i-own-${n}` }));
    const r = run([
      [0, (now) => ({ type: "terminate_node", target: "i-own-c", drain: false, force: false, nodes: own(now) })],
      [1, (now) => ({ type: "tick", nodes: own(now) })],
      [2, (_now, s) => ({ type: "removed_from_config", id: lastId(s, "drain"), confirmed: true })],
    ]);
    expect(r.effects).toEqual([["save", "drain"], ["remove_from_config"], ["save", "terminate"]]);
    expect(r.d.drains[0]).toMatchObject({ node: "c", instanceId: "i-own-c", drainUntil: T0 });
    expect(r.all.find((e) => e.kind === "terminate")).toMatchObject({ node: "c", instanceId: "i-own-c" });
  });

  test("terminate refuses: an unknown name, a hand-added host, a node already leaving, min_nodes unless --force; nothing is saved", () => {
    const nodes = (now: number) => [node("m", 10, now, { removable: false }), node("a", 10, now)];
    const at = (target: string, force = false, s = initialState()) =>
      replyOf(s, { type: "terminate_node", target, drain: true, force, nodes: nodes(T0) }, T0, { ...policy, minNodes: 2 });
    for (const [target, error] of [
      ["nope", /unknown node or instance id "nope"/],
      ["m", /m is a hand-added host.*autoscaler remove-host m/],
      ["a", /already at min_nodes \(2\); --force/],
    ] as const) {
      const r = at(target);
      expect(r.reply).toMatchObject({ ok: false, error: expect.stringMatching(error) });
      expect(r.effects).toEqual([]);
    }
    const forced = at("a", true);
    expect(forced.reply).toMatchObject({ ok: true, value: { node: "a" } });
    expect(at("a", true, forced.state).reply).toMatchObject({ ok: false, error: expect.stringMatching(/already being drained/) });
  });

  test("a node's leave is a scale-down of that node alone; at min_nodes it still goes, and the next tick launches its replacement", () => {
    const one = (now: number) => [node("a", 30, now)];
    const p = { ...policy, minNodes: 1 };
    const r = run(
      [
        [0, (now) => ({ type: "node_leave", node: "a", nodes: one(now) })],
        [1, (now) => ({ type: "tick", nodes: one(now) })],
      ],
      initialState(),
      p,
    );
    expect(r.effects).toEqual([
      ["save", "drain"],
      ["save", "launch"],
    ]);
    expect(r.d.drains[0]).toMatchObject({ node: "a", reason: "a asked to leave", manual: false });
    expect(r.d.launches[0]!.reason).toMatch(/below min_nodes/);
  });

  test("a leave names no one: an unknown or hand-added name is refused and logged; a second leave of a leaving node changes nothing", () => {
    const nodes = (now: number) => [node("m", 10, now, { removable: false }), node("a", 10, now)];
    expect(replyOf(initialState(), { type: "node_leave", node: "ghost", nodes: nodes(T0) }, T0).reply).toMatchObject({ ok: false });
    const manual = replyOf(initialState(), { type: "node_leave", node: "m", nodes: nodes(T0) }, T0);
    expect(manual.reply).toMatchObject({ ok: false, error: "it is a hand-added host" });
    expect(manual.effects).toEqual([expect.objectContaining({ kind: "log", event: "leave_refused" })]);
    const first = replyOf(initialState(), { type: "node_leave", node: "a", nodes: nodes(T0) }, T0);
    const again = replyOf(first.state, { type: "node_leave", node: "a", nodes: nodes(T0 + 1000) }, T0 + 1000);
    expect(again.effects).toEqual([]);
    expect(again.state.durable.drains).toHaveLength(1);
  });

  test("teardown: paused and recorded with the drains of launched nodes only (min_nodes aside); a launched node that registers later is drained at the next tick; resume ends it", () => {
    const mixed = (now: number) => [...launchedFleet(now, ["a", "b"]), node("agent-1", 10, now), node("m", 10, now, { removable: false })];
    const withLate = (now: number) => [...mixed(now), node("late", 10, now, { launched: true })];
    const r = run(
      [
        [0, (now) => ({ type: "teardown", nodes: mixed(now) })],
        [1, (now) => ({ type: "tick", nodes: withLate(now) })],
        [2, (now) => ({ type: "tick", nodes: withLate(now) })],
      ],
      initialState(),
      { ...policy, minNodes: 3 },
    );
    expect(r.effects[0]).toEqual(["save", "drain", "drain"]);
    expect(r.effects[1]).toEqual(["save", "drain"]);
    expect(r.effects[2]).toEqual([]);
    expect(r.d.paused).toBe(true);
    expect(r.d.teardown).toEqual({ at: T0 });
    expect(r.d.drains.map((d) => d.node)).toEqual(["a", "b", "late"]);
    // Paused: below min_nodes launches nothing.
    expect(r.d.launches).toEqual([]);
    const resumed = step(r.state, { type: "resume" }, policy, T0 + 3000);
    expect(resumed.state.durable.teardown).toBeUndefined();
    expect(resumed.state.durable.paused).toBe(false);
  });

  test("teardown survives a restart: a terminate that was running is not run again, a drain goes on, and the teardown still holds", () => {
    const two = (now: number) => launchedFleet(now, ["a", "b"]);
    const before = run([
      [0, (now) => ({ type: "teardown", nodes: two(now) })],
      [30, (now) => ({ type: "tick", nodes: two(now) })],
      [31, (_now, s) => ({ type: "removed_from_config", id: s.durable.drains[0]!.id, confirmed: true })],
    ]);
    expect(before.d.drains.map((d) => d.status)).toEqual(["terminating", "draining"]);
    const after = run([[40, { type: "start", hosts: [] }]], initialState(structuredClone(before.d)));
    expect(after.d.drains.map((d) => d.status)).toEqual(["done", "draining"]);
    expect(after.all.filter((e) => e.kind === "terminate")).toEqual([]);
    expect(after.d.teardown).toEqual({ at: T0 });
    // A second teardown (the CLI run again) drains nothing twice.
    const again = step(after.state, { type: "teardown", nodes: two(T0 + 41_000).filter((n) => n.name === "b") }, policy, T0 + 41_000);
    expect(again.effects.filter((e) => e.kind === "drain")).toEqual([]);
    expect(again.reply).toMatchObject({ ok: true, value: { draining: [] } });
  });

  test("teardown without a scale_down_command is refused and changes nothing", () => {
    const r = replyOf(initialState(), { type: "teardown", nodes: launchedFleet(T0) }, T0, { ...policy, scaleDownEnabled: false });
    expect(r.reply).toMatchObject({ ok: false });
    expect(r.state.durable.paused).toBe(false);
  });
});

describe("resources mode on the fake clock", () => {
  const resources = policyFromConfig(
    parseConfig(
      "[machine]\nscale_up_command = launch\nscale_down_command = terminate\n[scaling]\nmode = resources\nmin_available = 10\nnode_capacity = 8\n",
      "/x/autoscaler.ini",
    ).config!,
  );
  const withFree = (free: Record<string, number>) => (now: number) =>
    Object.entries(free).map(([name, units]) => {
      const n = node(name, 20, now);
      return { ...n, readings: n.readings.map((r) => ({ ...r, available: units })) };
    });
  const at =
    (free: Record<string, number>): Step[1] =>
    (now) => ({ type: "tick", nodes: withFree(free)(now) });

  test("a deficit launches ceil(deficit / node_capacity), recorded first; while it boots it counts at node_capacity and nothing more launches", () => {
    const r = run(
      [
        [0, at({ a: 1, b: 2 })],
        [1, launched(true)],
        [5, at({ a: 1, b: 2 })],
        [40, at({ a: 0, b: 0 })],
      ],
      initialState(),
      resources,
    );
    expect(r.effects[0]).toEqual(["save", "launch"]);
    expect(r.d.launches[0]).toMatchObject({ count: 1, reason: expect.stringMatching(/3 free < min_available 10: ceil\(7 \/ 8 per node\)/) });
    expect(r.effects[2]).toEqual([]);
    // Later everything is taken: the booting node's 8 units do not cover 10, so ceil(2 / 8) = 1 more (after the 30 s up-cooldown).
    expect(r.effects[3]).toEqual(["save", "launch"]);
    expect(r.d.launches.map((l) => l.count)).toEqual([1, 1]);
  });

  test("plenty free: a scale-down only after the whole scale_down_window, and only of a node whose removal keeps min_available", () => {
    const plenty = { a: 8, b: 8, c: 8 };
    const r = run(
      [
        [0, at(plenty)],
        [150, at(plenty)],
        [299, at(plenty)],
        [301, at(plenty)],
      ],
      initialState(),
      resources,
    );
    expect(r.effects.slice(0, 3)).toEqual([[], [], []]);
    expect(r.effects[3]).toEqual(["save", "drain"]);
    expect(r.d.drains.map((d) => d.node)).toEqual(["a"]);
  });
});
