/**
 * Host key verification against an OpenSSH known_hosts file: plain, hashed (`|1|salt|hash`)
 * and `[host]:port` entries, `*`/`?` patterns, `!` negation and `@revoked`. An unknown or
 * changed key is refused with its SHA256 fingerprint and the line that would trust it.
 */
import { createHash, createHmac } from "node:crypto";

/** One usable known_hosts line. */
export interface KnownHostLine {
  marker: "" | "@revoked" | "@cert-authority";
  patterns: string;
  keyType: string;
  key: Buffer;
  line: number;
}

/** Parse known_hosts text; comment, blank and malformed lines are skipped. */
export function parseKnownHosts(text: string): KnownHostLine[] {
  const out: KnownHostLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const parts = line.split(/\s+/);
    let marker: KnownHostLine["marker"] = "";
    if (parts[0] === "@revoked" || parts[0] === "@cert-authority") marker = parts.shift() as KnownHostLine["marker"];
    const [patterns, keyType, b64] = parts;
    if (!patterns || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return;
    out.push({ marker, patterns, keyType, key: Buffer.from(b64, "base64"), line: i + 1 });
  });
  return out;
}

/** The name known_hosts uses for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${escaped}$`, "i");
}

function hashedMatches(entry: string, name: string): boolean {
  const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(entry);
  if (!m) return false;
  const digest = createHmac("sha1", Buffer.from(m[1]!, "base64")).update(name).digest("base64");
  return digest === m[2];
}

/** True when a line's host patterns match `name`: any positive match and no negated one. */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith("|1|")) return hashedMatches(patterns, name);
  let matched = false;
  for (const p of patterns.split(",")) {
    const negated = p.startsWith("!");
    const body = negated ? p.slice(1) : p;
    if (globToRegExp(body).test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** The key type written inside an SSH public key blob (its first string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return "unknown";
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString("latin1");
}

/** OpenSSH's fingerprint of a key blob: `SHA256:` and unpadded base64. */
export function fingerprint(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The verdict on a presented host key. `message` says what to do when it is refused. */
export type HostKeyVerdict = { ok: true } | { ok: false; reason: "unknown" | "changed" | "revoked"; message: string };

/** Decide whether `blob` is the trusted key of host:port according to `lines` (read from `file`). */
export function verifyHostKey(lines: KnownHostLine[], file: string, host: string, port: number, blob: Buffer): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const type = keyTypeOf(blob);
  const fp = fingerprint(blob);
  const trustLine = `${name} ${type} ${blob.toString("base64")}`;
  const forHost = lines.filter((l) => l.marker !== "@cert-authority" && patternsMatch(l.patterns, name));
  if (forHost.some((l) => l.marker === "@revoked" && l.key.equals(blob))) {
    return { ok: false, reason: "revoked", message: `the host key of ${name} (${type} ${fp}) is marked @revoked in ${file}; refusing to connect` };
  }
  const trusted = forHost.filter((l) => l.marker === "");
  if (trusted.some((l) => l.key.equals(blob))) return { ok: true };
  const check = `check it on the proxy with: ssh-keygen -lf /etc/ssh/ssh_host_${type.replace(/^ssh-|^ecdsa-sha2-nistp\d+$/, (m) => (m.startsWith("ecdsa") ? "ecdsa" : ""))}_key.pub`;
  const sameType = trusted.filter((l) => keyTypeOf(l.key) === type);
  if (trusted.length > 0 && sameType.length === 0) {
    const others = [...new Set(trusted.map((l) => keyTypeOf(l.key)))].join(", ");
    return {
      ok: false,
      reason: "unknown",
      message: `the host key of ${name} is not in ${file}: it presented ${type} ${fp}, and ${file} trusts only a key of another type (${others}) for it. To trust this one too, ${check}, then add this line to ${file}: ${trustLine}`,
    };
  }
  if (sameType.length > 0) {
    const lineNos = sameType.map((l) => l.line).join(", ");
    return {
      ok: false,
      reason: "changed",
      message: `the host key of ${name} has CHANGED: it presented ${type} ${fp}, but ${file} line ${lineNos} trusts another key. This may be an attack. If the proxy's key was really replaced (${check}), replace line ${lineNos} of ${file} with: ${trustLine}`,
    };
  }
  return {
    ok: false,
    reason: "unknown",
    message: `the host key of ${name} is not in ${file}: it presented ${type} ${fp}. To trust it, ${check}, then add this line to ${file}: ${trustLine}`,
  };
}

/** The host key algorithms a client may ask for, in ssh2's default order. */
const HOST_KEY_ALGORITHMS = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];

/**
 * The host key algorithms to offer a proxy, those of the keys known_hosts trusts for it first
 * (as OpenSSH does), so a proxy whose ECDSA or RSA key is trusted presents that one rather
 * than an ed25519 key the file does not have.
 */
export function hostKeyAlgorithms(lines: KnownHostLine[], host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  const types = new Set(lines.filter((l) => l.marker === "" && patternsMatch(l.patterns, name)).map((l) => keyTypeOf(l.key)));
  const preferred = [...types]
    .flatMap((t) => (t === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [t]))
    .filter((a) => HOST_KEY_ALGORITHMS.includes(a));
  return [...preferred, ...HOST_KEY_ALGORITHMS.filter((a) => !preferred.includes(a))];
}
