/**
 * What the master serves to HAProxy is a function of (template, hosts.d, state): the nodes it is
 * draining or terminating are left out. The CLI's `generate`, `add-host` and `remove-host` read
 * the same state.json through this, so a CLI apply never puts a leaving node back.
 */
import { excludedNames } from "./machine.js";
import { createStateStore } from "./state-store.js";

/** The names the master is draining or terminating, from `state_dir/state.json` (none when it never ran). */
export async function leavingNodes(stateDir: string): Promise<ReadonlySet<string>> {
  return excludedNames(await createStateStore(stateDir).load());
}
