/**
 * Traces for `autoscaler simulate`: demand in requests per minute, one entry per minute.
 * Two inputs are read: the `minute_utc,requests` CSV of the shared traces, and a plain
 * per-minute CPU-percent series. Anything else is refused with the file, the line and what
 * was expected (exit 2).
 */
import { AutoscalerError, EXIT_USAGE } from "@autoscaler/shared";

/** Demand per minute from `startMs` (epoch ms of the first minute; 0 for a CPU series). */
export interface Trace {
  startMs: number;
  /** Requests per minute, one entry per minute, every entry finite and ≥ 0. */
  requests: Float64Array;
}

/** The header line of the CSV form. */
export const TRACE_CSV_HEADER = "minute_utc,requests";

const MINUTE_MS = 60_000;
const DAY_MINUTES = 1440;
const ISO_MINUTE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::00(?:\.0+)?)?Z$/;
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The error every refusal of a trace or a slice throws: exit 2. */
export function traceError(message: string): AutoscalerError {
  return new AutoscalerError("AUTOSCALER_BAD_TRACE", message, { exitCode: EXIT_USAGE });
}

const iso = (ms: number) => new Date(ms).toISOString().replace(":00.000Z", "Z");
const show = (s: string) => JSON.stringify(s.length > 60 ? s.slice(0, 57) + "..." : s);

const daysInMonth = (year: number, month: number) => new Date(Date.UTC(year, month, 0)).getUTCDate();

/** A minute such as 1995-07-01T04:00:00Z, or undefined when the text is not exactly one (no seconds, a real date). */
function parseMinute(text: string): number | undefined {
  const m = ISO_MINUTE.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute] = m.slice(1, 6).map(Number) as [number, number, number, number, number];
  // Checked by hand rather than Date.parse, which takes 1995-02-30 for 2 March (and is slower).
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59) return undefined;
  if (day > 28 && day > daysInMonth(year, month)) return undefined;
  return Date.UTC(year, month - 1, day, hour, minute);
}

/** A count or a percentage: a finite number; negative ones are told apart so the message can say so. */
function parseValue(text: string): number | undefined {
  if (!NUMBER.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Parse a trace file's text. A first line `minute_utc,requests` selects the CSV form; otherwise
 * every line is one minute's CPU demand as a percent of one node (250 = two and a half nodes
 * busy; blank lines and `#` comments allowed), turned into requests with `nodeCapacity`.
 */
export function parseTrace(text: string, opts: { file: string; nodeCapacity: number }): Trace {
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  const first = lines.findIndex((l) => l.trim() !== "");
  const csv = first >= 0 && lines[first]!.trim() === TRACE_CSV_HEADER;
  const trace = csv ? parseCsv(lines, first + 1, opts.file) : parseCpuSeries(lines, opts);
  if (trace.requests.length === 0) {
    throw traceError(
      `${opts.file} has no minutes; expected ${csv ? `rows such as 1995-07-01T04:00:00Z,42 under the header ${TRACE_CSV_HEADER}` : `the header ${TRACE_CSV_HEADER} and rows, or one CPU percent per line`}`,
    );
  }
  return trace;
}

function parseCsv(lines: string[], from: number, file: string): Trace {
  const requests = new Float64Array(lines.length);
  let count = 0;
  let startMs = 0;
  let previous = 0;
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const at = `${file} line ${i + 1}`;
    const fields = line.split(",");
    if (fields.length !== 2)
      throw traceError(
        `${at}: ${show(line)} has ${fields.length} field${fields.length === 1 ? "" : "s"}; expected two, minute_utc,requests, such as 1995-07-01T04:00:00Z,42`,
      );
    const [timeText, countText] = fields.map((f) => f.trim()) as [string, string];
    const minute = parseMinute(timeText);
    if (minute === undefined) throw traceError(`${at}: ${show(timeText)} is not a minute; expected an ISO 8601 UTC minute such as 1995-07-01T04:00:00Z`);
    const value = parseValue(countText);
    if (value === undefined) throw traceError(`${at}: ${show(countText)} is not a number; expected a request count of 0 or more`);
    if (value < 0) throw traceError(`${at}: the count ${countText} is negative; expected a request count of 0 or more`);
    if (count === 0) startMs = minute;
    else if (minute <= previous) {
      throw traceError(
        `${at}: ${timeText} is ${minute === previous ? "the same minute as" : "before"} the row above (${iso(previous)}); expected one row per minute in increasing order`,
      );
    } else if (minute !== previous + MINUTE_MS) {
      const missing = (minute - previous) / MINUTE_MS - 1;
      throw traceError(
        `${at}: ${timeText} leaves a gap after ${iso(previous)} (${missing} minute${missing === 1 ? "" : "s"} missing); expected one row per minute with no gaps (0 for a minute with no requests)`,
      );
    }
    previous = minute;
    requests[count++] = value;
  }
  return { startMs, requests: requests.slice(0, count) };
}

function parseCpuSeries(lines: string[], opts: { file: string; nodeCapacity: number }): Trace {
  const requests = new Float64Array(lines.length);
  let count = 0;
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i]!.indexOf("#");
    const line = (hash >= 0 ? lines[i]!.slice(0, hash) : lines[i]!).trim();
    if (line === "") continue;
    const at = `${opts.file} line ${i + 1}`;
    const text = line.endsWith("%") ? line.slice(0, -1).trimEnd() : line;
    const value = parseValue(text);
    if (value === undefined) {
      throw traceError(
        `${at}: ${show(line)} is not a number; expected the CSV header ${TRACE_CSV_HEADER} on the first line, or one CPU percent per line (250 = two and a half nodes busy)`,
      );
    }
    if (value < 0) throw traceError(`${at}: the CPU percent ${text} is negative; expected 0 or more (250 = two and a half nodes busy)`);
    requests[count++] = (value / 100) * opts.nodeCapacity;
  }
  return { startMs: 0, requests: requests.slice(0, count) };
}

/** Which part of a trace to replay, and how much to scale its demand. */
export interface SliceOptions {
  /** 0-based day offset from the first row: day d starts at row d × 1440. */
  startDay: number;
  /** Whole days from there; undefined: to the end of the trace. */
  days?: number | undefined;
  /** Multiplies every minute's requests (> 0). */
  scale: number;
}

/** Cut whole days out of a trace and scale them; refuses a slice that is not inside the trace (exit 2). */
export function sliceTrace(trace: Trace, opts: SliceOptions): Trace {
  const total = trace.requests.length;
  const span = `the trace has ${total} minutes (${(total / DAY_MINUTES).toFixed(2)} days)`;
  if (!Number.isInteger(opts.startDay) || opts.startDay < 0)
    throw traceError(`--start ${opts.startDay} is not valid; expected a whole number of days of 0 or more`);
  if (opts.days !== undefined && (!Number.isInteger(opts.days) || opts.days < 1))
    throw traceError(`--days ${opts.days} is not valid; expected a whole number of days of 1 or more`);
  if (!(opts.scale > 0) || !Number.isFinite(opts.scale)) throw traceError(`--scale ${opts.scale} is not valid; expected a number greater than 0`);
  const from = opts.startDay * DAY_MINUTES;
  const to = opts.days === undefined ? total : from + opts.days * DAY_MINUTES;
  if (from >= total) throw traceError(`--start ${opts.startDay} is past the end: ${span}; expected a day from 0 to ${Math.ceil(total / DAY_MINUTES) - 1}`);
  if (to > total) {
    throw traceError(
      `--start ${opts.startDay} --days ${opts.days} runs past the end: ${span}, the slice needs ${to}; expected at most ${Math.floor((total - from) / DAY_MINUTES)} whole day(s) from day ${opts.startDay}`,
    );
  }
  const requests = trace.requests.slice(from, to);
  if (opts.scale !== 1) for (let i = 0; i < requests.length; i++) requests[i]! *= opts.scale;
  return { startMs: trace.startMs + from * MINUTE_MS, requests };
}
