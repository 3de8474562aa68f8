import { describe, expect, test } from "vitest";
import type { Instance } from "@autoscaler/master";
import { formatInstances, teardownLeft, type FleetAnswer } from "./fleet.js";

const instance = (over: Partial<Instance>): Instance => ({
  name: "web-1",
  address: "10.0.1.11",
  port: 80,
  instance_id: "i-1",
  instance_id_trusted: true,
  source: "launched",
  state: "active",
  launch: "launch-a",
  since: "2026-12-05T08:00:00.000Z",
  age_seconds: 600,
  last_sample: { seconds_ago: 0.5, cpu: 41.5, available: null },
  ...over,
});
const drain = (over: Partial<FleetAnswer["drains"][number]>): FleetAnswer["drains"][number] => ({
  id: "d",
  node: "web-1",
  instance_id: "i-1",
  status: "done",
  decided_at: "2026-12-05T09:00:01.000Z",
  drain_until: "2026-12-05T09:00:31.000Z",
  finished_at: null,
  manual: true,
  reason: "teardown",
  note: null,
  error: null,
  ...over,
});

test("instances render as a table: an id only the node reported says so, a node with none says none (a hand-added one: -), an awaited launch has no name", () => {
  const text = formatInstances([
    instance({}),
    instance({ name: "web-2", instance_id: "i-2", instance_id_trusted: false, source: "agent", launch: null, last_sample: null }),
    instance({ name: null, address: "10.0.1.23", port: null, instance_id: "i-3", source: "launch", state: "pending", age_seconds: 20, last_sample: null }),
    instance({ name: "web-4", instance_id: null, instance_id_trusted: false, source: "agent", launch: null, last_sample: null }),
    instance({ name: "static-1", instance_id: null, instance_id_trusted: false, source: "manual", launch: null, last_sample: null }),
  ]);
  expect(text.split("\n")).toEqual([
    "NAME       ADDRESS    PORT  INSTANCE        SOURCE    STATE    LAUNCH    AGE  LAST SAMPLE",
    "web-1      10.0.1.11  80    i-1             launched  active   launch-a  10m  0.5s ago, cpu 41.5%",
    "web-2      10.0.1.11  80    i-2 (own word)  agent     active   -         10m  -",
    "(awaited)  10.0.1.23  -     i-3             launch    pending  launch-a  20s  -",
    "web-4      10.0.1.11  80    none            agent     active   -         10m  -",
    "static-1   10.0.1.11  80    -               manual    active   -         10m  -",
    "",
  ]);
  expect(formatInstances([])).toBe("no nodes and no pending launches\n");
});

describe("what a teardown leaves, and why", () => {
  const since = { since: "2026-12-05T09:00:00.000Z" };
  test.each<[string, Partial<Instance>, FleetAnswer["drains"], RegExp | undefined]>([
    ["draining", { state: "draining" }, [drain({ status: "draining" })], /draining until 2026-12-05T09:00:31/],
    ["terminating", { state: "terminating" }, [drain({ status: "terminating" })], /its terminate command is running/],
    ["a failed terminate", { state: "active" }, [drain({ status: "failed", error: "exit code 255" })], /its terminate failed \(exit code 255\)/],
    ["a launch still waiting", { name: null, source: "launch", state: "pending" }, [], /launch launch-a still waits for it/],
    ["a hand-added host is never left over", { source: "manual" }, [], undefined],
    ["nor an agent that registered on its own", { source: "agent" }, [], undefined],
  ])("%s", (_what, over, drains, why) => {
    const left = teardownLeft({ instances: [instance(over)], paused: true, teardown: since, drains });
    if (why === undefined) expect(left).toEqual([]);
    else expect(left).toEqual([{ name: expect.any(String), why: expect.stringMatching(why) }]);
  });

  test("a node removed without a terminate (its id was only its own word) is left: the instance may still run", () => {
    const left = teardownLeft({
      instances: [],
      paused: true,
      teardown: since,
      drains: [drain({ note: "terminate skipped: the instance id was only the node's own" })],
    });
    expect(left).toEqual([
      { name: "web-1", why: "taken out of service and removed, but not terminated: the instance id was only the node's own; stop it in the cloud" },
    ]);
  });
});
