/** Which master runs scale commands (SPEC behaviour 8): the first proxy in `servers` decides. */
import dns from "node:dns";
import net from "node:net";
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

/**
 * The role as {@link resolveRole}, but a DNS name in `servers` that is not this machine's host
 * name is also looked up: when it resolves to one of this machine's addresses, this master decides.
 */
export async function resolveRoleResolving(
  config: Config,
  identities: Set<string> = localIdentities(),
  lookup: (host: string) => Promise<string[]> = async (host) => (await dns.promises.lookup(host, { all: true })).map((a) => a.address),
): Promise<{ role: Role; why: string }> {
  const plain = resolveRole(config, identities);
  const first = config.haproxy.servers[0];
  if (config.master.role !== "auto" || plain.role === "decider" || !first || net.isIP(first.host) !== 0) return plain;
  const addresses = await lookup(first.host).catch(() => [] as string[]);
  const mine = addresses.find((a) => identities.has(a.toLowerCase()));
  return mine ? { role: "decider", why: `${first.host}, the first of [haproxy] servers, resolves to ${mine}, an address of this machine` } : plain;
}
