import { describe, expect, test } from "vitest";
import { checkName } from "@autoscaler/shared";
import { defaultHostName } from "./hosts.js";

describe("defaultHostName", () => {
  test.each([
    ["an IPv4 address", "10.0.0.5", 8080, "10.0.0.5-8080"],
    ["a DNS name", "web-1.example.com", 80, "web-1.example.com-80"],
    ["the IPv6 loopback", "::1", 80, "__1-80"],
    ["an IPv6 address", "2001:db8::5", 443, "2001_db8__5-443"],
    ["a scoped IPv6 address", "fe80::1%eth0", 80, "fe80__1_eth0-80"],
  ])("names %s by host and port", (_what, host, port, expected) => {
    expect(defaultHostName(host, port)).toBe(expected);
  });

  test.each([
    ["an IPv6 address", "2001:db8:85a3::8a2e:370:7334", 65535],
    ["a DNS name of 253 characters", ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join("."), 80],
  ])("gives a valid backend name for %s", (_what, host, port) => {
    const name = defaultHostName(host, port);
    expect(checkName(name)).toBeUndefined();
    expect(name.endsWith(`-${port}`)).toBe(true);
  });
});
