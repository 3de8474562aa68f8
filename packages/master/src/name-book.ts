/**
 * The names this master has ever registered, and with which credential, in
 * `state_dir/names.json` (0600). A launch's join credential registers new names only: a name in
 * this book stays its first owner's after node_timeout, forget_after and restarts, and a
 * launch's count of names holds across restarts too. At most 100,000 names (the oldest go).
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { errnoCode, writeFileAtomic, type Logger } from "@autoscaler/shared";

/** How a name first registered. */
export interface NameRecord {
  kind: "node" | "launch" | "shared";
  /** The launch whose join credential registered it. */
  launch?: string;
  /** Unix ms. */
  at: number;
}

const MAX_NAMES = 100_000;

const schema = z.object({
  version: z.literal(1),
  names: z.record(
    z.string().max(63),
    z.object({ kind: z.enum(["node", "launch", "shared"]), launch: z.string().max(64).optional(), at: z.number().int().min(0) }).strict(),
  ),
});

/** The book's operations; writes are serialised and durable before they resolve. */
export interface NameBook {
  get(name: string): NameRecord | undefined;
  /** How many names a launch's join credential has registered. */
  launchNames(launchId: string): number;
  /** Remember a name's first registration (a known name is left as it is). */
  remember(name: string, record: NameRecord): Promise<void>;
}

/** Load `dir/names.json`; a missing file is an empty book, an unreadable one is set aside with a warning. */
export async function loadNameBook(dir: string, logger: Logger): Promise<NameBook> {
  const file = path.join(dir, "names.json");
  const names = new Map<string, NameRecord>();
  try {
    const parsed = schema.parse(JSON.parse(await fs.readFile(file, "utf8")));
    for (const [name, record] of Object.entries(parsed.names)) names.set(name, record);
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") {
      const aside = `${file}.unreadable-${Date.now()}`;
      await fs.rename(file, aside).catch(() => undefined);
      logger.warn("the book of registered names cannot be read; it was set aside and starts empty (hosts.d still protects every current name)", {
        file,
        set_aside: aside,
      });
    }
  }
  const launchCounts = new Map<string, number>();
  for (const r of names.values()) if (r.launch) launchCounts.set(r.launch, (launchCounts.get(r.launch) ?? 0) + 1);
  let writing = Promise.resolve();
  const save = async () => {
    const body = { version: 1, names: Object.fromEntries(names) };
    await writeFileAtomic(file, JSON.stringify(body) + "\n", { mode: 0o600, forceMode: true });
  };
  return {
    get: (name) => names.get(name),
    launchNames: (launchId) => launchCounts.get(launchId) ?? 0,
    remember(name, record) {
      if (names.has(name)) return writing;
      names.set(name, record);
      if (record.launch) launchCounts.set(record.launch, (launchCounts.get(record.launch) ?? 0) + 1);
      // Map order is insertion order: the first keys are the oldest.
      while (names.size > MAX_NAMES) names.delete(names.keys().next().value!);
      writing = writing.catch(() => undefined).then(save);
      return writing;
    },
  };
}
