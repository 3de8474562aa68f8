/**
 * The last shared state this master saw, read as a follower or written as the leader, kept in
 * its state_dir (`cluster-state.cache.json`, mode 0600). A master that starts again starts from
 * it rather than from nothing, until etcd's copy is read: without it, a restarted master would
 * admit again, and serve, a node the cluster scaled down (its drain is in the shared state), for
 * as long as etcd is slow or down. The copy is only ever read at start; it is never written to
 * etcd, and etcd's copy replaces it as soon as it is read.
 */
import { promises as fs } from "node:fs";
import { errnoCode, writeFileAtomic, type Logger } from "@autoscaler/shared";

export const STATE_CACHE_FILE = "cluster-state.cache.json";

export interface StateCache {
  file: string;
  /** The copy kept by the last run, if any. */
  read(): Promise<string | undefined>;
  /** Keep `text` as the latest copy (writes are serialised; a failure is logged, never thrown). */
  keep(text: string): void;
  /** Resolves once every write asked for so far is done. */
  settled(): Promise<void>;
}

export function createStateCache(file: string, logger: Logger): StateCache {
  let chain = Promise.resolve();
  let last: string | undefined;
  return {
    file,
    async read() {
      try {
        return await fs.readFile(file, "utf8");
      } catch (err) {
        if (errnoCode(err) !== "ENOENT")
          logger.warn("cannot read the last copy of the shared state; starting without it", { file, error: (err as Error).message });
        return undefined;
      }
    },
    keep(text) {
      if (text === last) return;
      last = text;
      chain = chain
        .then(() => writeFileAtomic(file, text, { mode: 0o600, forceMode: true }))
        .catch((err: Error) => logger.warn("cannot keep a copy of the shared state in state_dir", { file, error: err.message }));
    },
    settled: () => chain,
  };
}
