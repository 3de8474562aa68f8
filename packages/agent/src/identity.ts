/** Who the node says it is: name, address and instance id, from the config or found on the machine. */
import os from "node:os";
import type { Config } from "@autoscaler/shared/core";
import { httpRequest, type HttpAnswer } from "./http-request.js";

/** The host name made into a valid node name (1-63 of A-Z a-z 0-9 . _ -). */
export function nameFromHostname(hostname: string): string {
  const cleaned = hostname.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 63);
  return cleaned === "" || cleaned === "." || cleaned === ".." ? "node" : cleaned;
}

/** The first non-internal IPv4 address of this machine, if any. */
export function firstExternalIPv4(interfaces = os.networkInterfaces()): string | undefined {
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * Ask the EC2 instance metadata service (IMDSv2) for the instance id, with a short timeout.
 * `baseUrl` comes from $AUTOSCALER_METADATA_URL when set, so tests can point it at loopback.
 */
export async function fetchInstanceId(baseUrl: string, timeoutMs = 1000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  const ok = (a: HttpAnswer | undefined): a is HttpAnswer => a !== undefined && a.status >= 200 && a.status < 300;
  const tokenRes = await httpRequest(`${baseUrl}/latest/api/token`, {
    method: "PUT",
    headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" },
    timeoutMs,
    body: true,
  });
  if (!ok(tokenRes)) return undefined;
  const idRes = await httpRequest(`${baseUrl}/latest/meta-data/instance-id`, {
    headers: { "x-aws-ec2-metadata-token": tokenRes.body },
    timeoutMs: Math.max(1, deadline - Date.now()),
    body: true,
  });
  if (!ok(idRes)) return undefined;
  const id = idRes.body.trim();
  return /^[A-Za-z0-9._:-]{1,128}$/.test(id) ? id : undefined;
}

/** The node's identity; refuses to start without an address HAProxy could reach. */
export async function resolveIdentity(config: Config, env: NodeJS.ProcessEnv): Promise<{ name: string; address: string; port: number; instanceId: string }> {
  const name = config.agent.name || nameFromHostname(os.hostname());
  const address = config.agent.address || firstExternalIPv4();
  if (!address) throw new Error("agent.address is empty and this machine has no non-internal IPv4 address; set [agent] address");
  const instanceId =
    config.agent.instance_id || (await fetchInstanceId(env.AUTOSCALER_METADATA_URL ?? "http://169.254.169.254")) || nameFromHostname(os.hostname());
  return { name, address, port: config.agent.port, instanceId };
}
