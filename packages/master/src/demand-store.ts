/**
 * The predictive floor's history in `state_dir/demand.json`: fleet demand per minute, at most
 * eight days. Written once a minute with the atomic-write helper. A file that cannot be read
 * is set aside with a warning (it only shapes a floor; losing it never repeats an action).
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { errnoCode, writeFileAtomic, type Logger } from "@autoscaler/shared";
import { DEMAND_HISTORY_MINUTES, emptyDemandHistory, type DemandHistory } from "./predictive.js";

const schema = z.object({
  version: z.literal(1),
  lastMinute: z.number().int().min(0),
  // Gaps are stored as null (JSON has no NaN).
  values: z.array(z.number().min(0).nullable()).max(DEMAND_HISTORY_MINUTES),
});

/** Read a demand document (demand.json, or the copy in etcd); throws when it does not parse. */
export function parseDemand(text: string): DemandHistory {
  const parsed = schema.parse(JSON.parse(text));
  return { lastMinute: parsed.lastMinute, values: parsed.values.map((v) => (v === null ? Number.NaN : v)) };
}

/** The document a demand history is stored as (gaps as null, values to one decimal). */
export function serialiseDemand(history: DemandHistory): string {
  const body = { version: 1, lastMinute: history.lastMinute, values: history.values.map((v) => (Number.isNaN(v) ? null : Math.round(v * 10) / 10)) };
  return JSON.stringify(body) + "\n";
}

/** Reads and writes demand.json in one folder. */
export interface DemandStore {
  load(logger: Logger): Promise<DemandHistory>;
  save(history: DemandHistory): Promise<void>;
}

/** The production store: `dir/demand.json`, mode 0600. */
export function createDemandStore(dir: string): DemandStore {
  const file = path.join(dir, "demand.json");
  return {
    async load(logger) {
      let text: string;
      try {
        text = await fs.readFile(file, "utf8");
      } catch (err) {
        if (errnoCode(err) !== "ENOENT")
          logger.warn("cannot read the demand history; the predictive floor starts empty", { file, error: (err as Error).message });
        return emptyDemandHistory();
      }
      try {
        return parseDemand(text);
      } catch (err) {
        logger.warn("the demand history has an unexpected shape; the predictive floor starts empty", { file, error: (err as Error).message });
        return emptyDemandHistory();
      }
    },
    async save(history) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, serialiseDemand(history), { mode: 0o600, forceMode: true });
    },
  };
}
