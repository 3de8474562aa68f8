/**
 * Leader election on etcd (SPEC behaviour 8, with `[cluster] etcd`). Every master holds a lease
 * and, bound to it, a key `<prefix>election/<lease id>`; the key with the lowest create revision
 * leads. The leader stops acting before its lease can have expired: when etcd says the lease is
 * gone, or when `lease_ttl` minus a margin has passed since the last renewal etcd confirmed
 * (measured from when that renewal was sent, on this machine's monotonic clock), whichever
 * comes first. Every write of the shared state is conditioned on the leader's key (fence.ts),
 * so a leader that was paused or cut off and has not noticed yet cannot write either.
 *
 * Built on etcd3's leases and transactions rather than its Election class: that class ends a
 * campaign only after twice the TTL and does not expose when a renewal was sent, and both are
 * needed to stop before the lease ends.
 */
import type { Logger } from "@autoscaler/shared";
import type { EtcdEntry, EtcdSession, Fence, HeldLease } from "./etcd.js";

/** One leadership of this master: what its writes are fenced on. */
export interface Term {
  /** Counts this master's terms since start. */
  number: number;
  fence: Fence;
  leaseId: string;
  /** Wall-clock ms when it took over. */
  since: number;
}

/** What `status` shows about the cluster. */
export interface ClusterStatus {
  prefix: string;
  member: string;
  etcd: { up: boolean; since: string; endpoints: string[] };
  role: "leader" | "follower";
  leader: { member: string; since: string | null; lease_remaining_seconds: number | null } | null;
  /** Every master campaigning now, the leader first. */
  members: { member: string; role: "leader" | "follower" }[];
  leader_changes: number;
  /** Why this master cannot lead or follow normally (another cluster's prefix, a state that does not parse…). */
  problem: string | null;
}

export interface CampaignOptions {
  session: EtcdSession;
  endpoints: string[];
  prefix: string;
  member: string;
  ttlSeconds: number;
  /** How often the election and the shared state are read. */
  pollMs: number;
  /** This cluster's id under the prefix: another cluster's masters on the same prefix are refused. */
  clusterId: string;
  /** False for `[master] role = follower`: it reads the leader and the shared state but never campaigns. */
  candidate: boolean;
  logger: Logger;
  now: () => number;
  monotonic?: () => number;
  /** This master now leads: take over (load the shared state, reconcile). Rejects when it cannot; tried again next round. */
  onLead(term: Term): Promise<void>;
  /** This master no longer leads: stop acting at once. */
  onFollow(reason: string): void;
  /** A follower's copy of the shared state changed. */
  onSharedState?(text: string | undefined): void;
}

/** A running campaign. */
export interface Campaign {
  /** True while this master leads and its lease is surely alive (checked before each action). */
  leading(): boolean;
  term(): Term | undefined;
  /** Stop leading now (a fenced write was refused). */
  lose(reason: string): void;
  status(): ClusterStatus;
  /** Problems a taking-over leader met (a state that does not parse), shown until it succeeds. */
  setProblem(problem: string | undefined): void;
  /** Resign (revoke the lease, so another master takes over at once) and stop. */
  stop(): Promise<void>;
}

/** The part of `lease_ttl` kept in hand: a leader stops acting this long before its lease could expire. */
export function leaseMarginMs(ttlSeconds: number): number {
  return Math.max(500, (ttlSeconds * 1000) / 4);
}

/** The keys under the prefix. */
export function clusterKeys(prefix: string) {
  return { clusterId: `${prefix}cluster-id`, election: `${prefix}election/`, leader: `${prefix}leader`, state: `${prefix}state`, demand: `${prefix}demand` };
}

/** A renewal that failed (an endpoint down, a raft election) is tried again after this long. */
const RENEW_RETRY_MS = 100;

/** After a take-over that failed (a shared state that does not parse), wait this long before trying again. */
const TAKEOVER_RETRY_MS = 5000;

/** The problem when the prefix holds another cluster's id (undefined: it is ours, or was free and now is). */
export async function clusterIdProblem(session: EtcdSession, prefix: string, clusterId: string): Promise<string | undefined> {
  const held = await session.putIfAbsent(clusterKeys(prefix).clusterId, clusterId);
  return held === clusterId
    ? undefined
    : `another cluster uses the prefix ${prefix} in etcd (its cluster id differs: its masters have another [master] token); set [cluster] name or prefix to one of this cluster's own`;
}

interface Candidate {
  member: string;
  since: number;
}
const parseCandidate = (e: EtcdEntry): Candidate | undefined => {
  try {
    const v = JSON.parse(e.value) as Partial<Candidate>;
    return typeof v.member === "string" && typeof v.since === "number" ? { member: v.member, since: v.since } : undefined;
  } catch {
    return undefined;
  }
};

export function startCampaign(o: CampaignOptions): Campaign {
  const keys = clusterKeys(o.prefix);
  const mono = o.monotonic ?? (() => performance.now());
  const margin = leaseMarginMs(o.ttlSeconds);
  const renewEveryMs = (o.ttlSeconds * 1000) / 3;

  let lease: HeldLease | undefined;
  let fence: Fence | undefined;
  /** Monotonic ms until which etcd surely keeps the lease (from the send time of the last confirmed renewal). */
  let validUntil = 0;
  let current: Term | undefined;
  let terms = 0;
  let clusterChecked = false;
  let problem: string | undefined;
  let takeoverProblem: string | undefined;
  let retryTakeoverAt = 0;
  let stopped = false;
  const etcd = { up: false, since: o.now() };
  let leader: { entry: EtcdEntry; candidate: Candidate; since: number | null; remaining: number | null } | undefined;
  let members: { member: string; role: "leader" | "follower" }[] = [];
  let leaderChanges = 0;
  let lastLeaderKey: string | undefined;
  let stateRevision: string | undefined;

  const setUp = (up: boolean, why?: string) => {
    if (etcd.up === up) return;
    etcd.up = up;
    etcd.since = o.now();
    if (up) o.logger.info("etcd reachable", { event: "etcd_up", endpoints: o.endpoints });
    else o.logger.warn("etcd unreachable: no master decides until it is back; HAProxy is still kept in step", { event: "etcd_down", error: why });
  };

  const valid = () => mono() < validUntil - margin;

  const lose = (reason: string) => {
    const wasLeading = current !== undefined;
    current = undefined;
    const held = lease;
    lease = undefined;
    fence = undefined;
    validUntil = 0;
    if (held) void held.revoke().catch(() => undefined);
    if (wasLeading) {
      o.logger.warn(`no longer the leader: ${reason}`, { event: "leader_lost", member: o.member });
      o.onFollow(reason);
    }
  };

  // ---- the lease: renewed every TTL/3; the leader stops when TTL − margin passes without one ----
  let validityTimer: NodeJS.Timeout | undefined;
  const armValidity = () => {
    clearTimeout(validityTimer);
    if (!lease) return;
    validityTimer = setTimeout(
      () => {
        if (lease && !valid()) lose(`no renewal of its lease confirmed within ${o.ttlSeconds} s minus a ${margin} ms margin`);
      },
      Math.max(0, validUntil - margin - mono()) + 1,
    );
  };
  let renewing = false;
  const renew = async () => {
    const held = lease;
    if (!held || renewing || stopped) return;
    renewing = true;
    const sentAt = mono();
    try {
      const r = await held.renew(renewEveryMs);
      if (held !== lease) return;
      if ("expired" in r) return lose("etcd says its lease expired");
      validUntil = sentAt + r.ttl * 1000;
      armValidity();
    } catch (err) {
      // Another endpoint may answer: try again soon rather than a third of the TTL later.
      o.logger.debug("lease renewal failed; trying again", { error: (err as Error).message });
      setTimeout(() => void renew(), RENEW_RETRY_MS).unref();
    } finally {
      renewing = false;
    }
  };
  const renewTimer = setInterval(() => void renew(), renewEveryMs);

  // ---- one round: join, see who leads, take over or follow --------------------------------------
  const join = async () => {
    const sentAt = mono();
    const held = await o.session.grant(o.ttlSeconds);
    const since = o.now();
    const key = `${keys.election}${BigInt(held.id).toString(16)}`;
    const created = await o.session.createOwned(key, JSON.stringify({ member: o.member, since }), held);
    lease = held;
    fence = { key, createRevision: created.createRevision };
    validUntil = sentAt + o.ttlSeconds * 1000;
    armValidity();
  };

  const round = async () => {
    if (!clusterChecked) {
      const found = await clusterIdProblem(o.session, o.prefix, o.clusterId);
      setUp(true);
      if (found) {
        if (problem !== found) o.logger.error(found, { event: "cluster_id_mismatch" });
        problem = found;
        return;
      }
      clusterChecked = true;
      problem = undefined;
    }
    if (!lease && o.candidate) await join();
    const list = (await o.session.list(keys.election)).sort((a, b) => (BigInt(a.createRevision) < BigInt(b.createRevision) ? -1 : 1));
    setUp(true);
    const first = list[0];
    members = list.map((e, i) => ({
      member: parseCandidate(e)?.member ?? e.key.slice(keys.election.length),
      role: i === 0 ? ("leader" as const) : ("follower" as const),
    }));
    if (first && first.key !== lastLeaderKey) {
      if (lastLeaderKey !== undefined) leaderChanges++;
      lastLeaderKey = first.key;
    }
    const mine = first !== undefined && fence !== undefined && first.key === fence.key;
    if (mine && current === undefined && valid() && mono() >= retryTakeoverAt) await takeOver();
    else if (!mine && current !== undefined) lose(`${members[0]?.member ?? "another master"} leads now`);
    await readLeader(first, mine);
    if (current === undefined) await readState();
  };

  const takeOver = async () => {
    const since = o.now();
    const term: Term = { number: ++terms, fence: fence!, leaseId: lease!.id, since };
    const announced = await o.session.fencedPut(term.fence, { [keys.leader]: JSON.stringify({ member: o.member, since, lease: term.leaseId }) });
    if (!announced) return lose("its election key is gone");
    current = term;
    o.logger.info("this master leads now", { event: "leader_elected", member: o.member, term: term.number, lease: term.leaseId });
    try {
      await o.onLead(term);
      takeoverProblem = undefined;
    } catch (err) {
      // Not taken over: the term is dropped and the next round tries again (the key stays first in line).
      takeoverProblem = (err as Error).message;
      retryTakeoverAt = mono() + TAKEOVER_RETRY_MS;
      o.logger.error(`cannot take over: ${takeoverProblem}`, { event: "takeover_failed" });
      current = undefined;
      o.onFollow(takeoverProblem);
    }
  };

  /**
   * Who leads, for status: the announcement is read again only until it names the first key's
   * lease, and another master's lease time at most once a second (a round may come every 250 ms).
   */
  let remainingAt = 0;
  const readLeader = async (first: EtcdEntry | undefined, mine: boolean) => {
    const candidate = first ? parseCandidate(first) : undefined;
    if (!first || !candidate) {
      leader = undefined;
      return;
    }
    const known = leader?.entry.key === first.key ? leader : undefined;
    let since = known?.since ?? null;
    if (since === null) {
      const announced = await o.session.get(keys.leader);
      try {
        const v = announced ? (JSON.parse(announced.value) as { lease?: string; since?: number }) : {};
        if (v.lease === first.lease && typeof v.since === "number") since = v.since;
      } catch {
        // shown as unknown
      }
    }
    let remaining = known?.remaining ?? null;
    if (mine) remaining = Math.max(0, Math.floor((validUntil - mono()) / 1000));
    else if (!known || mono() - remainingAt >= 1000) {
      remaining = (await o.session.leaseRemaining(first.lease)) ?? null;
      remainingAt = mono();
    }
    leader = { entry: first, candidate, since, remaining };
  };

  const readState = async () => {
    if (!o.onSharedState) return;
    const e = await o.session.get(keys.state);
    const revision = e?.modRevision ?? "0";
    if (revision === stateRevision) return;
    stateRevision = revision;
    o.onSharedState(e?.value);
  };

  let running = false;
  const tick = async () => {
    if (running || stopped) return;
    running = true;
    try {
      await round();
    } catch (err) {
      setUp(false, (err as Error).message);
      // Who leads is not known while etcd does not answer (no one does, once their leases run out).
      leader = undefined;
      if (current !== undefined && !valid()) lose("etcd unreachable");
    } finally {
      running = false;
    }
  };
  const pollTimer = setInterval(() => void tick(), o.pollMs);
  void tick();

  return {
    leading: () => current !== undefined && valid(),
    term: () => current,
    lose,
    setProblem(p) {
      takeoverProblem = p;
    },
    status() {
      const iso = (t: number) => new Date(t).toISOString();
      return {
        prefix: o.prefix,
        member: o.member,
        etcd: { up: etcd.up, since: iso(etcd.since), endpoints: o.endpoints },
        role: current !== undefined && valid() ? "leader" : "follower",
        leader: leader
          ? { member: leader.candidate.member, since: leader.since === null ? null : iso(leader.since), lease_remaining_seconds: leader.remaining }
          : null,
        members,
        leader_changes: leaderChanges,
        problem: problem ?? takeoverProblem ?? null,
      };
    },
    async stop() {
      stopped = true;
      clearInterval(pollTimer);
      clearInterval(renewTimer);
      clearTimeout(validityTimer);
      const held = lease;
      const wasLeading = current !== undefined;
      current = undefined;
      lease = undefined;
      if (held) await held.revoke().catch(() => undefined);
      if (wasLeading) o.logger.info("resigned: another master can lead at once", { event: "leader_resigned", member: o.member });
      o.session.close();
    },
  };
}
