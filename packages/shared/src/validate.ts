import { isIPv4, isIPv6 } from "node:net";

/** Backend and node names: what HAProxy accepts as a server name and what is safe as a file name. */
export const NAME_PATTERN = /^[A-Za-z0-9._-]{1,63}$/;

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why a value is not acceptable, or undefined when it is. Each check returns a sentence fragment. */
export type Problem = string | undefined;

/** Explain a value for a message: quoted, with control characters made visible. */
export function show(value: string): string {
  return JSON.stringify(value);
}

/** A host is a valid IPv4 address, IPv6 address (bare, or in brackets) or DNS name. */
export function checkHost(host: string): Problem {
  if (host.length === 0) return "is empty; expected an IPv4 address, an IPv6 address or a DNS name";
  if (/[\s]/.test(host)) return "contains white space; expected an IPv4 address, an IPv6 address or a DNS name";
  if (/[/\\]/.test(host)) return "contains a path separator; expected an IPv4 address, an IPv6 address or a DNS name";
  if (host.includes("%")) return "has a zone id (%); expected an address without one";
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (bare !== host) return isIPv6(bare) ? undefined : "is not a valid IPv6 address inside brackets";
  if (isIPv4(bare) || isIPv6(bare)) return undefined;
  const name = host.replace(/\.$/, "");
  if (name.length > 253) return "is longer than 253 characters; expected a DNS name";
  const labels = name.split(".");
  if (labels.some((l) => !DNS_LABEL.test(l))) {
    return "is not a valid IPv4 address, IPv6 address or DNS name (letters, digits and '-' in dot-separated labels of 1-63)";
  }
  // A name whose last label is all digits would be read as a (broken) IPv4 address.
  if (/^\d+$/.test(labels[labels.length - 1] ?? "")) return "is not a valid IPv4 address (each part 0-255) or DNS name";
  return undefined;
}

/** Strip IPv6 brackets so the address is stored in one spelling. */
export function normaliseHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** A TCP port is a whole number from 1 to 65535, written in decimal. */
export function checkPort(port: string | number): Problem {
  const text = String(port);
  if (!/^[1-9]\d*$/.test(text) && text !== "0") return "is not a port number; expected a whole number from 1 to 65535";
  const n = Number(text);
  if (n < 1 || n > 65535) return "is outside 1-65535; expected a whole number from 1 to 65535";
  return undefined;
}

/**
 * Backend names: 1-63 of letters, digits, '.', '_' and '-', not starting with '.'. A leading dot
 * would make a hidden file in hosts.d, which `list()` skips (it is also how temp files are named),
 * so such an entry would be served once and then silently dropped.
 */
export function checkName(name: string): Problem {
  if (name.startsWith(".")) {
    return "is not a valid name: it starts with '.'; expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'";
  }
  if (NAME_PATTERN.test(name)) return undefined;
  return "is not a valid name; expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'";
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  const bare = normaliseHost(host);
  if (bare === "localhost") return true;
  if (isIPv4(bare)) return bare.startsWith("127.");
  if (isIPv6(bare)) return bare === "::1" || /^(0{0,4}:){7}0{0,3}1$/.test(bare) || /^::ffff:127\.\d+\.\d+\.\d+$/i.test(bare);
  return false;
}

/** Format host and port for display and for HAProxy: IPv6 in brackets. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Split `host:port`, `[v6]:port` or `host`; the port is undefined when absent. */
export function splitHostPort(text: string): { host: string; port: string | undefined } {
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracket) return { host: bracket[1] ?? "", port: bracket[2] };
  if (isIPv6(text)) return { host: text, port: undefined };
  const i = text.lastIndexOf(":");
  if (i < 0) return { host: text, port: undefined };
  return { host: text.slice(0, i), port: text.slice(i + 1) };
}
