import { describe, expect, test } from "vitest";
import { buildInstances, buildInventory, renderInventoryIni } from "./fleet.js";
import type { MasterStatus, NodeStatus } from "./status.js";

const NOW = Date.UTC(2026, 11, 5, 9, 0, 0);
const iso = (msAgo: number) => new Date(NOW - msAgo).toISOString();
const node = (name: string, over: Partial<NodeStatus> = {}): NodeStatus => ({
  name,
  address: "10.0.1.1",
  port: 80,
  source: "launched",
  state: "live",
  healthy: true,
  cpu_now: 12.5,
  cpu_window: 10,
  samples_in_window: 3,
  last_seen_seconds_ago: 0.4,
  connections: 1,
  instance_id: `i-${name}`,
  instance_id_trusted: true,
  credential: "node",
  added_at: iso(90_000),
  available_now: null,
  ...over,
});
const status = (nodes: NodeStatus[], extra: Partial<MasterStatus> = {}): MasterStatus =>
  ({ nodes, launches: [], drains: [], teardown: null, paused: false, ...extra }) as unknown as MasterStatus;
const launch = (id: string, over: Partial<MasterStatus["launches"][number]>): MasterStatus["launches"][number] => ({
  id,
  status: "pending",
  count: 1,
  nodes: [],
  instances: [],
  expected: [],
  decided_at: iso(30_000),
  finished_at: null,
  manual: false,
  reason: "",
  note: null,
  error: null,
  ...over,
});

describe("buildInstances", () => {
  test("nodes with their state, launch and age; drains name draining and terminating; a hand-added host is active", () => {
    const s = status(
      [
        node("web-1", { address: "10.0.1.11" }),
        node("web-2", { address: "10.0.1.12" }),
        node("web-3", { address: "10.0.1.13", state: "unreachable", last_seen_seconds_ago: 45 }),
        node("m", {
          source: "manual",
          state: "configured",
          credential: "operator",
          instance_id: null,
          instance_id_trusted: false,
          last_seen_seconds_ago: null,
        }),
      ],
      {
        drains: [
          { id: "d1", node: "web-2", instance_id: "i-web-2", status: "terminating" } as MasterStatus["drains"][number],
          { id: "d0", node: "web-1", instance_id: "i-web-1", status: "failed" } as MasterStatus["drains"][number],
        ],
      },
    );
    const list = buildInstances(s, { "web-1": "launch-a" }, NOW);
    expect(list.map((i) => [i.name, i.state, i.launch, i.age_seconds])).toEqual([
      ["web-1", "active", "launch-a", 90],
      ["web-2", "terminating", null, 90],
      ["web-3", "unreachable", null, 90],
      ["m", "active", null, 90],
    ]);
    expect(list[0]!.last_sample).toEqual({ seconds_ago: 0.4, cpu: 12.5, available: null });
    expect(list[3]!.last_sample).toBeNull();
  });

  test("pending launches: each printed instance not yet registered, with its private address; a launch that printed none, one slot per node it waits for", () => {
    const s = status([node("web-1", { address: "10.0.1.11", instance_id: "i-1" })], {
      launches: [
        launch("launch-a", {
          count: 2,
          nodes: ["web-1"],
          expected: [
            { instance_id: "i-1", private_address: "10.0.1.11" },
            { instance_id: "i-2", private_address: "10.0.1.12" },
          ],
        }),
        launch("launch-b", { count: 2, status: "running" }),
        launch("launch-c", { status: "failed", expected: [{ instance_id: "i-9", private_address: null }] }),
      ],
    });
    const pending = buildInstances(s, {}, NOW).filter((i) => i.state === "pending");
    expect(pending.map((i) => [i.launch, i.instance_id, i.address, i.source])).toEqual([
      ["launch-a", "i-2", "10.0.1.12", "launch"],
      ["launch-b", null, null, "launch"],
      ["launch-b", null, null, "launch"],
    ]);
  });
});

describe("the Ansible inventory", () => {
  const list = buildInstances(
    status([
      node("web-1", { address: "10.0.1.11" }),
      node("m", { source: "manual", state: "configured", address: "10.0.0.5", port: 8080, instance_id: null, instance_id_trusted: false }),
    ]),
    {},
    NOW,
  );

  test("--list: _meta.hostvars with address, port, instance id, source and state; groups by source and state; pending launches have no host", () => {
    const inv = buildInventory([...list, { ...list[0]!, name: null, source: "launch", state: "pending" }]);
    expect(inv._meta.hostvars["web-1"]).toEqual({
      ansible_host: "10.0.1.11",
      autoscaler_address: "10.0.1.11",
      autoscaler_port: 80,
      autoscaler_instance_id: "i-web-1",
      autoscaler_source: "launched",
      autoscaler_state: "active",
    });
    expect(inv.autoscaler).toEqual({ hosts: ["web-1", "m"] });
    expect(inv.source_launched).toEqual({ hosts: ["web-1"] });
    expect(inv.source_manual).toEqual({ hosts: ["m"] });
    expect(inv.state_active).toEqual({ hosts: ["web-1", "m"] });
    expect(inv.all).toEqual({ children: ["ungrouped", "autoscaler", "source_launched", "source_manual", "state_active"] });
  });

  test("--format ini: the vars on each host's line under [autoscaler], the other groups by name", () => {
    expect(renderInventoryIni(buildInventory(list))).toBe(
      [
        "# Generated by autoscaler inventory --format ini",
        "",
        "[autoscaler]",
        "web-1 ansible_host=10.0.1.11 autoscaler_address=10.0.1.11 autoscaler_port=80 autoscaler_instance_id=i-web-1 autoscaler_source=launched autoscaler_state=active",
        "m ansible_host=10.0.0.5 autoscaler_address=10.0.0.5 autoscaler_port=8080 autoscaler_source=manual autoscaler_state=active",
        "",
        "[source_launched]",
        "web-1",
        "",
        "[source_manual]",
        "m",
        "",
        "[state_active]",
        "web-1",
        "m",
        "",
      ].join("\n"),
    );
  });
});
