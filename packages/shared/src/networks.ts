/**
 * Which addresses a node may register (`[master] node_networks`). A node's word is checked: an
 * agent's `hello` may name only an IP literal inside the allowed networks, so a compromised node
 * cannot point HAProxy at the metadata service, the proxy's own loopback or a broadcast address.
 */
import net from "node:net";

/** One network in CIDR form. */
export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/**
 * Never a backend unless `node_networks` lists them: loopback, link-local (the EC2 metadata
 * service at 169.254.169.254 among them), unspecified, multicast and broadcast.
 */
export const NEVER_BY_DEFAULT: readonly Cidr[] = [
  { address: "0.0.0.0", prefix: 8, family: "ipv4" },
  { address: "127.0.0.0", prefix: 8, family: "ipv4" },
  { address: "169.254.0.0", prefix: 16, family: "ipv4" },
  { address: "224.0.0.0", prefix: 4, family: "ipv4" },
  { address: "255.255.255.255", prefix: 32, family: "ipv4" },
  { address: "::", prefix: 128, family: "ipv6" },
  { address: "::1", prefix: 128, family: "ipv6" },
  { address: "fe80::", prefix: 10, family: "ipv6" },
  { address: "ff00::", prefix: 8, family: "ipv6" },
];

/** Parse `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128); undefined when it is not one. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return undefined;
  const version = net.isIP(m[1]!);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { address: m[1]!, prefix, family: version === 4 ? "ipv4" : "ipv6" };
}

const blockListOf = (cidrs: readonly Cidr[]) => {
  const list = new net.BlockList();
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family);
  return list;
};
const NEVER = blockListOf(NEVER_BY_DEFAULT);

/**
 * Why a node's address may not register, or undefined when it may: it must be an IP literal
 * (DNS names stay allowed for `add-host`, never from a node); with `allowed` set, inside one of
 * those networks; without it, any unicast address outside NEVER_BY_DEFAULT.
 */
export function nodeAddressProblem(address: string, allowed: readonly Cidr[]): string | undefined {
  const version = net.isIP(address);
  if (version === 0) return "is not an IP address (a node names itself by IP; DNS names are for add-host)";
  const family: "ipv4" | "ipv6" = version === 4 ? "ipv4" : "ipv6";
  // An IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const [addr, fam]: [string, "ipv4" | "ipv6"] = mapped ? [mapped[1]!, "ipv4"] : [address, family];
  if (allowed.length > 0) return blockListOf(allowed).check(addr, fam) ? undefined : "is outside [master] node_networks";
  return NEVER.check(addr, fam)
    ? "is loopback, link-local, unspecified, multicast or broadcast, which no node may register unless [master] node_networks lists it"
    : undefined;
}
