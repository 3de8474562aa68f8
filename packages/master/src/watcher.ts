/**
 * The watcher (chokidar) on hosts.d and the HAProxy template: each change to a hosts.d file is
 * read into the hosts cache and schedules an apply; a template change drops the template held in
 * memory and schedules an apply. A full resync every minute catches an event the watcher missed.
 */
import path from "node:path";
import chokidar from "chokidar";
import type { Logger } from "@autoscaler/shared";
import type { HostsCache } from "./hosts-cache.js";

/** How often hosts.d is read whole again, in case the watcher missed an event. */
const RESYNC_EVERY_MS = 60_000;
/** chokidar drops a "change" that follows another on the same file within 50 ms: read once more after this. */
const SETTLE_MS = 100;

/** What the watcher needs from the master. */
export interface WatcherDeps {
  hostsDir: string;
  /** The template's path as the running config has it now (a reload may move it). */
  template: () => string;
  cache: HostsCache;
  /** Schedule a (debounced) HAProxy apply, with the reason: the template changed. */
  schedule: (reason: string) => void;
  /** A hosts.d entry changed: the master applies it (at once, when the runtime API can). */
  hostsChanged: (reason: string) => void;
  /** The template changed on disk: the copy in memory is stale. */
  onTemplateChange: () => void;
  logger: Logger;
}

/** A running watcher. */
export interface Watcher {
  /** Watch `next` as the template instead of `previous` (a reload moved it). */
  moveTemplate(previous: string, next: string): void;
  close(): Promise<void>;
}

/**
 * Watch hosts.d and the template and keep `cache` current, scheduling an apply for each change;
 * resync hosts.d once the first scan is done and then every minute. Returns at once: the first
 * scan does not hold up the start.
 */
export function startWatcher(deps: WatcherDeps): Watcher {
  const { cache, schedule, hostsChanged, logger } = deps;
  const resync = (reason: string) => {
    const before = cache.snapshot();
    cache
      .resync()
      .then(() => {
        if (cache.snapshot() !== before) hostsChanged(reason);
      })
      .catch((err: Error) => logger.warn("cannot resync hosts.d", { error: err.message }));
  };

  const watcher = chokidar.watch([deps.hostsDir, deps.template()], {
    ignoreInitial: true,
    ignored: (p: string) => path.basename(p).startsWith("."),
  });
  watcher.on("all", (event, file) => {
    if (path.resolve(file) === path.resolve(deps.template())) {
      deps.onTemplateChange();
      schedule(`${event} template`);
      return;
    }
    if (event !== "add" && event !== "change" && event !== "unlink") return;
    const base = path.basename(file);
    const read = (why: string) => {
      const before = cache.problems.get(base);
      return cache
        .refreshFile(file)
        .then(() => {
          // A file going bad, and a bad one fixed or removed, are both said once.
          const now = cache.problems.get(base);
          if (now && now !== before) logger.warn("hosts.d file cannot be used", { file, problem: now });
          if (before && !now)
            logger.info(`hosts.d file ${event === "unlink" ? "removed" : "usable again"}; its problem is over`, { event: "hosts_file_recovered", file });
          hostsChanged(`${why} ${base}`);
        })
        .catch((err: Error) => logger.warn("cannot read hosts.d file", { file, error: err.message }));
    };
    void read(event);
    // chokidar drops a "change" that follows another on the same file within 50 ms, with no
    // trailing event: read the file once more after that window so the last write always counts.
    setTimeout(() => void read("settled"), SETTLE_MS).unref();
  });
  const resyncTimer = setInterval(() => resync("hosts.d resync found a change the watcher missed"), RESYNC_EVERY_MS);
  watcher.on("error", (err) => logger.warn("file watcher error", { error: (err as Error).message }));
  // A file added while the watcher makes its first scan counts as "initial" and is ignored, so
  // read hosts.d once more when the scan is done: nothing added around start-up is missed. This
  // does not hold up the start (the scan can take seconds on a busy machine).
  watcher.once("ready", () => resync("hosts.d changed while the master started"));

  return {
    moveTemplate(previous, next) {
      watcher.unwatch(previous);
      watcher.add(next);
    },
    async close() {
      clearInterval(resyncTimer);
      await watcher.close();
    },
  };
}
