import { describe, expect, test } from "vitest";
import { PROTOCOL_VERSION, type HelloMessage } from "@autoscaler/shared/protocol";
import { createRegistry } from "./registry.js";

const hello = (name: string, address = "10.0.0.5", port = 80): HelloMessage => ({
  type: "hello",
  version: PROTOCOL_VERSION,
  token: "t".repeat(32),
  name,
  address,
  port,
  agent_version: "0.1.0",
  facts: { cores: 2, memory_bytes: 1 },
});
const sample = (cpu: number) => ({ type: "sample" as const, time: 0, cpu });

function make(manual: string[] = []) {
  return createRegistry({ nodeTimeoutMs: 30_000, forgetAfterMs: 600_000, keepMs: 60_000, isManual: (n) => manual.includes(n) });
}

describe("registration", () => {
  test("a first hello registers a new live node", () => {
    const r = make();
    const res = r.register(hello("web-1"), 1000, "node");
    expect(res).toMatchObject({ ok: true, isNew: true });
    expect(r.stateOf(r.get("web-1")!, 1000)).toBe("live");
  });

  test("a hello claiming a live node's name from another address is refused and changes nothing", () => {
    const r = make();
    r.register(hello("web-1", "10.0.0.5"), 1000, "node");
    const res = r.register(hello("web-1", "10.0.0.99"), 2000, "node");
    expect(res).toMatchObject({ ok: false, reason: "NAME_TAKEN" });
    expect(r.get("web-1")!.address).toBe("10.0.0.5");
  });

  test("the name of an unreachable node may be taken by a new address", () => {
    const r = make();
    r.register(hello("web-1", "10.0.0.5"), 0, "node");
    expect(r.register(hello("web-1", "10.0.0.6"), 31_000, "node")).toMatchObject({ ok: true, isNew: true });
  });

  test("a hello with the name of a hand-added host is refused", () => {
    const r = make(["db-proxy"]);
    expect(r.register(hello("db-proxy"), 0, "node")).toMatchObject({ ok: false, reason: "NAME_MANUAL" });
    expect(r.list()).toEqual([]);
  });

  test("a reconnect from the same address keeps the history and is not new", () => {
    const r = make();
    r.register(hello("web-1"), 0, "node");
    r.recordSample("web-1", sample(50), 1000);
    const res = r.register(hello("web-1"), 2000, "node");
    expect(res).toMatchObject({ ok: true, isNew: false });
    expect(r.get("web-1")!.readings).toHaveLength(1);
    expect(r.get("web-1")!.firstSeenAt).toBe(0);
  });
});

describe("liveness", () => {
  test("live until node_timeout passes without a sample, then unreachable, then forgotten after forget_after", () => {
    const r = make();
    r.register(hello("web-1"), 0, "node");
    r.recordSample("web-1", sample(10), 10_000);
    const rec = r.get("web-1")!;
    expect(r.stateOf(rec, 40_000)).toBe("live");
    expect(r.stateOf(rec, 40_001)).toBe("unreachable");
    expect(r.sweep(610_000)).toEqual([]);
    expect(r.sweep(610_001).map((n) => n.name)).toEqual(["web-1"]);
    expect(r.get("web-1")).toBeUndefined();
  });

  test("a flood is bounded: a sample less than 250 ms after the last kept one is dropped, and the node stays live", () => {
    const r = make();
    r.register(hello("web-1"), 0, "node");
    let kept = 0;
    // 1,000,000 samples in 100 s: 10,000 a second.
    for (let i = 0; i < 1_000_000; i++) if (r.recordSample("web-1", sample(99), i / 10)) kept++;
    expect(kept).toBe(400);
    const rec = r.get("web-1")!;
    expect(rec.readings.length).toBeLessThanOrEqual(60_000 / 250 + 1);
    expect(rec.lastSeenAt).toBe(99_999.9);
    expect(r.recordSample("nobody", sample(1), 0)).toBe(false);
  });

  test("readings older than the kept history are dropped", () => {
    const r = make();
    r.register(hello("web-1"), 0, "node");
    for (let t = 0; t <= 120_000; t += 10_000) r.recordSample("web-1", sample(t / 2000), t);
    expect(r.get("web-1")!.readings.map((x) => x.at)).toEqual([60_000, 70_000, 80_000, 90_000, 100_000, 110_000, 120_000]);
  });
});
