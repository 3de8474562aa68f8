/**
 * The election and the fenced shared state against a real etcd (issue 12), one module at a time:
 * the campaign (campaign.ts), the fenced state store (shared-state.ts) and the etcd session
 * (etcd.ts) as the master uses them, with no master process around them, so each property is
 * checked on its own: a deposed leader's write is refused by etcd itself, another cluster's
 * prefix is refused, state.json is imported once, a state that does not parse is refused and
 * kept, and losing one member of three changes nothing.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { createLogger } from "@autoscaler/shared";
import { openEtcd, type EtcdSession } from "../packages/master/src/cluster/etcd.js";
import { clusterIdProblem, clusterKeys, leaseMarginMs, startCampaign, type Campaign, type Term } from "../packages/master/src/cluster/campaign.js";
import { createSharedDemandStore, createSharedStateStore, DEMAND_WRITE_EVERY_MS, FencedError } from "../packages/master/src/cluster/shared-state.js";
import { emptyState, type DurableState } from "../packages/master/src/state-store.js";
import { startEtcd, type EtcdCluster } from "./helpers/etcd.js";
import { Scope, sleep, waitFor } from "./helpers/process.js";

const scope = new Scope();
const open: { stop(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.stop();
  await scope.cleanup();
});

const TTL = 2;
const silent = createLogger({ write: () => true }, { level: "error", json: true });

async function session(etcd: EtcdCluster, ttl = TTL): Promise<EtcdSession> {
  const s = await openEtcd({
    etcd: etcd.members.map((m) => m.clientUrl),
    lease_ttl: ttl,
    ca: "",
    cert: "",
    key: "",
    user: "",
    password: "",
    name: "t",
    prefix: "",
    member: "",
  });
  open.push({ stop: () => s.close() });
  return s;
}

/** A campaign whose terms are recorded; it leads until told otherwise. */
function candidate(s: EtcdSession, member: string, prefix = "/t/", clusterId = "id-a", ttl = TTL) {
  const terms: Term[] = [];
  const follows: string[] = [];
  const c: Campaign = startCampaign({
    session: s,
    endpoints: [],
    prefix,
    member,
    ttlSeconds: ttl,
    pollMs: 100,
    clusterId,
    candidate: true,
    logger: silent,
    now: Date.now,
    onLead: async (t) => void terms.push(t),
    onFollow: (r) => void follows.push(r),
  });
  open.push({ stop: () => c.stop() });
  return { c, terms, follows };
}

/** The shared state store of a term (with no state.json to import, unless `legacyFile` names one). */
const storeOf = (s: EtcdSession, term: Term, prefix: string, onFenced: (reason: string) => void = () => undefined, legacyFile = "/nonexistent/state.json") =>
  createSharedStateStore({ session: s, key: clusterKeys(prefix).state, fence: term.fence, legacyFile, logger: silent, onFenced });

const state = (paused: boolean): DurableState => ({ ...emptyState(), paused });

test("a deposed leader's write is refused by etcd itself: its fence (its election key) is gone, and the new leader's state stays", async () => {
  const etcd = await startEtcd(scope, 1);
  const [sa, sb] = [await session(etcd), await session(etcd)];
  const a = candidate(sa, "a");
  await waitFor("a to lead", () => a.c.leading(), 5000, 20);
  const b = candidate(sb, "b");
  await sleep(300);
  expect(b.c.leading()).toBe(false);
  const keys = clusterKeys("/t/");
  const fenced: string[] = [];
  const storeA = storeOf(sa, a.terms[0]!, "/t/", (r) => fenced.push(r));
  await storeA.save(state(true));

  // a's lease ends under it (as if it had been paused past the TTL): revoke it behind its back.
  const leaseHex = BigInt(a.terms[0]!.leaseId).toString(16);
  await etcd.ctl("lease", "revoke", leaseHex);
  await waitFor("b to lead", () => b.c.leading(), (TTL + 2) * 1000, 20);
  const storeB = storeOf(sb, b.terms[0]!, "/t/");
  expect((await storeB.load()).paused).toBe(true);
  await storeB.save(state(false));

  // a's late write: refused, and nothing written.
  await expect(storeA.save(state(true))).rejects.toBeInstanceOf(FencedError);
  expect(fenced).toHaveLength(1);
  expect(JSON.parse((await sb.get(keys.state))!.value)).toMatchObject({ paused: false });
  await waitFor("a to know it no longer leads", () => !a.c.leading() && a.follows.length > 0, 3000, 20);
});

test("another cluster on the same prefix is refused; a cluster with its own prefix is not", async () => {
  const etcd = await startEtcd(scope, 1);
  const s = await session(etcd);
  expect(await clusterIdProblem(s, "/p/", "first")).toBeUndefined();
  expect(await clusterIdProblem(s, "/p/", "first")).toBeUndefined();
  expect(await clusterIdProblem(s, "/p/", "second")).toMatch(/another cluster uses the prefix \/p\/ .*set \[cluster\] name or prefix/);
  expect(await clusterIdProblem(s, "/q/", "second")).toBeUndefined();
  // A campaign of the other cluster never leads, and says why.
  const other = candidate(s, "x", "/p/", "second");
  await sleep(500);
  expect(other.c.leading()).toBe(false);
  expect(other.c.status().problem).toMatch(/another cluster uses the prefix/);
});

test("the first leader imports state.json once, under its fence, and renames it; a state in etcd that does not parse is refused and left as it is", async () => {
  const etcd = await startEtcd(scope, 1);
  const s = await session(etcd);
  const dir = await scope.tempDir();
  const legacy = path.join(dir, "state.json");
  const old = { ...emptyState(), paused: true, lastScaleUpAt: 1_000 };
  await fs.writeFile(legacy, JSON.stringify(old));
  const a = candidate(s, "a", "/m/");
  await waitFor("a to lead", () => a.c.leading(), 5000, 20);
  const keys = clusterKeys("/m/");
  const store = storeOf(s, a.terms[0]!, "/m/", undefined, legacy);
  expect(await store.load()).toMatchObject({ paused: true, lastScaleUpAt: 1_000 });
  await expect(fs.stat(legacy)).rejects.toThrow(/ENOENT/);
  expect(JSON.parse(await fs.readFile(`${legacy}.imported`, "utf8"))).toMatchObject({ paused: true });
  // Once: a later load reads etcd, not a state.json put back.
  await fs.writeFile(legacy, JSON.stringify({ ...old, paused: false }));
  expect((await store.load()).paused).toBe(true);

  await etcd.ctl("put", keys.state, "{ half a document");
  await expect(store.load()).rejects.toThrow(
    /in etcd at \/m\/state is not valid JSON; refusing to act rather than forget launches\. Inspect it with: etcdctl get \/m\/state/,
  );
  expect((await s.get(keys.state))!.value).toBe("{ half a document");
});

test("losing one etcd member of three changes nothing: the leader keeps its lease, and its writes go on (one may wait out etcd's own election)", async () => {
  // The default lease (10 s). With a shorter one, etcd's own raft election on a machine this suite
  // keeps busy (a killed raft leader, then seconds of starved CPU) can outlast the lease's margin,
  // and the leader then rightly steps down: that is not what this test is about.
  const ttl = 10;
  // The leader would step down this long after its last confirmed renewal: writing for longer than
  // that with a member down proves that its renewals went on.
  const holdMs = ttl * 1000 - leaseMarginMs(ttl) + 500;
  const etcd = await startEtcd(scope, 3);
  const s = await session(etcd, ttl);
  const a = candidate(s, "a", "/l/", "id-a", ttl);
  await waitFor("a to lead", () => a.c.leading(), 5000, 20);
  const store = storeOf(s, a.terms[0]!, "/l/");
  let retried = 0;
  for (const victim of [0, 1, 2]) {
    await etcd.kill(victim);
    // A write in flight while etcd elects a new raft leader (when the victim led) can time out:
    // it is refused, not lost, and the next attempt lands, as the master's next tick would.
    for (let i = 0, start = Date.now(); Date.now() - start < holdMs; i++) {
      for (let attempt = 0; ; attempt++) {
        try {
          await store.save(state(i % 2 === 0));
          break;
        } catch (err) {
          if (attempt === 3) throw err;
          retried++;
        }
      }
      expect(a.c.leading()).toBe(true);
      await sleep(250);
    }
    // restart() waits until the member answers again: a quorum of three before the next victim.
    await etcd.restart(victim);
  }
  expect(a.terms).toHaveLength(1);
  expect(a.follows).toEqual([]);
  expect(retried).toBeLessThanOrEqual(3);
}, 90_000);

test("the predictive floor's history is kept in etcd by the leader, at most every 10 minutes, and a new leader starts from it", async () => {
  const etcd = await startEtcd(scope, 1);
  const s = await session(etcd);
  const a = candidate(s, "a", "/d/");
  await waitFor("a to lead", () => a.c.leading(), 5000, 20);
  let clock = 1_000_000;
  const key = clusterKeys("/d/").demand;
  const store = createSharedDemandStore({ session: s, key, fence: a.terms[0]!.fence, now: () => clock });
  await store.save({ lastMinute: 100, values: [1, Number.NaN, 3] });
  clock += 60_000;
  await store.save({ lastMinute: 101, values: [9, 9, 9] }); // a minute later: not written
  expect(await store.load(silent)).toEqual({ lastMinute: 100, values: [1, Number.NaN, 3] });
  clock += DEMAND_WRITE_EVERY_MS;
  await store.save({ lastMinute: 111, values: [4, 5] });
  expect((await store.load(silent)).lastMinute).toBe(111);
  await etcd.ctl("lease", "revoke", BigInt(a.terms[0]!.leaseId).toString(16));
  clock += DEMAND_WRITE_EVERY_MS;
  await expect(store.save({ lastMinute: 200, values: [] })).rejects.toBeInstanceOf(FencedError);
  expect((await store.load(silent)).lastMinute).toBe(111);
});
