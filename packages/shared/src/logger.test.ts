import { describe, expect, test } from "vitest";
import { createLogger, redact, type LoggerOptions } from "./logger.js";

const NOW = new Date("2024-05-06T07:08:09.010Z");

/** A logger writing into an array of lines. */
function capture(options: LoggerOptions = {}) {
  const chunks: string[] = [];
  const logger = createLogger({ write: (s: string) => chunks.push(s) }, { now: () => NOW, ...options });
  return {
    logger,
    chunks,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((l) => l !== ""),
  };
}

describe("redact", () => {
  test.each([
    ["a secret inside text", "token=s3cretValue here", ["s3cretValue"], "token=[redacted] here"],
    ["every occurrence", "abcd1234 and abcd1234", ["abcd1234"], "[redacted] and [redacted]"],
    ["several secrets", "AKIA0001 / wJalr/K7MDENG", ["AKIA0001", "wJalr/K7MDENG"], "[redacted] / [redacted]"],
    ["a secret with regex characters, taken literally", "x a.b*c+ y", ["a.b*c+"], "x [redacted] y"],
    ["the JSON-escaped form of a secret with a quote", '{"t":"pa\\"ss1"}', ['pa"ss1'], '{"t":"[redacted]"}'],
    ["the JSON-escaped form of a secret with a backslash", '{"t":"a\\\\bcd"}', ["a\\bcd"], '{"t":"[redacted]"}'],
    ["nothing when no secret occurs", "plain text", ["s3cretValue"], "plain text"],
    ["nothing for secrets shorter than 4 characters", "abc in text", ["abc"], "abc in text"],
    ["nothing for an empty secret", "text", [""], "text"],
  ])("replaces %s", (_what, text, secrets, expected) => {
    expect(redact(text, secrets)).toBe(expected);
  });
});

describe("createLogger", () => {
  test("JSON mode writes one parseable line per call, with time, level, message and fields", () => {
    const { logger, lines } = capture({ json: true });
    logger.info("node registered", { node: "web-1", cpu: 12.5, tags: ["a", "b"] });
    logger.error("reload failed", { reason: 'line with "quotes"\nand a newline' });
    const parsed = lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toEqual([
      { time: NOW.toISOString(), level: "info", msg: "node registered", node: "web-1", cpu: 12.5, tags: ["a", "b"] },
      { time: NOW.toISOString(), level: "error", msg: "reload failed", reason: 'line with "quotes"\nand a newline' },
    ]);
  });

  test("text mode writes time, padded level, message and key=value fields", () => {
    const { logger, lines } = capture();
    logger.warn("slow check", { ms: 1500, file: "/etc/haproxy/haproxy.cfg", why: "two words" });
    expect(lines()).toEqual([`${NOW.toISOString()} WARN  slow check ms=1500 file=/etc/haproxy/haproxy.cfg why="two words"`]);
  });

  test.each([
    ["debug", ["debug", "info", "warn", "error"]],
    ["info", ["info", "warn", "error"]],
    ["warn", ["warn", "error"]],
    ["error", ["error"]],
  ] as const)("at level %s writes only %j", (level, expected) => {
    const { logger, lines } = capture({ json: true, level });
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    expect(lines().map((l) => (JSON.parse(l) as { level: string }).level)).toEqual(expected);
  });

  test.each([
    ["JSON", true],
    ["text", false],
  ])("%s mode never prints a secret, in the message or in fields", (_mode, json) => {
    const secrets = ["AKIAORIGINALEXAMPLE1", "tok-3f9a8b7c6d", 'quo"te\\slash'];
    const { logger, chunks, lines } = capture({ json, secrets });
    logger.error("auth failed for AKIAORIGINALEXAMPLE1", { token: "tok-3f9a8b7c6d", other: 'quo"te\\slash', nested: { key: "tok-3f9a8b7c6d" } });
    const out = chunks.join("");
    for (const s of secrets) expect(out).not.toContain(s);
    expect(out).not.toContain(JSON.stringify(secrets[2]).slice(1, -1));
    expect(out).toContain("[redacted]");
    if (json) expect(() => JSON.parse(lines()[0]!)).not.toThrow();
  });

  test("text mode escapes control characters, so a node's bytes can neither forge a line nor drive the terminal; JSON mode stays exact", () => {
    const hostile = "web\x1b[31m\nFAKE 2026-01-01T00:00:00Z ERROR forged\u0007";
    const text = capture({});
    text.logger.warn(`refused ${hostile}`, { name: hostile, plain: "ok" });
    const out = text.chunks.join("");
    expect(out.split("\n").filter(Boolean)).toHaveLength(1);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
    expect(out).toContain("refused web\\u001b[31m\\u000aFAKE");
    expect(out).toContain("plain=ok");
    const json = capture({ json: true });
    json.logger.warn(hostile, { name: hostile });
    expect(JSON.parse(json.lines()[0]!)).toMatchObject({ msg: hostile, name: hostile });
  });
});
