/**
 * Node credentials: what an agent presents in its hello instead of the cluster secret.
 *
 * The cluster secret is `[master] token`; the proxies hold it. A credential is an HMAC of that
 * secret over what it allows, so every proxy's master checks it with no shared store:
 *
 * - `asc1.node.<name>.<mac>`: speaks for `<name>` only. The operator issues one with
 *   `autoscaler node-credential <name>`; a master hands one out in `welcome` to a node that
 *   registered with a launch's join credential, and the agent keeps it for its reconnects.
 * - `asc1.launch.<launch id>.<count>.<expires>.<mac>`: a launch's join credential, given to
 *   `scale_up_command` as AUTOSCALER_JOIN_CREDENTIAL. It registers at most `<count>` new names,
 *   never a name the master already knows, until `<expires>` (Unix seconds: launch_timeout).
 * - the cluster secret itself (`shared`): the weaker mode of the seed's ini. A node holding it
 *   can speak for any name; `[master] shared_token = refuse` turns it off for agents.
 *
 * Changing `[master] token` revokes every credential issued under it.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** How a node proved who it is; `operator` is a hand-added host, which presents nothing. */
export type CredentialKind = "node" | "launch" | "shared" | "operator";

/** A checked credential, or a fixed code saying why not (never the credential's bytes). */
export type CheckedCredential =
  | { ok: true; kind: "node"; name: string }
  | { ok: true; kind: "launch"; launchId: string; count: number; expiresAt: number }
  | { ok: true; kind: "shared" }
  | { ok: false; code: "TOKEN" | "CREDENTIAL_NAME" | "CREDENTIAL_EXPIRED" | "SHARED_REFUSED" };

const PREFIX = "asc1";
const NODE = /^asc1\.node\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,62})\.([A-Za-z0-9_-]{43})$/;
const LAUNCH = /^asc1\.launch\.([A-Za-z0-9-]{1,64})\.([1-9][0-9]{0,5})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$/;

function mac(secret: string, message: string): string {
  return createHmac("sha256", secret).update(message).digest("base64url");
}

/** Equal in constant time; different lengths are unequal (hashing first makes the compare itself fixed-length). */
export function secretsEqual(given: string, expected: string): boolean {
  if (expected === "") return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The credential that speaks for `name` under `secret`. */
export function nodeCredential(secret: string, name: string): string {
  if (secret === "") throw new Error("no cluster secret ([master] token is empty)");
  return `${PREFIX}.node.${name}.${mac(secret, `node\0${name}`)}`;
}

/** A launch's join credential: `count` new names until `expiresAt` (ms; stored as whole seconds, rounded up). */
export function launchCredential(secret: string, launch: { launchId: string; count: number; expiresAt: number }): string {
  if (secret === "") throw new Error("no cluster secret ([master] token is empty)");
  const expires = Math.ceil(launch.expiresAt / 1000);
  return `${PREFIX}.launch.${launch.launchId}.${launch.count}.${expires}.${mac(secret, `launch\0${launch.launchId}\0${launch.count}\0${expires}`)}`;
}

/**
 * Check what a hello for `name` presented, at `now` (ms). An empty secret accepts nothing. With
 * `allowShared` false, the cluster secret itself is refused (SHARED_REFUSED).
 */
/**
 * The cluster's id in etcd: derived from the cluster secret (not the secret itself), so the
 * masters of one cluster agree on it and another cluster on the same prefix is told apart.
 */
export function clusterId(secret: string): string {
  return mac(secret, `${PREFIX}.cluster-id`).slice(0, 22);
}

export function checkCredential(given: string, secret: string, name: string, now: number, allowShared: boolean): CheckedCredential {
  if (secret === "") return { ok: false, code: "TOKEN" };
  if (secretsEqual(given, secret)) return allowShared ? { ok: true, kind: "shared" } : { ok: false, code: "SHARED_REFUSED" };
  const node = NODE.exec(given);
  if (node) {
    const [, forName, sig] = node as unknown as [string, string, string];
    if (!secretsEqual(sig, mac(secret, `node\0${forName}`))) return { ok: false, code: "TOKEN" };
    return forName === name ? { ok: true, kind: "node", name } : { ok: false, code: "CREDENTIAL_NAME" };
  }
  const launch = LAUNCH.exec(given);
  if (launch) {
    const [, launchId, count, expires, sig] = launch as unknown as [string, string, string, string, string];
    if (!secretsEqual(sig, mac(secret, `launch\0${launchId}\0${count}\0${expires}`))) return { ok: false, code: "TOKEN" };
    const expiresAt = Number(expires) * 1000;
    if (now > expiresAt) return { ok: false, code: "CREDENTIAL_EXPIRED" };
    return { ok: true, kind: "launch", launchId, count: Number(count), expiresAt };
  }
  return { ok: false, code: "TOKEN" };
}

/** What check-config, the master's start and status say once while agents may present the cluster secret. */
export const SHARED_TOKEN_NOTE =
  "agents may register with the cluster secret itself ([master] shared_token = allow): the weaker mode, where a node holding it can speak for any name. Give each node its own credential (autoscaler node-credential, or a launch's AUTOSCALER_JOIN_CREDENTIAL), then set shared_token = refuse";
