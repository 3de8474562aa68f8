/**
 * hosts.d: one JSON file per backend, the source of truth for HAProxy's server list.
 * Writes are atomic; adding is exclusive per name (link(2) decides), so two processes adding
 * hosts at once lose neither and never both take one name.
 */
import { closeSync, constants, fstatSync, openSync, promises as fs, readSync, type Stats } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "./atomic-write.js";
import { AutoscalerError, errnoCode } from "./errors.js";
import { checkHost, checkName, checkPort, formatHostPort, normaliseHost } from "./validate.js";

/** Who put a backend in hosts.d: the operator, a registering agent, or a launch of ours. */
export type HostSource = "manual" | "agent" | "launched";
export const HOST_SOURCES: readonly HostSource[] = ["manual", "agent", "launched"];

/** One backend. */
export interface HostEntry {
  name: string;
  address: string;
  port: number;
  source: HostSource;
  /** ISO 8601 time it was added. */
  addedAt: string;
  instanceId?: string;
  /**
   * Where the instance id comes from when it may be terminated: a launch's own output, or an
   * operator (`autoscaler trust`). Absent: only the node said it, so a scale-down drains and
   * removes the node but does not run the terminate command for it.
   */
  instanceIdFrom?: InstanceIdSource;
}

/** Who vouches for an instance id. */
export type InstanceIdSource = "launch" | "operator";

/** A hosts.d file that could not be used, and why. */
export interface HostFileProblem {
  file: string;
  message: string;
}

/** The hosts.d capability the rest of the code depends on. */
export interface HostsStore {
  readonly dir: string;
  list(): Promise<{ hosts: HostEntry[]; problems: HostFileProblem[] }>;
  /** Write a new entry; fails with AUTOSCALER_EXISTS when the name is taken. */
  add(entry: HostEntry): Promise<void>;
  /** The entry of that name, read from its file now; undefined when there is none or it cannot be used. */
  get(name: string): Promise<HostEntry | undefined>;
  /** Like `get`, but says why a file that exists cannot be used. */
  read(name: string): Promise<HostEntry | HostFileProblem | undefined>;
  /** Replace an entry of that name (or create it). */
  put(entry: HostEntry): Promise<void>;
  /** Remove by name; false when there was none. */
  remove(name: string): Promise<boolean>;
}

const FILE_SUFFIX = ".json";

/** hosts.d files are small JSON; anything larger is refused unread. */
export const MAX_HOST_FILE_BYTES = 64 * 1024;
const TOO_LARGE = 'is larger than 64 KiB; expected a small JSON file such as {"address": "...", "port": 80}';
/** Never follow a symlink (ELOOP), never wait for a FIFO's writer. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** What one hosts.d file held, or a fixed reason it was refused. Never any of the file's bytes in the reason. */
type FileRead = { text: string; mtime: Date } | { refused: string };

/** A fixed reason for an open(2) error that means "not a regular file", or undefined for other errors. */
function openRefusal(err: unknown): string | undefined {
  const code = errnoCode(err);
  if (code === "ELOOP") return "is a symbolic link; expected a regular file";
  if (code === "ENXIO") return "is a socket or a device; expected a regular file";
  return undefined;
}

/** A fixed reason when an open file is not a regular file or is too large. */
function statRefusal(st: Stats): string | undefined {
  if (st.isFIFO()) return "is a FIFO (named pipe); expected a regular file";
  if (st.isDirectory()) return "is a folder; expected a regular file";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "is a device; expected a regular file";
  if (st.isSocket()) return "is a socket; expected a regular file";
  if (!st.isFile()) return "is not a regular file";
  if (st.size > MAX_HOST_FILE_BYTES) return TOO_LARGE;
  return undefined;
}

/** One buffer for the synchronous reads of `list()`; they never interleave, and the text is copied out. */
let syncBuffer: Buffer | undefined;

/** Read a hosts.d file synchronously: regular files of at most 64 KiB only. Throws for ENOENT and other I/O errors. */
function readHostFileSync(file: string): FileRead {
  let fd: number;
  try {
    fd = openSync(file, OPEN_FLAGS);
  } catch (err) {
    const refused = openRefusal(err);
    if (refused !== undefined) return { refused };
    throw err;
  }
  try {
    const st = fstatSync(fd);
    const refused = statRefusal(st);
    if (refused !== undefined) return { refused };
    const buf = (syncBuffer ??= Buffer.allocUnsafe(MAX_HOST_FILE_BYTES + 1));
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, n);
    if (n > MAX_HOST_FILE_BYTES) return { refused: TOO_LARGE }; // grew after fstat
    return { text: buf.toString("utf8", 0, n), mtime: st.mtime };
  } finally {
    closeSync(fd);
  }
}

/** The same as `readHostFileSync`, with the promise API. */
async function readHostFile(file: string): Promise<FileRead> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, OPEN_FLAGS);
  } catch (err) {
    const refused = openRefusal(err);
    if (refused !== undefined) return { refused };
    throw err;
  }
  try {
    const st = await handle.stat();
    const refused = statRefusal(st);
    if (refused !== undefined) return { refused };
    const buf = Buffer.allocUnsafe(MAX_HOST_FILE_BYTES + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length; n += got) got = (await handle.read(buf, n, buf.length - n, n)).bytesRead;
    if (n > MAX_HOST_FILE_BYTES) return { refused: TOO_LARGE }; // grew after fstat
    return { text: buf.toString("utf8", 0, n), mtime: st.mtime };
  } finally {
    await handle.close();
  }
}

/** The file that holds the entry of `name`. */
export function hostFileName(name: string): string {
  return `${name}${FILE_SUFFIX}`;
}

/** Check every field of an entry; returns one message per problem (empty when valid). */
export function checkHostEntry(entry: { name: string; address: string; port: number | string; source?: string; instanceId?: string }): string[] {
  const problems: string[] = [];
  const n = checkName(entry.name);
  if (n) problems.push(`name ${JSON.stringify(entry.name)} ${n}`);
  const h = checkHost(entry.address);
  if (h) problems.push(`host ${JSON.stringify(entry.address)} ${h}`);
  const p = checkPort(entry.port);
  if (p) problems.push(`port ${JSON.stringify(String(entry.port))} ${p}`);
  if (entry.source !== undefined && !HOST_SOURCES.includes(entry.source as HostSource)) {
    problems.push(`source ${JSON.stringify(entry.source)} is not valid; expected one of ${HOST_SOURCES.join(", ")}`);
  }
  if (entry.instanceId !== undefined && !/^[A-Za-z0-9._:-]{1,128}$/.test(entry.instanceId)) {
    problems.push(`instance id ${JSON.stringify(entry.instanceId)} is not valid; expected 1-128 characters of letters, digits, '.', '_', ':' and '-'`);
  }
  return problems;
}

function serialise(entry: HostEntry): string {
  const body: Record<string, unknown> = {
    name: entry.name,
    address: entry.address,
    port: entry.port,
    source: entry.source,
    added_at: entry.addedAt,
  };
  if (entry.instanceId !== undefined) body.instance_id = entry.instanceId;
  if (entry.instanceIdFrom !== undefined) body.instance_id_from = entry.instanceIdFrom;
  return JSON.stringify(body, null, 2) + "\n";
}

/**
 * Read one hosts.d file. A hand-written file may hold only `address` and `port`: the name
 * comes from the file name, the source is manual, the time is the file's.
 */
export function parseHostFile(fileName: string, text: string, mtime: Date | (() => Date)): HostEntry | HostFileProblem {
  const name = fileName.slice(0, -FILE_SUFFIX.length);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // JSON.parse's own message can quote the file's first bytes: keep only the position, a number.
    const at = /at position (\d+)/.exec((err as Error).message)?.[1];
    const where = at !== undefined ? ` (error at character ${at})` : "";
    return { file: fileName, message: `is not valid JSON${where}; expected {"address": "...", "port": 80}` };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { file: fileName, message: 'is not a JSON object; expected {"address": "...", "port": 80}' };
  }
  const r = raw as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" ? v : v === undefined ? undefined : String(v));
  if (r.name !== undefined && r.name !== name) {
    return { file: fileName, message: `names ${JSON.stringify(r.name)} but the file is ${fileName}; expected the file to be named <name>.json` };
  }
  const address = str(r.address ?? r.host) ?? "";
  const port = typeof r.port === "number" ? r.port : (str(r.port) ?? "");
  const source = str(r.source) ?? "manual";
  const instanceId = str(r.instance_id);
  const problems = checkHostEntry({ name, address, port, source, instanceId });
  const from = r.instance_id_from;
  if (from !== undefined && (instanceId === undefined || (from !== "launch" && from !== "operator"))) {
    problems.push('instance_id_from is not valid; expected "launch" or "operator", next to an instance_id');
  }
  if (problems.length > 0) return { file: fileName, message: problems.join("; ") };
  const addedAt = str(r.added_at);
  return {
    name,
    address: normaliseHost(address),
    port: Number(port),
    source: source as HostSource,
    addedAt: addedAt && !Number.isNaN(Date.parse(addedAt)) ? addedAt : (typeof mtime === "function" ? mtime() : mtime).toISOString(),
    ...(instanceId !== undefined ? { instanceId } : {}),
    ...(from !== undefined ? { instanceIdFrom: from as InstanceIdSource } : {}),
  };
}

/** A fixed reason for an I/O error: its code only. */
function cannotRead(err: unknown): string {
  const code = errnoCode(err);
  return code !== undefined && /^E[A-Z0-9]+$/.test(code) ? `cannot be read (${code})` : "cannot be read";
}

/** Compare by name, bytewise, so the order never depends on the locale. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The production hosts.d store in `dir`. */
export function createHostsStore(dir: string): HostsStore {
  const fileOf = (name: string) => {
    if (checkName(name) !== undefined) throw new AutoscalerError("AUTOSCALER_INPUT_INVALID", `name ${JSON.stringify(name)} ${checkName(name)}`);
    return path.join(dir, hostFileName(name));
  };
  return {
    dir,
    async list() {
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return { hosts: [], problems: [] };
        throw err;
      }
      const files = names.filter((n) => n.endsWith(FILE_SUFFIX) && !n.startsWith(".")).sort();
      const hosts: HostEntry[] = [];
      const problems: HostFileProblem[] = [];
      // Synchronous reads in slices: for thousands of tiny files the per-call cost of the promise
      // API dominates (measured 7x slower at 10,000 files); yielding between slices keeps a
      // daemon's event loop responsive. The file's time is only read when it has no added_at.
      const SLICE = 256;
      for (let i = 0; i < files.length; i += SLICE) {
        if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        for (const f of files.slice(i, i + SLICE)) {
          const full = path.join(dir, f);
          let parsed: HostEntry | HostFileProblem;
          try {
            const got = readHostFileSync(full);
            parsed = "refused" in got ? { file: f, message: got.refused } : parseHostFile(f, got.text, got.mtime);
          } catch (err) {
            if (errnoCode(err) === "ENOENT") continue; // removed while we read: not a problem
            parsed = { file: f, message: cannotRead(err) };
          }
          if ("message" in parsed) problems.push(parsed);
          else hosts.push(parsed);
        }
      }
      hosts.sort(byName);
      return { hosts, problems };
    },
    async add(entry) {
      await fs.mkdir(dir, { recursive: true });
      try {
        await writeFileAtomic(fileOf(entry.name), serialise(entry), { mode: 0o644, exclusive: true });
      } catch (err) {
        if (errnoCode(err) === "EEXIST") {
          throw new AutoscalerError(
            "AUTOSCALER_EXISTS",
            `a backend named ${JSON.stringify(entry.name)} is already in ${dir}; choose another --name or remove it first`,
          );
        }
        throw err;
      }
    },
    async read(name) {
      const file = fileOf(name);
      try {
        const got = await readHostFile(file);
        return "refused" in got ? { file: hostFileName(name), message: got.refused } : parseHostFile(hostFileName(name), got.text, got.mtime);
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return undefined;
        return { file: hostFileName(name), message: cannotRead(err) };
      }
    },
    async get(name) {
      const r = await this.read(name);
      return r === undefined || "message" in r ? undefined : r;
    },
    async put(entry) {
      await fs.mkdir(dir, { recursive: true });
      await writeFileAtomic(fileOf(entry.name), serialise(entry), { mode: 0o644 });
    },
    async remove(name) {
      try {
        await fs.unlink(fileOf(name));
        return true;
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return false;
        throw err;
      }
    },
  };
}

/** A readable `host:port` for an entry. */
export function entryAddress(entry: HostEntry): string {
  return formatHostPort(entry.address, entry.port);
}
