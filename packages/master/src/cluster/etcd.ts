/**
 * The one file that talks to etcd (through the `etcd3` client): the handful of operations the
 * election and the shared state need, each with a deadline, so a partitioned etcd makes a call
 * fail in time instead of hanging. Everything above it (campaign.ts, the fenced state store)
 * speaks in these terms only.
 */
import { promises as fs } from "node:fs";
import { Etcd3, EtcdLeaseInvalidError, type IKeyValue, type IOptions, type Lease } from "etcd3";
import { AutoscalerError, EXIT_CONFIG, type Config } from "@autoscaler/shared";

/** A key etcd holds, with the revisions the election and the fencing compare. */
export interface EtcdEntry {
  key: string;
  value: string;
  /** The revision that created the key (decimal string: etcd's int64). */
  createRevision: string;
  modRevision: string;
  /** The lease the key is attached to ("0": none). */
  lease: string;
}

/** A lease this session granted. */
export interface HeldLease {
  id: string;
  /** Renew it once: the TTL etcd gives it from now (seconds), or throws; `expired` when etcd no longer knows it. */
  renew(deadlineMs: number): Promise<{ ttl: number } | { expired: true }>;
  /** Give it up (its keys vanish); best effort, bounded by the call deadline. */
  revoke(): Promise<void>;
}

/** A condition a write needs to hold: the writer's election key still exists, created at that revision. */
export interface Fence {
  key: string;
  createRevision: string;
}

/** The operations on etcd the election and the shared state use. */
export interface EtcdSession {
  grant(ttlSeconds: number): Promise<HeldLease>;
  /** Create `key` bound to `lease` unless it exists; its create revision either way. */
  createOwned(key: string, value: string, lease: HeldLease): Promise<{ created: boolean; createRevision: string }>;
  /** The key under `prefix` with the lowest create revision (the election's first in line). */
  first(prefix: string): Promise<EtcdEntry | undefined>;
  list(prefix: string): Promise<EtcdEntry[]>;
  get(key: string): Promise<EtcdEntry | undefined>;
  /** Put `value` at `key` if absent; the value held afterwards (this one, or the one already there). */
  putIfAbsent(key: string, value: string): Promise<string>;
  /**
   * Put each key's value only while `fence` holds (and, for `absent` keys, only if they do not
   * exist yet): one transaction; false when a condition failed and nothing was written.
   */
  fencedPut(fence: Fence, puts: Record<string, string>, absent?: readonly string[]): Promise<boolean>;
  /** Seconds left on a lease (any holder's), or undefined when etcd does not know it. */
  leaseRemaining(id: string): Promise<number | undefined>;
  close(): void;
}

/** Deadline of every unary call: well under a lease's TTL, so a lost etcd is noticed in time. */
export function callTimeoutMs(leaseTtlSeconds: number): number {
  return Math.min(3000, Math.max(500, (leaseTtlSeconds * 1000) / 4));
}

/**
 * Read the TLS files named in [cluster] now, so a missing or unreadable one stops the master at
 * start (exit 78, naming the key) rather than at the first connection.
 */
export async function readTlsFiles(cluster: Config["cluster"]): Promise<IOptions["credentials"] | undefined> {
  const read = async (key: "ca" | "cert" | "key") => {
    const file = cluster[key];
    if (file === "") return undefined;
    try {
      return await fs.readFile(file);
    } catch (err) {
      throw new AutoscalerError(
        "AUTOSCALER_CONFIG_INVALID",
        `cluster.${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); expected a readable PEM file`,
        {
          exitCode: EXIT_CONFIG,
        },
      );
    }
  };
  const [ca, cert, key] = [await read("ca"), await read("cert"), await read("key")];
  if (!ca && !cert) return undefined;
  for (const [name, pem] of [
    ["ca", ca],
    ["cert", cert],
    ["key", key],
  ] as const) {
    if (pem && !pem.toString("utf8").includes("-----BEGIN ")) {
      throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `cluster.${name}: ${cluster[name]} is not PEM; expected a file with a -----BEGIN line`, {
        exitCode: EXIT_CONFIG,
      });
    }
  }
  return { rootCertificate: ca ?? Buffer.alloc(0), ...(cert ? { certChain: cert } : {}), ...(key ? { privateKey: key } : {}) };
}

const entry = (kv: IKeyValue): EtcdEntry => ({
  key: kv.key.toString("utf8"),
  value: kv.value.toString("utf8"),
  createRevision: String(kv.create_revision),
  modRevision: String(kv.mod_revision),
  lease: String(kv.lease ?? "0"),
});

/** A session on the endpoints of [cluster]; it connects lazily, so an etcd that is down is not an error here. */
export async function openEtcd(cluster: Config["cluster"]): Promise<EtcdSession> {
  const credentials = await readTlsFiles(cluster);
  const timeout = callTimeoutMs(cluster.lease_ttl);
  const client = new Etcd3({
    hosts: cluster.etcd,
    dialTimeout: timeout,
    ...(credentials ? { credentials } : {}),
    ...(cluster.user ? { auth: { username: cluster.user, password: cluster.password } } : {}),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
  });
  return {
    async grant(ttlSeconds) {
      const lease: Lease = client.lease(ttlSeconds, { autoKeepAlive: false, deadline: Date.now() + timeout });
      // A failed grant also emits `lost`; without a listener that would be an unhandled error event.
      lease.on("lost", () => undefined);
      const id = await lease.grant();
      return {
        id,
        async renew(deadlineMs) {
          try {
            const res = await lease.keepaliveOnce({ deadline: Date.now() + deadlineMs });
            return { ttl: Number(res.TTL) };
          } catch (err) {
            if (err instanceof EtcdLeaseInvalidError) return { expired: true };
            throw err;
          }
        },
        async revoke() {
          await lease.revoke({ deadline: Date.now() + timeout });
        },
      };
    },
    async createOwned(key, value, lease) {
      const res = await client.if(key, "Create", "==", 0).then(client.put(key).value(value).lease(lease.id)).else(client.get(key)).commit();
      if (res.succeeded) return { created: true, createRevision: String(res.header.revision) };
      const kv = res.responses[0]?.response_range?.kvs[0];
      return { created: false, createRevision: kv ? String(kv.create_revision) : "0" };
    },
    async first(prefix) {
      const res = await client.getAll().prefix(prefix).sort("Create", "Ascend").limit(1).exec();
      return res.kvs[0] ? entry(res.kvs[0]) : undefined;
    },
    async list(prefix) {
      const res = await client.getAll().prefix(prefix).exec();
      return res.kvs.map(entry);
    },
    async get(key) {
      const res = await client.get(key).exec();
      return res.kvs[0] ? entry(res.kvs[0]) : undefined;
    },
    async putIfAbsent(key, value) {
      const res = await client.if(key, "Create", "==", 0).then(client.put(key).value(value)).else(client.get(key)).commit();
      if (res.succeeded) return value;
      return res.responses[0]?.response_range?.kvs[0]?.value.toString("utf8") ?? "";
    },
    async fencedPut(fence, puts, absent = []) {
      let txn = client.if(fence.key, "Create", "==", fence.createRevision);
      for (const key of absent) txn = txn.and(key, "Create", "==", 0);
      const res = await txn.then(...Object.entries(puts).map(([key, value]) => client.put(key).value(value))).commit();
      return res.succeeded;
    },
    async leaseRemaining(id) {
      const res = await client.leaseClient.leaseTimeToLive({ ID: id });
      const ttl = Number(res.TTL);
      return ttl < 0 ? undefined : ttl;
    },
    close() {
      client.close();
    },
  };
}
