/**
 * The agent's messages as the master validates them (zod): `hello`, `sample` and `leave`. Imported
 * from "@autoscaler/shared/agent-messages" by the master only, so agents never load zod.
 */
import { z } from "zod";
import type { Decoded } from "./protocol.js";
import { checkHost, checkName } from "./validate.js";

const name = z
  .string()
  .refine((v) => checkName(v) === undefined, { message: "expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'" });
const host = z.string().refine((v) => checkHost(v) === undefined, { message: "expected an IPv4 address, an IPv6 address or a DNS name" });
const instanceId = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, "expected 1-128 characters of letters, digits, '.', '_', ':' and '-'");
const percent = z.number().finite().min(0).max(100);

/** `hello`: who the node is. The token is a secret: never log this message as it is. */
export const helloSchema = z
  .object({
    type: z.literal("hello"),
    version: z.number().int(),
    token: z.string().max(1024),
    name,
    address: host,
    port: z.number().int().min(1).max(65535),
    instance_id: instanceId.optional(),
    agent_version: z.string().max(64),
    facts: z
      .object({
        cores: z.number().int().min(1).max(4096),
        memory_bytes: z.number().int().min(0),
        os: z.string().max(128).optional(),
      })
      .strict(),
    healthy: z.boolean().optional(),
  })
  .strict();

/** `sample`: one CPU reading (percent of all cores, 0-100), with optional load and memory. */
export const sampleSchema = z
  .object({
    type: z.literal("sample"),
    time: z.number().int().min(0),
    cpu: percent,
    load: z.array(z.number().finite().min(0)).length(3).optional(),
    memory: z
      .object({ used_bytes: z.number().int().min(0), total_bytes: z.number().int().min(0) })
      .strict()
      .optional(),
    healthy: z.boolean().optional(),
    /** The node's free resource units, from its app's capacity_url (resources mode). */
    available: z.number().finite().min(0).max(1e9).optional(),
  })
  .strict();

/** `leave`: this node asks to be drained and terminated. It names nothing: a node may ask only for itself. */
export const leaveSchema = z.object({ type: z.literal("leave") }).strict();

/** Any message an agent may send. */
export const agentMessageSchema = z.discriminatedUnion("type", [helloSchema, sampleSchema, leaveSchema]);

export type HelloMessage = z.infer<typeof helloSchema>;
export type SampleMessage = z.infer<typeof sampleSchema>;
export type LeaveMessage = z.infer<typeof leaveSchema>;
export type AgentMessage = z.infer<typeof agentMessageSchema>;

/** Every key the schemas know: the only path parts a refusal may name. */
const SCHEMA_KEYS = new Set([
  "type",
  "version",
  "token",
  "name",
  "address",
  "port",
  "instance_id",
  "agent_version",
  "facts",
  "cores",
  "memory_bytes",
  "os",
  "healthy",
  "time",
  "cpu",
  "load",
  "memory",
  "used_bytes",
  "total_bytes",
  "available",
]);

/** Issue codes whose messages are ours or zod's fixed text; the others (unknown keys, enum values) may quote the line. */
const FIXED_MESSAGES = new Set(["custom", "invalid_format", "too_small", "too_big", "invalid_type"]);

/** `{type: "sample", time, cpu}` with an optional boolean `healthy` and nothing else, valid as sampleSchema says. */
function isPlainSample(raw: unknown): raw is SampleMessage {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return false;
  const m = raw as Record<string, unknown>;
  let keys = 0;
  for (const k in m) {
    if (!Object.hasOwn(m, k)) continue;
    if (k !== "type" && k !== "time" && k !== "cpu" && k !== "healthy") return false;
    keys++;
  }
  const { type, time, cpu, healthy } = m;
  return (
    keys === (healthy === undefined ? 3 : 4) &&
    type === "sample" &&
    typeof time === "number" &&
    Number.isSafeInteger(time) &&
    time >= 0 &&
    typeof cpu === "number" &&
    Number.isFinite(cpu) &&
    cpu >= 0 &&
    cpu <= 100 &&
    (healthy === undefined || typeof healthy === "boolean")
  );
}

/** Decode one line from an agent; the reason never echoes the line (it may hold the token). */
export function decodeAgentMessage(line: string): Decoded<AgentMessage> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, reason: "bad JSON" };
  }
  // The message of every interval, checked without the schema library: the same rules as
  // sampleSchema for its usual shape (anything else goes through the schema and its messages).
  if (isPlainSample(raw)) return { ok: true, message: raw };
  const result = agentMessageSchema.safeParse(raw);
  if (result.success) return { ok: true, message: result.data };
  // A fixed code and the schema's own path: zod's messages may quote the line (an unknown key, a bad enum value).
  const first = result.error.issues[0];
  const where = first ? first.path.filter((p) => typeof p === "number" || SCHEMA_KEYS.has(String(p))).join(".") || "message" : "message";
  const what =
    first === undefined ? "invalid" : FIXED_MESSAGES.has(first.code) ? first.message : first.code === "unrecognized_keys" ? "unknown key" : first.code;
  return { ok: false, reason: `wrong shape: ${where}: ${what}` };
}
