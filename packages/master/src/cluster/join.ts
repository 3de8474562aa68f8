/**
 * A master joining its cluster in etcd: it opens the session, checks the cluster id under the
 * prefix, campaigns, and ties the election to the scaler (lead on a term won, follow when it
 * ends, the leader's view copied to a follower). Registration is not shared: every agent
 * already reports to every proxy, so each master sees every node itself.
 */
import os from "node:os";
import path from "node:path";
import { AutoscalerError, EXIT_CONFIG, clusterId, type Config, type Logger } from "@autoscaler/shared";
import { localIdentities, type Role } from "../role.js";
import type { Scaler } from "../scaler.js";
import { callTimeoutMs, openEtcd } from "./etcd.js";
import { clusterIdProblem, clusterKeys, startCampaign, type Campaign, type ClusterStatus } from "./campaign.js";
import { parseState } from "../state-store.js";
import { createSharedDemandStore, createSharedStateStore, parseSharedState } from "./shared-state.js";
import { createStateCache, STATE_CACHE_FILE } from "./state-cache.js";

export interface JoinOptions {
  config: Config;
  /** False with `[master] role = follower`: this master never leads. */
  candidate: boolean;
  scaler: Scaler;
  logger: Logger;
  now: () => number;
  /** The leader's drains changed what a follower leaves out of HAProxy. */
  onExcludedChange: () => void;
  /** A backend the leader's finished scale-down removed: remove it from this proxy's hosts.d too. */
  removeHost: (name: string) => Promise<void>;
  /** The leader's launch output vouches for a backend's instance id: record it in this proxy's hosts.d too. */
  vouch: (name: string, instanceId: string) => Promise<void>;
}

/** This master's part in the cluster. */
export interface ClusterMembership {
  role(): { role: Role; why: string };
  leading(): boolean;
  status(): ClusterStatus;
  stop(): Promise<void>;
}

/** The name this master campaigns under: the entry of [haproxy] servers that is this machine, else its host name. */
export function memberName(config: Config, identities: Set<string> = localIdentities()): string {
  if (config.cluster.member) return config.cluster.member;
  return config.haproxy.servers.find((s) => identities.has(s.host.toLowerCase()))?.host ?? os.hostname();
}

export async function joinCluster(o: JoinOptions): Promise<ClusterMembership> {
  const { config, logger } = o;
  const prefix = config.etcdPrefix;
  const keys = clusterKeys(prefix);
  const session = await openEtcd(config.cluster);
  const id = clusterId(config.master.token);
  // Another cluster on this prefix is refused at start when etcd answers; otherwise the campaign checks it once it does.
  const first = await Promise.race([
    clusterIdProblem(session, prefix, id).catch(() => "unreachable" as const),
    new Promise<"unreachable">((r) => setTimeout(() => r("unreachable"), callTimeoutMs(config.cluster.lease_ttl) + 500).unref()),
  ]);
  if (first !== undefined && first !== "unreachable") {
    session.close();
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `cluster.prefix: ${first}`, { exitCode: EXIT_CONFIG });
  }
  if (first === "unreachable") {
    logger.warn("etcd does not answer yet: this master keeps HAProxy in step and waits for it; no master decides until it answers", {
      event: "etcd_waiting",
      endpoints: config.cluster.etcd,
    });
  }
  const member = memberName(config);
  // Before any agent is admitted: the freshest shared state this master can have, etcd's when it
  // answers, else the copy its last run kept, so a restarted master never admits again, nor serves,
  // a node the cluster scaled down while it was away.
  const cache = createStateCache(path.join(config.master.state_dir, STATE_CACHE_FILE), logger);
  const fromEtcd = first === "unreachable" ? undefined : await session.get(keys.state).catch(() => undefined);
  const cached = fromEtcd ? undefined : await cache.read();
  /** A follower's copy of the shared state (etcd's, else the cache's): what the leader's drains leave out, remove and vouch for. */
  const follow = (text: string | undefined, fromCache = false) => {
    const durable = fromCache
      ? text === undefined
        ? undefined
        : parseState(text, cache.file, `It is only a copy of etcd's ${keys.state}: delete it`, "act")
      : parseSharedState(text, keys.state);
    if (!durable) return;
    if (!fromCache) cache.keep(text!);
    const seen = o.scaler.observe(durable);
    if (seen.excludedChanged) o.onExcludedChange();
    for (const name of seen.removed) {
      logger.info("removing a backend the leader's scale-down removed", { event: "follower_removed", node: name });
      o.removeHost(name).catch((err: Error) => logger.error("cannot remove hosts.d entry", { node: name, error: err.message }));
    }
    for (const v of seen.vouched) {
      o.vouch(v.node, v.instanceId).catch((err: Error) =>
        logger.error("cannot record the launch's instance id in hosts.d", { node: v.node, error: err.message }),
      );
    }
  };
  try {
    if (fromEtcd) follow(fromEtcd.value);
    else follow(cached, true);
  } catch (err) {
    logger.warn("the shared state this master starts from does not parse; it waits for etcd's", { error: (err as Error).message });
  }
  const campaign: Campaign = startCampaign({
    session,
    endpoints: config.cluster.etcd,
    prefix,
    member,
    ttlSeconds: config.cluster.lease_ttl,
    pollMs: Math.min(1000, Math.max(250, config.master.interval * 1000)),
    clusterId: id,
    candidate: o.candidate,
    logger,
    now: o.now,
    onLead: (term) =>
      o.scaler.lead(
        createSharedStateStore({
          session,
          key: keys.state,
          fence: term.fence,
          legacyFile: path.join(config.master.state_dir, "state.json"),
          logger,
          onFenced: (reason) => campaign.lose(reason),
          onHeld: (text) => cache.keep(text),
        }),
        createSharedDemandStore({ session, key: keys.demand, fence: term.fence, now: o.now }),
      ),
    onFollow: (reason) => o.scaler.follow(reason),
    onSharedState: (text) => {
      try {
        follow(text);
        campaign.setProblem(undefined);
      } catch (err) {
        campaign.setProblem((err as Error).message);
      }
    },
  });
  return {
    leading: () => campaign.leading(),
    role() {
      if (campaign.leading()) return { role: "decider", why: `this master (${member}) leads the cluster in etcd at ${prefix}` };
      const s = campaign.status();
      if (!s.etcd.up) return { role: "follower", why: `etcd does not answer, so no master decides (this one is ${member})` };
      if (!o.candidate) return { role: "follower", why: "[master] role = follower: this master never campaigns" };
      return { role: "follower", why: s.leader ? `${s.leader.member} leads the cluster in etcd at ${prefix}` : `no master leads yet in etcd at ${prefix}` };
    },
    status: () => campaign.status(),
    async stop() {
      await campaign.stop();
      await cache.settled();
    },
  };
}
