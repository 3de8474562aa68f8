/**
 * Whether a hello may register: its credential, its address, the name it claims and the room
 * for new names. Pure: the listener gathers what it needs, this decides, and every refusal is a
 * fixed reason code with a fixed message (nothing the node sent is echoed).
 */
import { checkCredential, type CredentialKind } from "@autoscaler/shared";
import type { NameRecord } from "./name-book.js";

/** Why a hello was refused; each is a label of `autoscaler_connections_refused_total`. */
export type AdmissionRefusal =
  | "token"
  | "credential_name"
  | "credential_expired"
  | "shared_token"
  | "address"
  | "terminated"
  | "name_owned"
  | "launch_full"
  | "too_many_nodes"
  | "rate_limited";

/** A new name may register only while the agent entries stay under max_nodes + pending + this. */
export const REGISTRATION_MARGIN = 2;

/** What the listener knows when a hello arrives. */
export interface AdmissionContext {
  secret: string;
  allowShared: boolean;
  now: number;
  name: string;
  token: string;
  /** Why the hello's address or port may not be a backend (node_networks, node_ports). */
  addressProblem: string | undefined;
  /** Why this node may not come back (the master terminated it). */
  terminated: string | undefined;
  /** The name's first registration, from the book. */
  known: NameRecord | undefined;
  /** The name is in the registry or hosts.d now. */
  exists: boolean;
  launchNamesUsed: (launchId: string) => number;
  /** Agent entries now, and the most there may be. */
  registered: number;
  limit: number;
  /** False when new names arrive faster than the rate limit allows. */
  takeNewName: () => boolean;
}

/** The verdict: the credential kind (and launch) to register with, or a refusal. */
export type Admission =
  | {
      ok: true;
      kind: Exclude<CredentialKind, "operator">;
      launchId?: string;
      issueCredential: boolean;
      /** A name this master has never seen (not in the book, the registry or hosts.d). */
      fresh: boolean;
    }
  | { ok: false; reason: AdmissionRefusal; message: string };

const refuse = (reason: AdmissionRefusal, message: string): Admission => ({ ok: false, reason, message });

const CREDENTIAL_REFUSALS: Record<string, readonly [AdmissionRefusal, string]> = {
  TOKEN: ["token", "token refused: it is neither [master] token nor a credential issued under it"],
  CREDENTIAL_NAME: ["credential_name", "the credential speaks for another name; a node credential registers only the name it was issued for"],
  CREDENTIAL_EXPIRED: ["credential_expired", "the launch's join credential has expired (it holds until launch_timeout)"],
  SHARED_REFUSED: [
    "shared_token",
    "the cluster secret itself is refused for agents ([master] shared_token = refuse); give the node its own credential (autoscaler node-credential)",
  ],
};

/** Judge one hello. */
export function admit(ctx: AdmissionContext): Admission {
  const checked = checkCredential(ctx.token, ctx.secret, ctx.name, ctx.now, ctx.allowShared);
  if (!checked.ok) return refuse(...CREDENTIAL_REFUSALS[checked.code]!);
  if (ctx.addressProblem !== undefined) return refuse("address", `the address or port ${ctx.addressProblem}`);
  if (ctx.terminated !== undefined) return refuse("terminated", ctx.terminated);
  if (checked.kind === "launch") {
    const again = ctx.known?.launch === checked.launchId;
    if (!again && (ctx.known !== undefined || ctx.exists)) {
      return refuse("name_owned", "the name is already registered; a launch's join credential registers new names only");
    }
    if (!again && ctx.launchNamesUsed(checked.launchId) >= checked.count) {
      return refuse("launch_full", "the launch's join credential has registered as many nodes as the launch asked for");
    }
  }
  if (!ctx.exists) {
    if (ctx.registered >= ctx.limit) {
      return refuse(
        "too_many_nodes",
        `no room for another node: ${ctx.registered} agent entries, at most max_nodes + pending launches + ${REGISTRATION_MARGIN}`,
      );
    }
    if (!ctx.takeNewName()) return refuse("rate_limited", "too many new names in the last minute; try again shortly");
  }
  const fresh = ctx.known === undefined && !ctx.exists;
  if (checked.kind === "launch") return { ok: true, kind: "launch", launchId: checked.launchId, issueCredential: true, fresh };
  return { ok: true, kind: checked.kind, issueCredential: checked.kind === "shared", fresh };
}

/**
 * A token bucket for new names: `perMinute` at once, refilled at `perMinute` a minute. Pure
 * arithmetic on the clock passed in.
 */
export function createNameRate(perMinute: () => number): (now: number) => boolean {
  let tokens = Number.NaN;
  let at = 0;
  return (now) => {
    const size = perMinute();
    tokens = Number.isNaN(tokens) ? size : Math.min(size, tokens + ((now - at) / 60_000) * size);
    at = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
}
