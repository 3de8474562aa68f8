import { spawn } from "node:child_process";

/** What a finished command left behind. `code` is null when a signal ended it. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** Options for one command run. `env` is merged over the runner's base environment. */
export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
  /** Keep at most this many bytes of each stream (the tail is kept). */
  maxOutputBytes?: number;
  /** Kill the command's whole process group when this aborts (a master that stops leading). */
  signal?: AbortSignal;
}

/** Runs operator commands through `/bin/sh -c`. Values reach the command only through `env`, never spliced into it. */
export interface CommandRunner {
  run(command: string, options?: RunOptions): Promise<CommandResult>;
}

const DEFAULT_MAX_OUTPUT = 256 * 1024;

function keepTail(chunks: Buffer[], max: number): string {
  const all = Buffer.concat(chunks);
  return (all.length > max ? all.subarray(all.length - max) : all).toString("utf8");
}

/** The production runner: `/bin/sh -c COMMAND` in its own process group, killed whole on timeout. */
export function createShellRunner(baseEnv: NodeJS.ProcessEnv = process.env): CommandRunner {
  return {
    run(command, options = {}) {
      const started = performance.now();
      const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
      return new Promise((resolve, reject) => {
        const child = spawn("/bin/sh", ["-c", command], {
          cwd: options.cwd,
          env: { ...baseEnv, ...options.env },
          stdio: ["ignore", "pipe", "pipe"],
          detached: true, // its own process group, so a timeout kills the children of the shell too
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let timedOut = false;
        let timer: NodeJS.Timeout | undefined;
        const killGroup = () => {
          try {
            process.kill(-child.pid!, "SIGKILL");
          } catch {
            // already gone
          }
        };
        if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
          timer = setTimeout(() => {
            timedOut = true;
            killGroup();
          }, options.timeoutMs);
        }
        if (options.signal?.aborted) killGroup();
        options.signal?.addEventListener("abort", killGroup, { once: true });
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.stderr.on("data", (b: Buffer) => err.push(b));
        child.on("error", (e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        });
        child.on("close", (code, signal) => {
          if (timer) clearTimeout(timer);
          options.signal?.removeEventListener("abort", killGroup);
          resolve({
            code,
            signal,
            stdout: keepTail(out, max),
            stderr: keepTail(err, max),
            timedOut,
            durationMs: performance.now() - started,
          });
        });
      });
    },
  };
}

/** One line that says how a command ended, for messages. */
export function describeExit(result: CommandResult): string {
  if (result.timedOut) return `timed out after ${Math.round(result.durationMs)} ms`;
  if (result.signal) return `ended by signal ${result.signal}`;
  return `exit code ${result.code}`;
}
