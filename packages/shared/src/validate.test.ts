import { describe, expect, test } from "vitest";
import { checkHost, checkName, checkPort, formatHostPort, isLoopbackHost, normaliseHost, splitHostPort } from "./validate.js";

const label = (n: number, c = "a") => c.repeat(n);

describe("checkHost", () => {
  test.each([
    ["a dotted IPv4 address", "10.0.0.7"],
    ["the IPv4 broadcast address", "255.255.255.255"],
    ["a bare IPv6 address", "2001:db8::1"],
    ["the bare IPv6 loopback", "::1"],
    ["a bracketed IPv6 address", "[2001:db8::1]"],
    ["a one-label DNS name", "localhost"],
    ["a DNS name with hyphens and digits", "web-01.eu-west-1.example.com"],
    ["a DNS name with a trailing dot", "example.com."],
    ["a label of exactly 63 characters", `${label(63)}.example.com`],
    ["a name of exactly 253 characters", [label(63), label(63), label(63), label(61)].join(".")],
    ["a DNS name whose non-last labels are numeric", "10.example.com"],
  ])("accepts %s", (_what, host) => {
    expect(checkHost(host)).toBeUndefined();
  });

  test.each([
    ["an empty string", "", /empty/],
    ["a name with a newline", "web\nserver evil 1.2.3.4:80", /white space/],
    ["a name with a trailing newline", "example.com\n", /white space/],
    ["a name with a space", "web 1", /white space/],
    ["a name with a tab", "web\t1", /white space/],
    ["a relative path with ../", "../etc/passwd", /path separator/],
    ["a name with a slash", "web/1", /path separator/],
    ["a name with a backslash", "web\\1", /path separator/],
    ["an IPv4-looking address with a part over 255", "999.1.1.1", /IPv4/],
    ["an IPv4-looking address with three parts", "1.2.3", /IPv4/],
    ["a DNS name whose last label is all digits", "example.123", /IPv4/],
    ["a name of 254 characters", [label(63), label(63), label(63), label(62)].join("."), /longer than 253/],
    ["a label of 64 characters", `${label(64)}.example.com`, /labels of 1-63/],
    ["a label with a leading hyphen", "-web.example.com", /labels of 1-63/],
    ["a label with a trailing hyphen", "web-.example.com", /labels of 1-63/],
    ["an empty label", "web..example.com", /labels of 1-63/],
    ["a lone dot", ".", /labels of 1-63/],
    ["an underscore", "web_1.example.com", /labels of 1-63/],
    ["a host with a port", "example.com:80", /labels of 1-63/],
    ["a DNS name in brackets", "[example.com]", /inside brackets/],
    ["an unclosed bracket", "[::1", /labels of 1-63/],
    ["a broken IPv6 address in brackets", "[2001:db8:::1]", /inside brackets/],
  ])("refuses %s", (_what, host, reason) => {
    const problem = checkHost(host);
    expect(problem).toBeDefined();
    expect(problem).toMatch(reason);
  });
});

describe("normaliseHost and formatHostPort", () => {
  test.each([
    ["[::1]", "::1"],
    ["::1", "::1"],
    ["10.0.0.1", "10.0.0.1"],
    ["example.com", "example.com"],
  ])("normaliseHost(%j) is %j", (input, expected) => {
    expect(normaliseHost(input)).toBe(expected);
  });

  test.each([
    ["::1", 80, "[::1]:80"],
    ["10.0.0.1", 8080, "10.0.0.1:8080"],
    ["example.com", 443, "example.com:443"],
  ])("formatHostPort(%j, %i) is %j", (host, port, expected) => {
    expect(formatHostPort(host, port)).toBe(expected);
  });
});

describe("checkPort", () => {
  test.each([
    ["the lowest port", "1"],
    ["the highest port", "65535"],
    ["a common port as a number", 80],
  ])("accepts %s", (_what, port) => {
    expect(checkPort(port)).toBeUndefined();
  });

  test.each([
    ["zero", "0", /outside 1-65535/],
    ["the number zero", 0, /outside 1-65535/],
    ["one past the highest port", "65536", /outside 1-65535/],
    ["a huge number", "99999999999999999999", /outside 1-65535/],
    ["letters", "abc", /not a port number/],
    ["exponent notation", "8e1", /not a port number/],
    ["a leading plus sign", "+80", /not a port number/],
    ["a negative number", "-1", /not a port number/],
    ["a fraction", 80.5, /not a port number/],
    ["hexadecimal", "0x50", /not a port number/],
    ["an empty string", "", /not a port number/],
    ["a port with a newline in it", "8\n0", /not a port number/],
    ["a leading zero (ambiguous: octal to some tools)", "080", /not a port number/],
    ["surrounding blanks", " 80 ", /not a port number/],
    ["NaN", Number.NaN, /not a port number/],
  ])("refuses %s", (_what, port, reason) => {
    expect(checkPort(port)).toMatch(reason);
  });
});

describe("checkName", () => {
  test.each([
    ["letters, digits, dot, underscore and hyphen", "web-1.eu_west"],
    ["a single character", "a"],
    ["63 characters", label(63, "n")],
    ["a name with a dot inside and at the end", "web.1."],
    ["a name that starts with '_' or '-'", "_web-"],
  ])("accepts %s", (_what, name) => {
    expect(checkName(name)).toBeUndefined();
  });

  test.each([
    ["an empty name", ""],
    ["a name with a slash", "web/1"],
    ["a name with a backslash", "web\\1"],
    ["64 characters", label(64, "n")],
    ["a single dot", "."],
    ["two dots", ".."],
    ["a name with a space", "web 1"],
    ["a name with a newline", "web\n1"],
    ["a name with a colon", "web:1"],
    ["a name with non-ASCII letters", "wéb"],
  ])("refuses %s", (_what, name) => {
    expect(checkName(name)).toMatch(/not a valid name/);
  });

  test.each([
    ["a hidden name, which hosts.d would skip", ".hidden"],
    ["a dot and one letter", ".x"],
    ["a single dot", "."],
    ["two dots", ".."],
    ["a dot-name that is otherwise valid and 63 long", "." + label(62, "n")],
  ])("refuses %s, saying it starts with a dot", (_what, name) => {
    expect(checkName(name)).toBe("is not a valid name: it starts with '.'; expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'");
  });
});

describe("isLoopbackHost", () => {
  test.each([
    ["127.0.0.1", true],
    ["127.9.9.9", true],
    ["::1", true],
    ["[::1]", true],
    ["0:0:0:0:0:0:0:1", true],
    ["localhost", true],
    ["0.0.0.0", false],
    ["10.0.0.1", false],
    ["::", false],
    ["[::]", false],
    ["128.0.0.1", false],
    ["127.example.com", false],
    ["example.com", false],
  ])("isLoopbackHost(%j) is %s", (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe("splitHostPort", () => {
  test.each([
    ["a bracketed IPv6 address with a port", "[::1]:80", "::1", "80"],
    ["a bracketed IPv6 address without a port", "[2001:db8::1]", "2001:db8::1", undefined],
    ["a bare IPv6 address (its colons are not a port)", "2001:db8::1", "2001:db8::1", undefined],
    ["an IPv4 address with a port", "127.0.0.1:7300", "127.0.0.1", "7300"],
    ["a DNS name with a port", "proxy.example.com:2222", "proxy.example.com", "2222"],
    ["a DNS name alone", "proxy.example.com", "proxy.example.com", undefined],
    ["a trailing colon (an empty port, for the caller to refuse)", "host:", "host", ""],
  ])("splits %s", (_what, text, host, port) => {
    expect(splitHostPort(text)).toEqual({ host, port });
  });
});

describe("host edge cases found in review", () => {
  test.each([
    ["an IPv6 address with a zone id", "fe80::1%eth0", /zone id/],
    ["an IPv4 address in brackets", "[1.2.3.4]", /not a valid IPv6 address inside brackets/],
  ])("checkHost refuses %s", (_what, host, reason) => {
    expect(checkHost(host)).toMatch(reason);
  });

  test("a 253-character DNS name with a trailing dot is accepted", () => {
    const name = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    expect(name.length).toBe(253);
    expect(checkHost(name + ".")).toBeUndefined();
  });

  test.each(["::ffff:127.0.0.1", "::ffff:127.0.0.2", "::FFFF:127.1.2.3"])("isLoopbackHost treats the IPv4-mapped %s as loopback", (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });
  test("isLoopbackHost does not treat an IPv4-mapped non-loopback address as loopback", () => {
    expect(isLoopbackHost("::ffff:10.0.0.1")).toBe(false);
  });
});
