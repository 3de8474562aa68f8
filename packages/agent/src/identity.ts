/** Who the node says it is: name, address and instance id, from the config or found on the machine. */
import os from "node:os";
import type { Config, Logger } from "@autoscaler/shared/core";
import { httpAttempt, type HttpAnswer, type HttpFailure } from "./http-request.js";

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

/** How long the agent keeps asking the metadata service at start, and its pauses between tries. */
export const METADATA_WAIT_MS = 20_000;
const FIRST_PAUSE_MS = 250;
const MAX_PAUSE_MS = 4000;

/**
 * Failures a metadata service may recover from while the agent waits: no answer yet, no route
 * yet (early boot), a reset. A refused connection or a DNS failure means there is none to ask.
 */
const PASSING_FAILURES = new Set(["timeout", "ENETUNREACH", "EHOSTUNREACH", "ECONNRESET", "ETIMEDOUT", "EPIPE"]);

/** One exchange with the metadata service: the id, a failure worth another try, or one that is not. */
export type MetadataAnswer = { id: string } | { retry: string } | { stop: string };

function classify(step: string, a: HttpAnswer | HttpFailure): MetadataAnswer | HttpAnswer {
  if ("failure" in a) {
    const why = `${step}: ${a.failure === "timeout" ? "no answer in time" : a.failure}`;
    return PASSING_FAILURES.has(a.failure) ? { retry: why } : { stop: why };
  }
  if (a.status >= 200 && a.status < 300) return a;
  // Throttled (429) or a server error: IMDS says to wait and try again. Any other answer (403 when
  // IMDSv2 is off or blocked, 404…) will not change by waiting.
  const why = `${step}: HTTP ${a.status}`;
  return a.status === 429 || a.status >= 500 ? { retry: why } : { stop: why };
}

/**
 * One IMDSv2 exchange (a token, then the instance id with it), each request within `timeoutMs`.
 * `baseUrl` comes from $AUTOSCALER_METADATA_URL when set, so tests can point it at loopback.
 */
export async function askInstanceId(baseUrl: string, timeoutMs = 1000): Promise<MetadataAnswer> {
  const token = classify(
    "token",
    await httpAttempt(`${baseUrl}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" }, timeoutMs, body: true }),
  );
  if (!("status" in token)) return token;
  const answer = classify(
    "instance-id",
    await httpAttempt(`${baseUrl}/latest/meta-data/instance-id`, { headers: { "x-aws-ec2-metadata-token": token.body }, timeoutMs, body: true }),
  );
  if (!("status" in answer)) return answer;
  const id = answer.body.trim();
  return /^[A-Za-z0-9._:-]{1,128}$/.test(id) ? { id } : { stop: "instance-id: the answer is not an instance id" };
}

/**
 * Ask the metadata service, trying again with backoff (0.25 s doubling to 4 s) for at most
 * `waitMs` while its failures may pass; the id, or why there is none.
 */
export async function fetchInstanceId(
  baseUrl: string,
  o: { waitMs?: number; timeoutMs?: number; sleep?: (ms: number) => Promise<void>; now?: () => number; onRetry?: (why: string) => void } = {},
): Promise<{ id: string } | { none: string }> {
  const { waitMs = METADATA_WAIT_MS, timeoutMs = 1000, sleep = (ms) => new Promise((r) => setTimeout(r, ms)), now = Date.now } = o;
  const until = now() + waitMs;
  for (let pause = FIRST_PAUSE_MS, tries = 1; ; pause = Math.min(MAX_PAUSE_MS, pause * 2), tries++) {
    const answer = await askInstanceId(baseUrl, timeoutMs);
    if ("id" in answer) return answer;
    if ("stop" in answer) return { none: answer.stop };
    if (now() + pause >= until) return { none: `${answer.retry} (${tries} tries in ${Math.round(waitMs / 1000)} s)` };
    o.onRetry?.(answer.retry);
    await sleep(pause);
  }
}

/** The node's identity; refuses to start without an address HAProxy could reach. No instance id is better than a made-up one. */
export async function resolveIdentity(
  config: Config,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<{ name: string; address: string; port: number; instanceId: string | undefined }> {
  const name = config.agent.name || nameFromHostname(os.hostname());
  const address = config.agent.address || firstExternalIPv4();
  if (!address) throw new Error("agent.address is empty and this machine has no non-internal IPv4 address; set [agent] address");
  return { name, address, port: config.agent.port, instanceId: config.agent.instance_id || (await instanceIdFromMetadata(env, logger)) };
}

async function instanceIdFromMetadata(env: NodeJS.ProcessEnv, logger: Logger): Promise<string | undefined> {
  const url = env.AUTOSCALER_METADATA_URL ?? "http://169.254.169.254";
  let told = false;
  const found = await fetchInstanceId(url, {
    onRetry: (why) => {
      if (told) return;
      told = true;
      logger.info(`the metadata service did not answer (${why}); asking again for up to ${METADATA_WAIT_MS / 1000} s`, { url });
    },
  });
  if ("id" in found) return found.id;
  logger.warn(
    "no instance id: [agent] instance_id is empty and the metadata service gave none; this node's hello carries none, so a scale-down runs scale_down_command with INSTANCE_ID empty. Set [agent] instance_id (the user-data's $INSTANCE_ID)",
    { url, why: found.none },
  );
  return undefined;
}
