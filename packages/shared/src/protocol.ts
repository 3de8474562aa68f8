/**
 * The agent ⇄ master protocol (import from "@autoscaler/shared/protocol", kept out of the main entry so
 * CLI commands that never speak it do not load zod): newline-delimited JSON over the SSH tunnel. The agent sends
 * `hello` once, then `sample` each interval; the master answers `hello` with `welcome` or
 * `error`. Every message is validated against these schemas; anything else closes the
 * connection with a logged reason.
 */
import { z } from "zod";
import { checkHost, checkName } from "./validate.js";

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;

/** The longest line either side accepts, in bytes (SPEC: a line over 64 KiB closes the connection). */
export const MAX_LINE_BYTES = 64 * 1024;

const name = z.string().refine((v) => checkName(v) === undefined, { message: "expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'" });
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
    memory: z.object({ used_bytes: z.number().int().min(0), total_bytes: z.number().int().min(0) }).strict().optional(),
    healthy: z.boolean().optional(),
  })
  .strict();

/** Any message an agent may send. */
export const agentMessageSchema = z.discriminatedUnion("type", [helloSchema, sampleSchema]);

/** `welcome`: the master accepted the node. */
export const welcomeSchema = z
  .object({
    type: z.literal("welcome"),
    version: z.number().int(),
    role: z.enum(["decider", "follower"]),
    master_version: z.string().max(64),
  })
  .strict();

/** `error`: the master refused; the connection closes after it. */
export const errorSchema = z.object({ type: z.literal("error"), code: z.string().max(64), message: z.string().max(1024) }).strict();

/** Any message a master may send. */
export const masterMessageSchema = z.discriminatedUnion("type", [welcomeSchema, errorSchema]);

export type HelloMessage = z.infer<typeof helloSchema>;
export type SampleMessage = z.infer<typeof sampleSchema>;
export type AgentMessage = z.infer<typeof agentMessageSchema>;
export type WelcomeMessage = z.infer<typeof welcomeSchema>;
export type ErrorMessage = z.infer<typeof errorSchema>;
export type MasterMessage = z.infer<typeof masterMessageSchema>;

/** A parsed message, or why the line was refused (safe to log: it never echoes the line). */
export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: string };

function decodeWith<T>(schema: z.ZodType<T>, line: string): Decoded<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, reason: "bad JSON" };
  }
  const result = schema.safeParse(raw);
  if (result.success) return { ok: true, message: result.data };
  const first = result.error.issues[0];
  const where = first && first.path.length > 0 ? first.path.join(".") : "message";
  return { ok: false, reason: `wrong shape: ${where}: ${first?.message ?? "invalid"}` };
}

/** Decode one line from an agent. */
export function decodeAgentMessage(line: string): Decoded<AgentMessage> {
  return decodeWith(agentMessageSchema, line);
}

/** Decode one line from a master. */
export function decodeMasterMessage(line: string): Decoded<MasterMessage> {
  return decodeWith(masterMessageSchema, line);
}

/** Encode a message as one NDJSON line. */
export function encodeMessage(message: AgentMessage | MasterMessage): string {
  return JSON.stringify(message) + "\n";
}

/**
 * Split a byte stream into lines, refusing any line longer than `maxBytes` without buffering
 * it: `push` returns the complete lines, or `{ tooLong: true }` once the limit is passed.
 */
export function createLineSplitter(maxBytes = MAX_LINE_BYTES): { push(chunk: Buffer): { lines: string[]; tooLong: boolean } } {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let broken = false;
  return {
    push(chunk) {
      if (broken) return { lines: [], tooLong: true };
      const lines: string[] = [];
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        if (nl < 0) break;
        const piece = chunk.subarray(start, nl);
        if (pendingBytes + piece.length > maxBytes) {
          broken = true;
          return { lines, tooLong: true };
        }
        const full = pending.length > 0 ? Buffer.concat([...pending, piece]) : piece;
        pending = [];
        pendingBytes = 0;
        const text = full.toString("utf8").replace(/\r$/, "");
        if (text.trim() !== "") lines.push(text);
        start = nl + 1;
      }
      const rest = chunk.subarray(start);
      if (pendingBytes + rest.length > maxBytes) {
        broken = true;
        return { lines, tooLong: true };
      }
      if (rest.length > 0) {
        pending.push(Buffer.from(rest));
        pendingBytes += rest.length;
      }
      return { lines, tooLong: false };
    },
  };
}
