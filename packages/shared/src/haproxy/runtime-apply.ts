/**
 * The runtime path: a change that only adds or removes servers is applied through HAProxy's
 * runtime API (the admin `stats socket`), without a reload.
 *
 *   render → show servers state → plan ─(not only servers added/removed)→ reload path (apply.ts)
 *                                   │
 *                                   ▼
 *   add server + enable health + enable server; set server … state maint (removals)
 *                                   │                    ─(HAProxy answers anything else)→ reload path, counted
 *                                   ▼
 *   stage + check the file ─(refused)→ undo the runtime commands; live file untouched
 *                                   │
 *                                   ▼
 *   rename over the live file, mark it as what HAProxy runs → del server (once its
 *   connections are gone) → confirm with show servers state → save the server-state file
 *
 * The runtime commands go first so a new node is served at once; the file is checked right
 * after, and HAProxy and the file agree again when the apply ends, whichever way it ends. The
 * whole of it holds the apply lock, like the reload path.
 */
import path from "node:path";
import { readIfExists, writeFileAtomic } from "../atomic-write.js";
import type { Config } from "../config/load.js";
import {
  applyLocked,
  configDigest,
  promoteStaged,
  readReloadedMarker,
  stageAndCheck,
  withApplyLock,
  writeReloadedMarker,
  type ApplyDeps,
  type ApplyResult,
  type ApplySettings,
} from "./apply.js";
import { sendCliCommand } from "./master-cli.js";
import { renderHaproxyConfig } from "./render.js";
import { configSections, inMaintenance, parseServersState, planRuntimeChange, type RuntimeAdd, type ServerHost, type ServerState } from "./runtime-plan.js";

/** The runtime API's settings: the admin socket and the backend our servers live in. */
export interface RuntimeSettings {
  socket: string;
  backend: string;
  /** Per command (default 2 s). */
  timeoutMs?: number;
  /**
   * The digest of the last config whose check HAProxy refused after its servers were added at
   * runtime (and taken out again). The same config is not put in service again while it is
   * retried: it takes the reload path, whose check comes first, so HAProxy is not touched.
   */
  refused?: string;
}

/** What a change is rendered from. */
export interface RenderInputs {
  template: string;
  hosts: readonly ServerHost[];
  serverLine: string;
}

/** Sends one command line to the admin socket and returns HAProxy's whole answer. */
export type RuntimeSend = (command: string) => Promise<string>;

/** A runtime command that got an answer other than the expected one: HAProxy's words are in the message. */
export class RuntimeCommandError extends Error {}

const socketSend =
  (runtime: RuntimeSettings): RuntimeSend =>
  (command) =>
    sendCliCommand(runtime.socket, command, runtime.timeoutMs ?? 2000);

/** Send a command and require its answer, trimmed, to be one of `expected`. */
async function expectAnswer(send: RuntimeSend, command: string, expected: readonly string[]): Promise<void> {
  let answer: string;
  try {
    answer = (await send(command)).trim();
  } catch (err) {
    throw new RuntimeCommandError(`"${command}": ${(err as Error).message}`);
  }
  if (!expected.includes(answer)) throw new RuntimeCommandError(`"${command}": HAProxy answered ${JSON.stringify(answer.slice(0, 300) || "(nothing)")}`);
}

/** The servers of the backend HAProxy runs now. */
export async function runningServers(send: RuntimeSend, backend: string): Promise<ServerState[]> {
  let answer: string;
  try {
    answer = await send(`show servers state ${backend}`);
  } catch (err) {
    throw new RuntimeCommandError(`"show servers state ${backend}": ${(err as Error).message}`);
  }
  try {
    return parseServersState(answer, backend);
  } catch (err) {
    throw new RuntimeCommandError((err as Error).message);
  }
}

/**
 * `add server`, then health checks and traffic on, in one round trip (HAProxy runs `;`-separated
 * commands in order and answers each: "New server registered." then nothing for each enable).
 * The options are the ones the file gives the server, since a dynamic server inherits no default-server.
 */
async function addServer(send: RuntimeSend, backend: string, add: RuntimeAdd): Promise<void> {
  const ref = `${backend}/${add.name}`;
  const commands = [`add server ${ref} ${add.args.join(" ")}`, ...(add.check ? [`enable health ${ref}`] : []), `enable server ${ref}`];
  await expectAnswer(send, commands.join("; "), ["New server registered."]);
}

/** Delete servers already in maintenance; the ones that still have connections are returned, to be tried again later. */
async function deleteServers(send: RuntimeSend, backend: string, names: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const name of names) {
    const answer = (await send(`del server ${backend}/${name}`).catch((err: Error) => err.message)).trim();
    if (answer !== "Server deleted." && answer !== "No such server.") left.push(name);
  }
  return left;
}

/** Undo what a runtime apply did before its file was refused: added servers out again, removed ones back in service. Best effort. */
async function undo(send: RuntimeSend, backend: string, added: readonly string[], maintained: readonly string[]): Promise<void> {
  for (const name of added) {
    await send(`set server ${backend}/${name} state maint`).catch(() => undefined);
    await send(`del server ${backend}/${name}`).catch(() => undefined);
  }
  for (const name of maintained) await send(`set server ${backend}/${name} state ready`).catch(() => undefined);
}

/** The `server-state-file` a config text names (with `server-state-base`), resolved against `cwd`; undefined when it names none. */
export function serverStateFile(text: string, cwd: string): string | undefined {
  const global = configSections(text).find((s) => s.keyword === "global")?.lines ?? [];
  const setting = (key: string) => global.findLast((w) => w[0] === key)?.[1];
  const file = setting("server-state-file");
  if (!file) return undefined;
  const base = setting("server-state-base");
  return path.resolve(cwd, base && !path.isAbsolute(file) ? path.join(base, file) : file);
}

/**
 * Save HAProxy's server states (drain, maintenance, weights) to the config's `server-state-file`,
 * so the next reload (`load-server-state-from-file`) keeps them. A failure is a warning: the
 * master re-sends its drains after each reload anyway.
 */
export async function saveServerState(send: RuntimeSend, text: string, cwd: string, deps: Pick<ApplyDeps, "logger">): Promise<void> {
  const file = serverStateFile(text, cwd);
  if (!file) return;
  try {
    const answer = await send("show servers state");
    if (!answer.startsWith("1\n")) throw new Error(`unexpected answer to "show servers state": ${JSON.stringify(answer.slice(0, 200))}`);
    await writeFileAtomic(file, answer, { mode: 0o644 });
  } catch (err) {
    deps.logger.warn("cannot save HAProxy's server states; a reload now starts every server in its configured state", {
      file,
      error: (err as Error).message,
    });
  }
}

/** `deps` that save HAProxy's server states (through `send`) just before each reload. */
export function savingServerStates(deps: ApplyDeps, send: RuntimeSend, cwd: string): ApplyDeps {
  return { ...deps, beforeReload: (text) => saveServerState(send, text, cwd, deps) };
}

/** For the CLI's reloads (generate --reload, add-host, remove-host): save server states first when `[haproxy] runtime_socket` is set. */
export function cliApplyDeps(config: Pick<Config, "haproxy" | "dir">, deps: ApplyDeps): ApplyDeps {
  const socket = config.haproxy.runtime_socket;
  return socket ? savingServerStates(deps, (command) => sendCliCommand(socket, command), config.dir) : deps;
}

/**
 * Apply the change: through the runtime API when it only adds or removes servers, else (or
 * when a runtime command fails) through the reload path. `runtime` undefined: reload path only.
 */
export async function applyHaproxyChange(
  settings: ApplySettings,
  inputs: () => Promise<RenderInputs>,
  deps: ApplyDeps,
  runtime: RuntimeSettings | undefined,
  send: RuntimeSend | undefined = runtime ? socketSend(runtime) : undefined,
): Promise<ApplyResult> {
  const t0 = performance.now();
  return withApplyLock(settings.target, async () => {
    const input = await inputs();
    const text = Buffer.from(renderHaproxyConfig(input.template, input.hosts, input.serverLine), "utf8");
    if (!runtime || !send) return applyLocked(settings, text, deps, { reload: true }, t0);
    const withStates = savingServerStates(deps, send, settings.cwd);
    try {
      const outcome = await applyRuntimeLocked(settings, input, text, deps, runtime, send, t0);
      if (outcome.kind === "applied") return outcome.result;
      // Not expressible at runtime: HAProxy is brought in step with the file by a reload, even if the file is unchanged.
      return { ...(await applyLocked(settings, text, withStates, { reload: true, force: true }, t0)), reloadBecause: outcome.why };
    } catch (err) {
      if (!(err instanceof RuntimeCommandError)) throw err;
      deps.logger.warn("HAProxy's runtime API did not take the change; applying it with a reload instead", { error: err.message });
      const result = await applyLocked(settings, text, withStates, { reload: true, force: true }, t0);
      return { ...result, reloadBecause: "a runtime command failed", runtimeFailure: err.message };
    }
  });
}

type RuntimeOutcome = { kind: "applied"; result: ApplyResult } | { kind: "reload"; why: string };

async function applyRuntimeLocked(
  settings: ApplySettings,
  input: RenderInputs,
  text: Buffer,
  deps: ApplyDeps,
  runtime: RuntimeSettings,
  send: RuntimeSend,
  t0: number,
): Promise<RuntimeOutcome> {
  const { backend } = runtime;
  const tr = performance.now();
  // The live file, its marker and HAProxy's servers are independent reads: asked at once.
  const [live, marker, running] = await Promise.all([readIfExists(settings.target), readReloadedMarker(settings), runningServers(send, backend)]);
  const known = live && marker === configDigest(live) ? live.toString("utf8") : undefined;
  const plan = planRuntimeChange({ ...input, backend, live: known, running });
  if (plan.kind === "reload") return plan;
  const digest = configDigest(text);
  if (digest === runtime.refused && plan.add.length > 0) return { kind: "reload", why: "HAProxy's check refused this config the last time it was tried" };
  const timings = { renderMs: tr - t0, checkMs: 0, reloadMs: 0, confirmMs: 0, totalMs: 0, runtimeMs: 0 };
  const stillPending = await deleteServers(send, backend, plan.pendingDeletes);
  if (plan.add.length === 0 && plan.remove.length === 0) {
    timings.totalMs = performance.now() - t0;
    const runtime = { added: [], removed: [], pendingDeletes: stillPending };
    return { kind: "applied", result: { changed: false, checked: false, reloaded: false, confirmed: undefined, runtime, timings } };
  }

  const added: string[] = [];
  const maintained: string[] = [];
  for (const add of plan.add) {
    await addServer(send, backend, add);
    added.push(add.name);
  }
  for (const name of plan.remove) {
    await expectAnswer(send, `set server ${backend}/${name} state maint`, [""]);
    maintained.push(name);
  }
  timings.runtimeMs = performance.now() - tr;

  const t1 = performance.now();
  let staged: string;
  try {
    staged = await stageAndCheck(settings, text, deps);
  } catch (err) {
    await undo(send, backend, added, maintained);
    runtime.refused = digest;
    throw err;
  }
  timings.checkMs = performance.now() - t1;
  await promoteStaged(staged, settings.target, text.length, deps.logger);
  await writeReloadedMarker(settings, digest, deps.logger);

  const t2 = performance.now();
  const pendingDeletes = await deleteServers(send, backend, [...maintained, ...stillPending]);
  const after = new Map((await runningServers(send, backend)).map((s) => [s.name, s]));
  const missing = added.filter((n) => !after.has(n) || inMaintenance(after.get(n)!));
  const lingering = maintained.filter((n) => after.has(n) && !inMaintenance(after.get(n)!));
  if (missing.length > 0 || lingering.length > 0) {
    throw new RuntimeCommandError(
      `"show servers state ${backend}" after the change: ${[
        missing.length > 0 ? `not in service: ${missing.join(", ")}` : "",
        lingering.length > 0 ? `still in service: ${lingering.join(", ")}` : "",
      ]
        .filter(Boolean)
        .join("; ")}`,
    );
  }
  timings.confirmMs = performance.now() - t2;
  await saveServerState(send, text.toString("utf8"), settings.cwd, deps);
  timings.totalMs = performance.now() - t0;
  return {
    kind: "applied",
    result: { changed: true, checked: true, reloaded: false, confirmed: true, runtime: { added, removed: maintained, pendingDeletes }, timings },
  };
}
