/**
 * The agent ⇄ master protocol (import from "@autoscaler/shared/protocol"): newline-delimited JSON
 * over the SSH tunnel. This module loads no schema library; the master validates agent messages
 * with the zod schemas in "@autoscaler/shared/agent-messages". The agent sends
 * `hello` once, then `sample` each interval; the master answers `hello` with `welcome` or
 * `error`. Every message is validated against these schemas; anything else closes the
 * connection with a logged reason.
 */
import type { AgentMessage } from "./agent-messages.js";

export type { AgentMessage, HelloMessage, LeaveMessage, SampleMessage } from "./agent-messages.js";

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;

/** The longest line either side accepts, in bytes (SPEC: a line over 64 KiB closes the connection). */
export const MAX_LINE_BYTES = 64 * 1024;

/** `welcome`: the master accepted the node. */
export interface WelcomeMessage {
  type: "welcome";
  version: number;
  role: "decider" | "follower";
  master_version: string;
  /** The node's own credential (asc1.node.…), when it registered with a launch's join credential or the cluster secret: the agent keeps it for its reconnects. */
  credential?: string;
}

/** `error`: the master refused; the connection closes after it. */
export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
}

/** Any message a master may send. */
export type MasterMessage = WelcomeMessage | ErrorMessage;

/** A parsed message, or why the line was refused (safe to log: it never echoes the line). */
export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: string };

/** Decode one line from a master: `welcome` or `error`, checked by hand (agents do not load a schema library). */
export function decodeMasterMessage(line: string): Decoded<MasterMessage> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, reason: "bad JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { ok: false, reason: "wrong shape: not an object" };
  const m = raw as Record<string, unknown>;
  const keys = Object.keys(m).sort().join(",");
  const str = (v: unknown, max: number) => typeof v === "string" && v.length <= max;
  if (m.type === "welcome") {
    if (keys !== "master_version,role,type,version" && keys !== "credential,master_version,role,type,version")
      return { ok: false, reason: "wrong shape: welcome fields" };
    if (m.credential !== undefined && !(str(m.credential, 256) && /^asc1\.node\.[A-Za-z0-9._-]+$/.test(m.credential as string)))
      return { ok: false, reason: "wrong shape: welcome credential" };
    if (!Number.isInteger(m.version) || (m.role !== "decider" && m.role !== "follower") || !str(m.master_version, 64))
      return { ok: false, reason: "wrong shape: welcome values" };
    return { ok: true, message: m as unknown as WelcomeMessage };
  }
  if (m.type === "error") {
    if (keys !== "code,message,type" || !str(m.code, 64) || !str(m.message, 1024)) return { ok: false, reason: "wrong shape: error" };
    return { ok: true, message: m as unknown as ErrorMessage };
  }
  return { ok: false, reason: "wrong shape: type" };
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
