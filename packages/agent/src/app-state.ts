/**
 * What the node's own app says about itself, as SimpleScaleVM's replicas do: a JSON document at
 * `[agent] capacity_url` with its free resource units at `capacity_key`, and one at `leave_url`
 * whose `leave_key` is true when the node wants to go. Read with node:http (not fetch). A failed
 * or bad answer is missing data, never a number or a leave.
 */
import { httpRequest } from "./http-request.js";

/** A value read from the app's JSON, or why there is none (safe to log: it never echoes the body). */
export type AppValue<T> = { ok: true; value: T } | { ok: false; problem: string };

/** The value at a dot-separated key (`slots.free`) of a parsed JSON document; undefined when absent. */
export function valueAt(doc: unknown, key: string): unknown {
  let at: unknown = doc;
  for (const part of key.split(".")) {
    if (typeof at !== "object" || at === null || Array.isArray(at) || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

/** Read `key` from the JSON the app answers at `url` (2xx only, within `timeoutMs`). */
export async function readAppValue(url: string, key: string, timeoutMs: number): Promise<AppValue<unknown>> {
  const res = await httpRequest(url, { timeoutMs, body: true, headers: { accept: "application/json" } });
  if (res === undefined) return { ok: false, problem: "no answer" };
  if (res.status < 200 || res.status > 299) return { ok: false, problem: `HTTP ${res.status}` };
  let doc: unknown;
  try {
    doc = JSON.parse(res.body);
  } catch {
    return { ok: false, problem: "the answer is not JSON" };
  }
  const value = valueAt(doc, key);
  return value === undefined ? { ok: false, problem: `the answer has no ${key}` } : { ok: true, value };
}

/** The free resource units at capacity_key: a finite number of at least 0, else missing data. */
export function capacityOf(read: AppValue<unknown>, key: string): AppValue<number> {
  if (!read.ok) return read;
  const v = read.value;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 1e9)
    return { ok: false, problem: `${key} is not a number from 0 to 1e9 (${typeof v === "number" ? String(v) : typeof v})` };
  return { ok: true, value: v };
}

/** Whether the app asks to leave: only a JSON `true` at leave_key is a leave; anything else (a failure too) is not. */
export function leaveOf(read: AppValue<unknown>): boolean {
  return read.ok && read.value === true;
}
