/**
 * What a master killed in the middle of a HAProxy apply leaves beside haproxy.cfg, and how the
 * next master clears it at start. The apply lock (`<config>.lock`, a proper-lockfile folder)
 * names no owner, so a lock left by a SIGKILLed master held off every apply (the master's own,
 * and `add-host`'s) until it went stale after 60 s; a restart with a drain in progress did not
 * even finish starting until then. So the master keeps a note beside the lock,
 * `.<config>.lock-owner`: its pid and the time it began an apply (and whether another process
 * held the lock then), then, once it holds the lock, the lock folder's inode and birth time;
 * the note goes when the apply ends. A master starting removes the lock only when the note names
 * a dead process and a lock that was certainly that process's own: the very folder it noted,
 * or, killed before it could note one, a folder born after it began while nobody else held the
 * lock. A lock a live `add-host` holds is never touched. It also removes the staged and temp
 * files (`.<config>.staged-<pid>-…`, `.<config>.tmp-<pid>-…`) of processes that no longer run.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Logger } from "@autoscaler/shared";

interface OwnerNote {
  pid: number;
  /** When the apply began (ms since the epoch), before asking for the lock. */
  at: number;
  /** True when another process held the lock at that moment. */
  busy: boolean;
  /** The lock folder this process created, once it holds it. */
  held?: { ino: number; birth: number };
}

/** File times come from a coarse kernel clock that may lag Date.now() by a tick or two. */
const CLOCK_SLACK_MS = 50;

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

const lockOf = (target: string) => `${target}.lock`;
const noteOf = (target: string) => path.join(path.dirname(target), `.${path.basename(target)}.lock-owner`);
/**
 * Written beside and renamed over, so a kill mid-write never leaves an empty or half note (which
 * would make the next master leave the lock to go stale). The temporary name is one that
 * `recoverApplyLeftovers` removes when its process is gone.
 */
const writeNote = async (target: string, note: OwnerNote) => {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-6e6f7465`);
  await fs
    .writeFile(tmp, JSON.stringify(note) + "\n")
    .then(() => fs.rename(tmp, noteOf(target)))
    .catch(() => undefined);
};

/**
 * Run an apply of `target` with the owner note kept beside its lock for as long as it runs.
 * `apply` gets the function to call once it holds the lock (its render step runs there).
 */
export async function applyWithOwnerNote<R>(target: string, apply: (lockHeld: () => Promise<void>) => Promise<R>): Promise<R> {
  await noteApplyStarting(target);
  try {
    return await apply(() => noteApplyLockHeld(target));
  } finally {
    await clearApplyNote(target);
  }
}

/** Before an apply asks for the lock. Never throws (without a note, a lock left by a crash only goes stale on its own, in 60 s). */
async function noteApplyStarting(target: string): Promise<void> {
  const busy = await fs.stat(lockOf(target)).then(
    () => true,
    () => false,
  );
  await writeNote(target, { pid: process.pid, at: Date.now(), busy });
}

/** Inside the apply, the lock held: note which folder is ours. Never throws. */
async function noteApplyLockHeld(target: string): Promise<void> {
  const lock = await fs.stat(lockOf(target)).catch(() => undefined);
  if (lock) await writeNote(target, { pid: process.pid, at: Date.now(), busy: false, held: { ino: lock.ino, birth: lock.birthtimeMs } });
}

/** After the apply (the lock released). Never throws. */
async function clearApplyNote(target: string): Promise<void> {
  await fs.rm(noteOf(target), { force: true }).catch(() => undefined);
}

/**
 * At start, once this master holds its control socket: remove the apply lock a dead master left
 * (only when it was certainly that master's), and the staged and temp files of dead processes.
 */
export async function recoverApplyLeftovers(target: string, logger: Logger): Promise<void> {
  const note = await fs
    .readFile(noteOf(target), "utf8")
    .then((t) => JSON.parse(t) as OwnerNote)
    .catch(() => undefined);
  if (note && Number.isInteger(note.pid) && note.pid !== process.pid && !isAlive(note.pid)) {
    const lock = await fs.stat(lockOf(target)).catch(() => undefined);
    const itsOwn =
      lock && (note.held ? lock.ino === note.held.ino && lock.birthtimeMs === note.held.birth : !note.busy && lock.birthtimeMs >= note.at - CLOCK_SLACK_MS);
    if (itsOwn) {
      await fs
        .rmdir(lockOf(target))
        .then(() =>
          logger.warn("removed the HAProxy apply lock a master left when it stopped in the middle of an apply", { lock: lockOf(target), pid: note.pid }),
        )
        .catch((err: Error) =>
          logger.warn("cannot remove the HAProxy apply lock a stopped master left; it goes stale within 60 s", { lock: lockOf(target), error: err.message }),
        );
    }
    await fs.rm(noteOf(target), { force: true }).catch(() => undefined);
  }
  const base = path.basename(target).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const leftover = new RegExp(`^\\.${base}\\.(?:staged|tmp)-(\\d+)-[0-9a-f]+$`);
  for (const name of await fs.readdir(path.dirname(target)).catch(() => [] as string[])) {
    const pid = Number(leftover.exec(name)?.[1]);
    if (!pid || pid === process.pid || isAlive(pid)) continue;
    await fs.rm(path.join(path.dirname(target), name), { force: true }).catch(() => undefined);
    logger.info("removed a file a stopped process left beside the HAProxy config", { file: name, pid });
  }
}
