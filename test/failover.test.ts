/**
 * Several proxies with failover on a real etcd (issue 12, SPEC behaviour 8): real masters and
 * HAProxy on loopback, a real 3-member etcd, the fake cloud's launches starting real nodes.
 */
import { afterEach, expect, test } from "vitest";
import { startEtcd } from "./helpers/etcd.js";
import { startProxy, type Proxy } from "./helpers/cluster.js";
import { Scope, waitFor } from "./helpers/process.js";
import { randomBytes } from "node:crypto";

const scope = new Scope();
afterEach(() => scope.cleanup());

const TTL = 2;

async function proxies(count: number, endpoints: string, extra: string[] = []): Promise<Proxy[]> {
  const token = randomBytes(24).toString("base64url");
  const out: Proxy[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      await startProxy(scope, {
        token,
        settings: [`cluster.etcd=${endpoints}`, `cluster.lease_ttl=${TTL}`, `cluster.member=proxy-${i}`, "master.interval=0.2", ...extra],
      }),
    );
  }
  return out;
}

test("three masters on one etcd elect one leader; the others follow and show who leads; a killed leader is replaced within lease_ttl", async () => {
  const etcd = await startEtcd(scope, 3);
  const count = 3;
  const ps = await proxies(count, etcd.endpoints);
  const leaderOf = async () => {
    const all = await Promise.all(ps.map((p) => p.status()));
    const leaders = all.filter((s) => s.role === "decider");
    return leaders.length === 1 && all.every((s) => s.cluster?.members.length === count)
      ? { all, leader: leaders[0]!, index: all.indexOf(leaders[0]!) }
      : undefined;
  };
  const first = await waitFor("one leader", leaderOf, 10_000, 100);
  for (const s of first.all) {
    expect(s.cluster?.leader?.member).toBe(first.leader.cluster?.member);
    expect(s.cluster?.members.map((m) => m.member).sort()).toEqual(["proxy-0", "proxy-1", "proxy-2"]);
    expect(s.cluster?.etcd.up).toBe(true);
  }
  const killedAt = Date.now();
  ps[first.index]!.master.child.kill("SIGKILL");
  const rest = ps.filter((_, i) => i !== first.index);
  const next = await waitFor(
    "another leader",
    async () => {
      const all = await Promise.all(rest.map((p) => p.status()));
      return all.find((s) => s.role === "decider");
    },
    (TTL + 3) * 1000,
    100,
  );
  expect(next.cluster?.member).not.toBe(first.leader.cluster?.member);
  expect(Date.now() - killedAt).toBeLessThan((TTL + 2) * 1000);
});
