/** Which master runs scale commands (SPEC behaviour 8): the first proxy in `servers` decides. */
import os from "node:os";
import type { Config } from "@autoscaler/shared";

/** The two roles a master can have. */
export type Role = "decider" | "follower";

/** The names and addresses this machine answers to: host name and every interface address. */
export function localIdentities(): Set<string> {
  const ids = new Set<string>([os.hostname().toLowerCase(), os.hostname().split(".")[0]!.toLowerCase()]);
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) ids.add(a.address.toLowerCase());
  return ids;
}

/**
 * The role from the config: `decider`/`follower` as set; `auto` decides when the first entry
 * of `servers` is this machine (by host name or address), or when `servers` is empty.
 */
export function resolveRole(config: Config, identities: Set<string> = localIdentities()): { role: Role; why: string } {
  const setting = config.master.role;
  if (setting !== "auto") return { role: setting, why: `[master] role = ${setting}` };
  const first = config.haproxy.servers[0];
  if (!first) return { role: "decider", why: "[haproxy] servers is empty, so this is the only proxy" };
  const me = identities.has(first.host.toLowerCase());
  return me
    ? { role: "decider", why: `this machine is ${first.host}, the first of [haproxy] servers` }
    : { role: "follower", why: `the first of [haproxy] servers is ${first.host}, not this machine` };
}
