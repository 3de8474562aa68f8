import { randomBytes } from "node:crypto";
import { promises as fs, constants as fsConstants } from "node:fs";
import path from "node:path";
import { errnoCode } from "./errors.js";

/** Options for {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** File mode for a new file. An existing file keeps its own mode unless `forceMode` is set. */
  mode?: number;
  forceMode?: boolean;
  /** Fail with EEXIST instead of replacing a file that is already there (no race: link(2) decides). */
  exclusive?: boolean;
}

/** A temp path in the same folder as `target`, so that rename(2) stays atomic. Dot-prefixed, so watchers and the hosts store skip it. */
export function tempPathFor(target: string, tag = "tmp"): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** Write data to a new file and flush it to disk. The caller renames or removes it. */
export async function writeAndSync(file: string, data: string | Buffer, mode: number): Promise<void> {
  const handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode); // open(2) mode is masked by the umask; the caller asked for this one.
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flush a folder's entry table so a rename survives a crash. Some file systems refuse; that is not fatal. */
export async function syncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch {
    // fsync on a directory is unsupported on some file systems; the rename itself is still atomic.
  } finally {
    await handle?.close();
  }
}

/**
 * Replace `target` with `data` so that readers see the old bytes or the new, never a mix:
 * temp file in the same folder, write, fsync, keep mode, rename (or link when exclusive), fsync the folder.
 */
export async function writeFileAtomic(target: string, data: string | Buffer, options: AtomicWriteOptions = {}): Promise<void> {
  let mode = options.mode ?? 0o644;
  if (!options.forceMode && !options.exclusive) {
    try {
      mode = (await fs.stat(target)).mode & 0o7777;
    } catch (err) {
      if (errnoCode(err) !== "ENOENT") throw err;
    }
  }
  const temp = tempPathFor(target);
  try {
    await writeAndSync(temp, data, mode);
    if (options.exclusive) {
      await fs.link(temp, target);
      await fs.unlink(temp);
    } else {
      await fs.rename(temp, target);
    }
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(target));
}

/** A file's bytes, or undefined when it does not exist (any other error is thrown). */
export async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
}
