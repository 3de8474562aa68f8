/**
 * hosts.d in memory: filled once, then kept current file by file from the watcher (and from the
 * master's own writes), so an apply renders without re-reading every file. The watcher's
 * periodic resync guards against a missed event.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { HostEntry, HostsStore } from "@autoscaler/shared";

/** The master's copy of hosts.d. */
export interface HostsCache {
  /** The usable entries; a new array after every change, so a caller may keep one as a snapshot. */
  hosts(): HostEntry[];
  /** Files of hosts.d that cannot be used (file name → why). */
  readonly problems: ReadonlyMap<string, string>;
  /** All the cache holds as one string: two differ exactly when the contents differ. */
  snapshot(): string;
  /** Read the whole of hosts.d again. */
  resync(): Promise<void>;
  /** Read one hosts.d file (a path) again; true when it is a file that cannot be used. */
  refreshFile(file: string): Promise<boolean>;
  /**
   * Read each file that could not be used again: it may have been read mid-write (an editor
   * truncates, then writes, and the watcher can fold the second event into the first).
   */
  recheckProblems(): Promise<void>;
  /** Record an entry the master has just written. */
  set(entry: HostEntry): void;
  /** Forget an entry the master is removing. */
  delete(name: string): void;
}

/**
 * Read hosts.d through `store` into a new cache. `onChange` gets the new list of usable entries
 * after the first read and after every change.
 */
export async function loadHostsCache(store: HostsStore, hostsDir: string, onChange: (hosts: HostEntry[]) => void): Promise<HostsCache> {
  const byName = new Map<string, HostEntry>();
  const problems = new Map<string, string>();
  let hosts: HostEntry[] = [];
  const changed = () => {
    hosts = [...byName.values()];
    onChange(hosts);
  };

  const cache: HostsCache = {
    hosts: () => hosts,
    problems,
    snapshot: () => JSON.stringify([[...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1)), [...problems]]),
    async resync() {
      const listed = await store.list();
      byName.clear();
      problems.clear();
      for (const h of listed.hosts) byName.set(h.name, h);
      for (const p of listed.problems) problems.set(p.file, p.message);
      changed();
    },
    async refreshFile(file) {
      const base = path.basename(file);
      if (!base.endsWith(".json") || base.startsWith(".")) return false;
      const name = base.slice(0, -".json".length);
      // A name the store refuses (`web;x.json`) throws before any read: a problem only while the file is there.
      const entry = await store.read(name).catch(async (err: Error) =>
        (await fs.access(file).then(
          () => true,
          () => false,
        ))
          ? { file: base, message: err.message }
          : undefined,
      );
      byName.delete(name);
      problems.delete(base);
      if (entry && "message" in entry) problems.set(base, entry.message);
      else if (entry) byName.set(name, entry);
      changed();
      return Boolean(entry && "message" in entry);
    },
    async recheckProblems() {
      for (const file of [...problems.keys()]) await cache.refreshFile(path.join(hostsDir, file));
    },
    set(entry) {
      byName.set(entry.name, entry);
      changed();
    },
    delete(name) {
      byName.delete(name);
      changed();
    },
  };
  await cache.resync();
  return cache;
}
