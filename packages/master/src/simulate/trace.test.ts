import { describe, expect, test } from "vitest";
import { AutoscalerError } from "@autoscaler/shared";
import { parseTrace, sliceTrace, type Trace } from "./trace.js";

const opts = { file: "t.csv", nodeCapacity: 60 };
const csv = (...rows: string[]) => ["minute_utc,requests", ...rows].join("\n") + "\n";
const T0 = Date.parse("1995-07-01T04:00:00Z");

/** The error a parse throws, for its message, code and exit code. */
function refusal(run: () => unknown): AutoscalerError {
  try {
    run();
  } catch (err) {
    if (err instanceof AutoscalerError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("parseTrace reads", () => {
  test("the minute_utc,requests CSV: the first minute and one count per row", () => {
    const t = parseTrace(csv("1995-07-01T04:00:00Z,42", "1995-07-01T04:01:00Z,61", "1995-07-01T04:02:00Z,0"), opts);
    expect(t.startMs).toBe(T0);
    expect([...t.requests]).toEqual([42, 61, 0]);
  });

  test("a leap day and the turn of a year", () => {
    const t = parseTrace(csv("1996-02-29T23:59:00Z,1", "1996-03-01T00:00:00Z,2"), opts);
    expect(t.startMs).toBe(Date.parse("1996-02-29T23:59:00Z"));
    expect(parseTrace(csv("1995-12-31T23:59:00Z,1", "1996-01-01T00:00:00Z,2"), opts).requests.length).toBe(2);
  });

  test("CRLF line ends, a byte-order mark, blank lines and minutes without seconds", () => {
    const t = parseTrace("\uFEFFminute_utc,requests\r\n1995-07-01T04:00Z,1\r\n\r\n1995-07-01T04:01:00Z,2.5\r\n", opts);
    expect(t.startMs).toBe(T0);
    expect([...t.requests]).toEqual([1, 2.5]);
  });

  test("a CPU-percent series: percent of one node × capacity, from 0, with comments and blank lines", () => {
    const t = parseTrace("# a test series\n50\n\n250 # two and a half nodes\n0\n100%\n", opts);
    expect(t.startMs).toBe(0);
    expect([...t.requests]).toEqual([30, 150, 0, 60]);
  });
});

describe("parseTrace refuses, naming the file, the line and what is expected (exit 2)", () => {
  test.each<[string, string, RegExp]>([
    [
      "a row with three fields",
      csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:01:00Z,5,7"),
      /^t\.csv line 3: .* has 3 fields; expected two, minute_utc,requests/,
    ],
    ["a row with one field", csv("1995-07-01T04:00:00Z"), /^t\.csv line 2: .* has 1 field; expected two/],
    [
      "a count that is not a number",
      csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:01:00Z,abc"),
      /^t\.csv line 3: "abc" is not a number; expected a request count of 0 or more/,
    ],
    ["a time that is not an ISO minute", csv("07/01/1995 04:00,1"), /^t\.csv line 2: "07\/01\/1995 04:00" is not a minute; expected an ISO 8601 UTC minute/],
    ["a time with seconds", csv("1995-07-01T04:00:30Z,1"), /^t\.csv line 2: .* is not a minute/],
    ["an impossible date", csv("1995-02-30T00:00:00Z,1"), /^t\.csv line 2: "1995-02-30T00:00:00Z" is not a minute/],
    ["29 February of a year that is not a leap year", csv("1995-02-29T00:00:00Z,1"), /^t\.csv line 2: .* is not a minute/],
    ["hour 24", csv("1995-07-01T24:00:00Z,1"), /^t\.csv line 2: .* is not a minute/],
    ["a time without Z", csv("1995-07-01T04:00:00,1"), /^t\.csv line 2: .* is not a minute/],
    [
      "a negative count",
      csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:01:00Z,-3"),
      /^t\.csv line 3: the count -3 is negative; expected a request count of 0 or more/,
    ],
    [
      "a gap",
      csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:03:00Z,1"),
      /^t\.csv line 3: 1995-07-01T04:03:00Z leaves a gap after 1995-07-01T04:00Z \(2 minutes missing\); expected one row per minute with no gaps/,
    ],
    [
      "unsorted times",
      csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:01:00Z,1", "1995-07-01T04:00:00Z,1"),
      /^t\.csv line 4: 1995-07-01T04:00:00Z is before the row above \(1995-07-01T04:01Z\); expected one row per minute in increasing order/,
    ],
    ["a duplicate time", csv("1995-07-01T04:00:00Z,1", "1995-07-01T04:00:00Z,2"), /^t\.csv line 3: .* is the same minute as the row above/],
    ["a header and no rows", csv(), /^t\.csv has no minutes; expected rows such as/],
    ["an empty file", "", /^t\.csv has no minutes; expected the header minute_utc,requests and rows, or one CPU percent per line/],
    ["only comments", "# nothing\n\n", /^t\.csv has no minutes/],
    [
      "a CPU series with a word",
      "50\nhigh\n",
      /^t\.csv line 2: "high" is not a number; expected the CSV header minute_utc,requests on the first line, or one CPU percent per line/,
    ],
    ["a CPU series with a negative value", "# x\n\n-5\n", /^t\.csv line 3: the CPU percent -5 is negative/],
    [
      "a CSV with another header",
      "time,requests\n1995-07-01T04:00:00Z,1\n",
      /^t\.csv line 1: "time,requests" is not a number; expected the CSV header minute_utc,requests/,
    ],
  ])("%s", (_name, text, message) => {
    const err = refusal(() => parseTrace(text, opts));
    expect(err.message).toMatch(message);
    expect(err.code).toBe("AUTOSCALER_BAD_TRACE");
    expect(err.exitCode).toBe(2);
  });
});

describe("sliceTrace", () => {
  const threeDays: Trace = { startMs: T0, requests: Float64Array.from({ length: 3 * 1440 }, (_, i) => i) };

  test("cuts whole days from a 0-based day and scales them", () => {
    const s = sliceTrace(threeDays, { startDay: 1, days: 1, scale: 2 });
    expect(s.startMs).toBe(T0 + 86_400_000);
    expect(s.requests.length).toBe(1440);
    expect(s.requests[0]).toBe(1440 * 2);
    expect(s.requests[1439]).toBe(2879 * 2);
    expect(threeDays.requests[1440]).toBe(1440); // the trace itself is left as it was
  });

  test("without days, runs to the end", () => {
    expect(sliceTrace(threeDays, { startDay: 2, scale: 1 }).requests.length).toBe(1440);
  });

  test.each<[string, { startDay: number; days?: number; scale: number }, RegExp]>([
    ["a start past the end", { startDay: 3, scale: 1 }, /--start 3 is past the end: the trace has 4320 minutes \(3\.00 days\); expected a day from 0 to 2/],
    ["days past the end", { startDay: 1, days: 3, scale: 1 }, /--start 1 --days 3 runs past the end: .* expected at most 2 whole day\(s\) from day 1/],
    ["a negative start", { startDay: -1, scale: 1 }, /--start -1 is not valid/],
    ["a fractional day count", { startDay: 0, days: 1.5, scale: 1 }, /--days 1\.5 is not valid; expected a whole number of days of 1 or more/],
    ["a zero scale", { startDay: 0, scale: 0 }, /--scale 0 is not valid; expected a number greater than 0/],
  ])("refuses %s (exit 2)", (_name, slice, message) => {
    const err = refusal(() => sliceTrace(threeDays, slice));
    expect(err.message).toMatch(message);
    expect(err.exitCode).toBe(2);
  });
});
