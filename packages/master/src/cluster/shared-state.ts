/**
 * The state machine's durable state in etcd (`<prefix>state`) instead of state.json: the same
 * document, every write a transaction conditioned on the leader's election key (its fence), so
 * a deposed leader's late write fails and nothing it decided after losing the lease runs.
 *
 * Migration: the first leader that finds no state in etcd but a state.json in its state_dir
 * imports that file, in the same fenced transaction (only if etcd still has none), then renames
 * it to state.json.imported, so it is imported once.
 */
import { promises as fs } from "node:fs";
import { errnoCode, type Logger } from "@autoscaler/shared";
import { parseState, serialiseState, emptyState, type DurableState, type StateStore } from "../state-store.js";
import { parseDemand, serialiseDemand, type DemandStore } from "../demand-store.js";
import { emptyDemandHistory } from "../predictive.js";
import type { EtcdSession, Fence } from "./etcd.js";

/** A write refused because this master no longer holds its election key. */
export class FencedError extends Error {}

export interface SharedStateOptions {
  session: EtcdSession;
  key: string;
  /** The fence of the term this store writes for. */
  fence: Fence;
  /** state.json of this master's state_dir: imported when etcd has no state yet. */
  legacyFile: string;
  logger: Logger;
  /** Called when a write is refused by the fence (the campaign then stops leading). */
  onFenced: (reason: string) => void;
  /** Called with the state as etcd holds it after a load or a write of this store. */
  onHeld?: (text: string) => void;
}

/** How to read the shared state by hand, in messages. */
export const inspectHint = (key: string) => `Inspect it with: etcdctl get ${key}; fix it with etcdctl put, or delete it to start from scratch`;

/** Parse the shared state as a follower reads it: undefined when etcd holds none. */
export function parseSharedState(text: string | undefined, key: string): DurableState | undefined {
  return text === undefined ? undefined : parseState(text, `in etcd at ${key}`, inspectHint(key), "act");
}

export function createSharedStateStore(o: SharedStateOptions): StateStore {
  const fenced = async (puts: Record<string, string>, absent: string[] = []) => {
    if (await o.session.fencedPut(o.fence, puts, absent)) return;
    const reason = "a write to etcd was refused: this master's election key is gone (its lease ended), so another master may lead";
    o.onFenced(reason);
    throw new FencedError(reason);
  };
  return {
    file: `etcd key ${o.key}`,
    async load() {
      const held = await o.session.get(o.key);
      if (held) {
        const state = parseState(held.value, `in etcd at ${o.key}`, inspectHint(o.key), "act");
        o.onHeld?.(held.value);
        return state;
      }
      let text: string;
      try {
        text = await fs.readFile(o.legacyFile, "utf8");
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return emptyState();
        throw err;
      }
      const state = parseState(text, o.legacyFile, "Fix or move it aside: it is imported into etcd once, by the first leader", "act");
      const imported = serialiseState(state);
      await fenced({ [o.key]: imported }, [o.key]);
      o.onHeld?.(imported);
      await fs.rename(o.legacyFile, `${o.legacyFile}.imported`);
      o.logger.warn(`imported ${o.legacyFile} into etcd at ${o.key} (renamed to state.json.imported); the shared state is kept in etcd from now on`, {
        event: "state_imported",
        launches: state.launches.length,
        drains: state.drains.length,
      });
      return state;
    },
    async save(state: DurableState) {
      const text = serialiseState(state);
      await fenced({ [o.key]: text });
      o.onHeld?.(text);
    },
  };
}

/** How often the leader writes the predictive floor's history to etcd (it changes every minute; etcd keeps each revision until compaction). */
export const DEMAND_WRITE_EVERY_MS = 10 * 60_000;

/**
 * The predictive floor's history in etcd (`<prefix>demand`), written by the leader under its
 * fence at most every 10 minutes: a new leader starts from the last copy, so a failover loses at
 * most that much history (it only shapes a floor; losing it never repeats an action).
 */
export function createSharedDemandStore(o: { session: EtcdSession; key: string; fence: Fence; now: () => number }): DemandStore {
  let writtenAt: number | undefined;
  return {
    async load(logger) {
      const held = await o.session.get(o.key).catch((err: Error) => {
        logger.warn("cannot read the demand history from etcd; the predictive floor starts empty", { key: o.key, error: err.message });
        return undefined;
      });
      if (!held) return emptyDemandHistory();
      try {
        return parseDemand(held.value);
      } catch (err) {
        logger.warn("the demand history in etcd has an unexpected shape; the predictive floor starts empty", { key: o.key, error: (err as Error).message });
        return emptyDemandHistory();
      }
    },
    async save(history) {
      const at = o.now();
      if (writtenAt !== undefined && at - writtenAt < DEMAND_WRITE_EVERY_MS) return;
      writtenAt = at;
      if (!(await o.session.fencedPut(o.fence, { [o.key]: serialiseDemand(history) }))) throw new FencedError("not written: this master no longer leads");
    },
  };
}
