/**
 * What the master serves to HAProxy is a function of (template, hosts.d, state): the nodes it is
 * draining or terminating are left out. The CLI's `generate`, `add-host` and `remove-host` read
 * the same state through this (state.json, or the shared state in etcd with [cluster] etcd), so
 * a CLI apply never puts a leaving node back.
 */
import type { Config } from "@autoscaler/shared";
import { excludedNames } from "./machine.js";
import { createStateStore } from "./state-store.js";

/**
 * The names the master is draining or terminating: from `state_dir/state.json` (none when it
 * never ran), or with etcd from the shared state; `unknown` says why they could not be read
 * (etcd unreachable: none are left out, and the running master's next apply leaves them out again).
 */
export async function leavingNodes(config: Config): Promise<{ names: ReadonlySet<string>; unknown?: string }> {
  if (config.cluster.etcd.length === 0) return { names: excludedNames(await createStateStore(config.master.state_dir).load()) };
  // Loaded only with etcd: the gRPC client costs start time and memory that a single proxy need not pay.
  const [{ clusterKeys }, { openEtcd }, { parseSharedState }] = await Promise.all([
    import("./cluster/campaign.js"),
    import("./cluster/etcd.js"),
    import("./cluster/shared-state.js"),
  ]);
  const session = await openEtcd(config.cluster);
  try {
    const key = clusterKeys(config.etcdPrefix).state;
    const held = await session.get(key);
    const state = parseSharedState(held?.value, key);
    return { names: state ? excludedNames(state) : new Set() };
  } catch (err) {
    return { names: new Set(), unknown: `cannot read the shared state in etcd (${(err as Error).message})` };
  } finally {
    session.close();
  }
}
