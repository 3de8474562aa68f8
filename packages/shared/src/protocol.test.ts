import { describe, expect, test } from "vitest";
import { decodeAgentMessage, sampleSchema } from "./agent-messages.js";
import { MAX_LINE_BYTES, PROTOCOL_VERSION, createLineSplitter, decodeMasterMessage, encodeMessage, type HelloMessage } from "./protocol.js";

const hello: HelloMessage = {
  type: "hello",
  version: PROTOCOL_VERSION,
  token: "s3cret-token-value-0123456789",
  name: "web-1",
  address: "10.0.0.5",
  port: 8080,
  instance_id: "i-0abc123",
  agent_version: "0.1.0",
  facts: { cores: 2, memory_bytes: 4_000_000_000 },
};

describe("decodeAgentMessage", () => {
  test("a valid hello and a valid sample round-trip through encodeMessage", () => {
    const sample = { type: "sample" as const, time: 1_700_000_000_000, cpu: 42.5, load: [0.1, 0.2, 0.3] };
    expect(decodeAgentMessage(encodeMessage(hello).trim())).toEqual({ ok: true, message: hello });
    expect(decodeAgentMessage(encodeMessage(sample).trim())).toEqual({ ok: true, message: sample });
  });

  test.each([
    ["bad JSON", "{not json", /bad JSON/],
    ["an unknown type", JSON.stringify({ type: "shell", cmd: "rm -rf /" }), /wrong shape/],
    ["a name with a path separator", JSON.stringify({ ...hello, name: "../etc" }), /wrong shape: name/],
    ["an address with a newline", JSON.stringify({ ...hello, address: "10.0.0.5\nserver evil 1.2.3.4:80" }), /wrong shape: address/],
    ["port 0", JSON.stringify({ ...hello, port: 0 }), /wrong shape: port/],
    ["an instance id with a space", JSON.stringify({ ...hello, instance_id: "i-1; reboot" }), /wrong shape: instance_id/],
    ["an extra field", JSON.stringify({ ...hello, admin: true }), /wrong shape/],
    ["CPU over 100", JSON.stringify({ type: "sample", time: 1, cpu: 101 }), /wrong shape: cpu/],
    ["CPU as a string", JSON.stringify({ type: "sample", time: 1, cpu: "50" }), /wrong shape: cpu/],
    ["a JSON array", "[1,2,3]", /wrong shape/],
    ["a leave that names a node (a node may ask only for itself)", JSON.stringify({ type: "leave", name: "web-2" }), /wrong shape/],
    ["negative free units", JSON.stringify({ type: "sample", time: 1, cpu: 5, available: -1 }), /wrong shape: available/],
    ["free units as a string", JSON.stringify({ type: "sample", time: 1, cpu: 5, available: "4" }), /wrong shape: available/],
  ])("refuses %s with a reason", (_name, line, reason) => {
    const decoded = decodeAgentMessage(line);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.reason).toMatch(reason);
  });

  test("a leave names nothing; a sample may carry the node's free resource units", () => {
    expect(decodeAgentMessage('{"type":"leave"}')).toEqual({ ok: true, message: { type: "leave" } });
    const sample = { type: "sample" as const, time: 1, cpu: 5, healthy: true, available: 2.5 };
    expect(decodeAgentMessage(JSON.stringify(sample))).toEqual({ ok: true, message: sample });
  });

  test("a refusal reason never echoes the token", () => {
    const decoded = decodeAgentMessage(JSON.stringify({ ...hello, port: "eighty" }));
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.reason).not.toContain(hello.token);
  });
});

test("decodeMasterMessage accepts welcome and error", () => {
  expect(decodeMasterMessage(JSON.stringify({ type: "welcome", version: 1, role: "decider", master_version: "0.1.0" }))).toEqual({
    ok: true,
    message: { type: "welcome", version: 1, role: "decider", master_version: "0.1.0" },
  });
  expect(decodeMasterMessage(JSON.stringify({ type: "error", code: "AUTH", message: "token refused" })).ok).toBe(true);
});

test.each([
  ["an unknown role", { type: "welcome", version: 1, role: "boss", master_version: "0.1.0" }],
  ["a missing field", { type: "welcome", version: 1, role: "decider" }],
  ["an extra field", { type: "welcome", version: 1, role: "decider", master_version: "0.1.0", exec: "x" }],
  ["a version that is not a whole number", { type: "welcome", version: 1.5, role: "decider", master_version: "0.1.0" }],
  ["an error message over 1 KiB", { type: "error", code: "X", message: "m".repeat(1025) }],
  ["an unknown type", { type: "command", run: "reboot" }],
  ["an array", [1, 2]],
  ["null", null],
])("decodeMasterMessage refuses %s", (_what, value) => {
  expect(decodeMasterMessage(JSON.stringify(value)).ok).toBe(false);
});

test("decodeMasterMessage refuses bad JSON", () => {
  expect(decodeMasterMessage("{nope")).toEqual({ ok: false, reason: "bad JSON" });
});

describe("createLineSplitter", () => {
  test("joins lines split across chunks and splits lines sharing a chunk", () => {
    const s = createLineSplitter();
    expect(s.push(Buffer.from('{"a":1}\n{"b"'))).toEqual({ lines: ['{"a":1}'], tooLong: false });
    expect(s.push(Buffer.from(':2}\r\n\n{"c":3}\n'))).toEqual({ lines: ['{"b":2}', '{"c":3}'], tooLong: false });
  });

  test("a line over the limit is refused as soon as the limit is passed, without a newline in sight", () => {
    const s = createLineSplitter(MAX_LINE_BYTES);
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    const results = [1, 2, 3, 4, 5].map(() => s.push(chunk));
    expect(results.slice(0, 4).every((r) => !r.tooLong)).toBe(true);
    expect(results[4]!.tooLong).toBe(true);
    expect(s.push(Buffer.from("\n")).tooLong).toBe(true); // stays refused
  });

  test("a line of exactly the limit is accepted", () => {
    const s = createLineSplitter(10);
    expect(s.push(Buffer.from("0123456789\n"))).toEqual({ lines: ["0123456789"], tooLong: false });
    expect(s.push(Buffer.from("0123456789A\n")).tooLong).toBe(true);
  });
});

describe("the sample fast path agrees with sampleSchema", () => {
  test.each([
    ['{"type":"sample","time":1,"cpu":12.5}'],
    ['{"type":"sample","time":1,"cpu":0,"healthy":false}'],
    ['{"type":"sample","time":1,"cpu":100}'],
    ['{"type":"sample","time":1,"cpu":100.5}'],
    ['{"type":"sample","time":1,"cpu":-1}'],
    ['{"type":"sample","time":1.5,"cpu":1}'],
    ['{"type":"sample","time":-1,"cpu":1}'],
    ['{"type":"sample","time":1e300,"cpu":1}'],
    ['{"type":"sample","time":1,"cpu":"1"}'],
    ['{"type":"sample","time":1,"cpu":1,"healthy":"yes"}'],
    ['{"type":"sample","time":1,"cpu":1,"extra":1}'],
    ['{"type":"sample","time":1}'],
    ['{"type":"sample","time":1,"cpu":1,"__proto__":{"x":1}}'],
    ['{"type":"sample","time":1,"cpu":1,"load":[0.1,0.2,0.3]}'],
  ])("%s", (line) => {
    const decoded = decodeAgentMessage(line);
    expect(decoded.ok).toBe(sampleSchema.safeParse(JSON.parse(line)).success);
  });
});
