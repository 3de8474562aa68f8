/**
 * The master's durable state in `state_dir/state.json` (SPEC behaviour 6): the pause flag, the
 * times of the last actions (cooldowns survive a restart), launches and drains. Every save is
 * an atomic replace; a decision that leads to a command is saved before the command starts.
 * A file that cannot be read is refused, never silently reset: forgetting a launch could
 * repeat it.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { AutoscalerError, errnoCode, writeFileAtomic } from "@autoscaler/shared";

const launchSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
    decidedAt: z.number().int().min(0),
    count: z.number().int().min(1),
    reason: z.string().max(1024),
    /**
     * running: recorded, then the command started (the record is saved before it starts);
     * pending: the command succeeded, nodes not all registered yet; done: every node registered;
     * failed: the command failed, or launch_timeout passed.
     */
    status: z.enum(["running", "pending", "failed", "done"]),
    /** What the command printed (run-instances JSON), to match the nodes that register. */
    instances: z.array(z.object({ instanceId: z.string().max(128), privateAddress: z.string().max(64).optional() }).strict()),
    /** Names of the nodes that registered for this launch. */
    nodes: z.array(z.string().max(63)),
    manual: z.boolean(),
    /** Set when the master restarted during the launch, and similar facts status should show. */
    note: z.string().max(1024).optional(),
    finishedAt: z.number().int().min(0).optional(),
    error: z.string().max(4096).optional(),
    /** The scale-up cooldown this launch replaced: put back when its command fails (no cooldown after a no-op). */
    previousScaleUpAt: z.number().int().min(0).optional(),
  })
  .strict();

const drainSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
    node: z.string().max(63),
    /** The id the terminate command gets: from a launch's output or an operator ("" when none). */
    instanceId: z.string().max(128),
    /** An id only the node itself reported: its terminate is skipped. */
    reportedInstanceId: z.string().max(128).optional(),
    address: z.string().max(64),
    decidedAt: z.number().int().min(0),
    drainUntil: z.number().int().min(0),
    /** draining (saved before the drain starts) → terminating (saved before the command starts) → done, or failed (node back in service). */
    status: z.enum(["draining", "terminating", "failed", "done"]),
    reason: z.string().max(1024),
    manual: z.boolean(),
    note: z.string().max(1024).optional(),
    finishedAt: z.number().int().min(0).optional(),
    error: z.string().max(4096).optional(),
    /** The scale-down cooldown this drain replaced: put back when its command fails. */
    previousScaleDownAt: z.number().int().min(0).optional(),
  })
  .strict();

/** Consecutive failures in one direction and the time before which no automatic action retries. */
const backoffSchema = z.object({ failures: z.number().int().min(0), until: z.number().int().min(0) }).strict();

const shortName = z.string().regex(/^[A-Za-z0-9._-]{1,63}$/);
const runSchema = z
  .object({
    at: z.number().int().min(0),
    /** Who asked: "execute" (by hand), "webhook NAME", "schedule NAME". */
    via: z.string().max(200),
    /** executed, no_change, discarded (a cooldown), refused (off, paused, limits), skipped (a schedule missed beyond grace). */
    outcome: z.enum(["executed", "no_change", "discarded", "refused", "skipped"]),
    result: z.string().max(1024),
  })
  .strict();
/** A named policy: when it last changed the count (its cooldown runs from there) and its last run. */
const policyRunSchema = z.object({ lastChangeAt: z.number().int().min(0).optional(), last: runSchema }).strict();
/** A schedule: the run time it last handled (never handled twice) and what happened. */
const scheduleRunSchema = z.object({ slot: z.number().int().min(0), last: runSchema }).strict();
/** A webhook: the SHA-256 of its secret only (hex), so a leaked state file gives no URL away. */
const webhookSchema = z.object({ name: shortName, policy: shortName, sha256: z.string().regex(/^[0-9a-f]{64}$/), createdAt: z.number().int().min(0) }).strict();
/** Limits a schedule set, over the ini's min_nodes / max_nodes until a schedule sets them again. */
const limitsSchema = z
  .object({
    minNodes: z.number().int().min(0).optional(),
    maxNodes: z.number().int().min(1).optional(),
    /** The schedule that set them, and when. */
    by: z.string().max(200),
    at: z.number().int().min(0),
  })
  .strict();

const stateSchema = z
  .object({
    /** 1: before backoff was kept here (read and migrated forward); 2: now. */
    version: z.union([z.literal(1), z.literal(2)]).transform(() => 2 as const),
    paused: z.boolean(),
    lastScaleUpAt: z.number().int().min(0).optional(),
    lastScaleDownAt: z.number().int().min(0).optional(),
    launches: z.array(launchSchema),
    drains: z.array(drainSchema),
    backoff: z.object({ up: backoffSchema.optional(), down: backoffSchema.optional() }).strict().default({}),
    policies: z.record(shortName, policyRunSchema).optional(),
    schedules: z.record(shortName, scheduleRunSchema).optional(),
    webhooks: z.array(webhookSchema).max(1000).optional(),
    limits: limitsSchema.optional(),
    /** `autoscaler teardown`: since when every node the autoscaler launched is being removed (until `resume`). */
    teardown: z
      .object({ at: z.number().int().min(0) })
      .strict()
      .optional(),
  })
  .strict();

/** One recorded launch. */
export type LaunchRecord = z.infer<typeof launchSchema>;
/** One recorded drain-then-terminate. */
export type DrainRecord = z.infer<typeof drainSchema>;
/** Everything the master keeps across restarts. */
export type DurableState = z.output<typeof stateSchema>;
/** One run of a policy or a schedule, as recorded. */
export type RunRecord = z.infer<typeof runSchema>;
/** A stored webhook (its secret's hash only). */
export type WebhookRecord = z.infer<typeof webhookSchema>;
/** Limits a schedule set. */
export type LimitsRecord = z.infer<typeof limitsSchema>;
/** One direction's failure backoff. */
export type Backoff = z.infer<typeof backoffSchema>;

/** The state of a master that never ran. */
export function emptyState(): DurableState {
  return { version: 2, paused: false, launches: [], drains: [], backoff: {} };
}

/**
 * Read a state document (state.json, or the shared state in etcd). One that does not parse is
 * refused, never reset: forgetting a launch could repeat it. `where` names it, `fix` says what to do.
 */
export function parseState(text: string, where: string, fix: string, refusing: "start" | "act" = "start"): DurableState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AutoscalerError("AUTOSCALER_IO", `the master's state ${where} is not valid JSON; refusing to ${refusing} rather than forget launches. ${fix}`);
  }
  const parsed = stateSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new AutoscalerError(
      "AUTOSCALER_IO",
      `the master's state ${where} has an unexpected shape (${first?.path.join(".") || "top"}: ${first?.message}); refusing to ${refusing} rather than forget launches. ${fix}`,
    );
  }
  return parsed.data;
}

/** The document a state is stored as (checked against the schema first). */
export function serialiseState(state: DurableState): string {
  return JSON.stringify(stateSchema.parse(state), null, 2) + "\n";
}

/** Reads and writes state.json in one folder. */
export interface StateStore {
  readonly file: string;
  load(): Promise<DurableState>;
  save(state: DurableState): Promise<void>;
}

/** The production store: `dir/state.json`, mode 0600. */
export function createStateStore(dir: string): StateStore {
  const file = path.join(dir, "state.json");
  return {
    file,
    async load() {
      let text: string;
      try {
        text = await fs.readFile(file, "utf8");
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return emptyState();
        throw new AutoscalerError("AUTOSCALER_IO", `cannot read the master's state ${file}: ${(err as Error).message}`);
      }
      return parseState(text, file, "Inspect it, then move it aside to start from scratch");
    },
    async save(state) {
      const text = serialiseState(state);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, text, { mode: 0o600, forceMode: true });
    },
  };
}
