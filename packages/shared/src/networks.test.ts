import { describe, expect, test } from "vitest";
import { nodeAddressProblem, parseCidr } from "./networks.js";

describe("parseCidr", () => {
  test.each<[string, ReturnType<typeof parseCidr>]>([
    ["10.0.0.0/8", { address: "10.0.0.0", prefix: 8, family: "ipv4" }],
    ["2001:db8::/32", { address: "2001:db8::", prefix: 32, family: "ipv6" }],
    ["192.0.2.7", { address: "192.0.2.7", prefix: 32, family: "ipv4" }],
    ["10.0.0.0/33", undefined],
    ["example.com/8", undefined],
    ["10.0.0.0/8/8", undefined],
    ["", undefined],
  ])("%j", (text, expected) => {
    expect(parseCidr(text)).toEqual(expected);
  });
});

describe("nodeAddressProblem", () => {
  const listed = [parseCidr("10.0.0.0/8")!, parseCidr("127.0.0.0/8")!];
  test.each<[string, string, boolean]>([
    ["a private address, by default", "10.0.1.21", true],
    ["a public address, by default", "198.51.100.7", true],
    ["an IPv6 unicast address, by default", "2001:db8::5", true],
    ["the EC2 metadata service (link-local), by default", "169.254.169.254", false],
    ["loopback, by default", "127.0.0.1", false],
    ["IPv6 loopback, by default", "::1", false],
    ["IPv6 link-local, by default", "fe80::1", false],
    ["the unspecified address, by default", "0.0.0.0", false],
    ["multicast, by default", "224.0.0.251", false],
    ["broadcast, by default", "255.255.255.255", false],
    ["an IPv4-mapped loopback, by default", "::ffff:127.0.0.1", false],
    ["a DNS name, ever", "web-1.internal", false],
  ])("%s: allowed %s", (_what, address, allowed) => {
    expect(nodeAddressProblem(address, []) === undefined).toBe(allowed);
  });

  test.each<[string, boolean]>([
    ["10.2.3.4", true],
    ["127.0.0.1", true],
    ["192.168.1.5", false],
    ["169.254.169.254", false],
  ])("with node_networks 10.0.0.0/8, 127.0.0.0/8: %s allowed %s", (address, allowed) => {
    expect(nodeAddressProblem(address, listed) === undefined).toBe(allowed);
  });

  test("the message never repeats the address", () => {
    expect(nodeAddressProblem("169.254.169.254", [])).not.toContain("169.254");
    expect(nodeAddressProblem("evil\nname", [])).not.toContain("evil");
  });
});
