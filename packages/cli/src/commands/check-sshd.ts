/**
 * `autoscaler check-config --sshd`: ask OpenSSH's sshd (`sshd -T -C user=…,host=…,addr=…`) which
 * settings it applies to a node's connection, and compare them with the `Match User` block that
 * `autoscaler authorize-key` prints (`sshdMatchBlock`, the one list of expected settings). The
 * comparison is pure (`compareSshdSettings`); running sshd is at the edge (`runCheckSshd`).
 */
import { spawn } from "node:child_process";
import { constants as fsConstants, promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { AutoscalerError } from "@autoscaler/shared";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { sshdMatchBlock } from "./authorize-key.js";

/** One setting of the block: what authorize-key prints, what sshd -T says it applies (null: not printed). */
export interface SshdSettingCheck {
  setting: string;
  expected: string;
  effective: string | null;
  ok: boolean;
}

/** Settings whose value is a list of targets in any order (`permitopen a b` allows the same as `permitopen b a`). */
const LIST_SETTINGS = new Set(["permitopen", "permitlisten"]);

/** Settings whose value is a command or path, so case matters; every other value is compared case-insensitively. */
const CASE_SENSITIVE_SETTINGS = new Set(["forcecommand"]);

/** Split a value into words the way a shell reads a simple command: quotes group and are removed, a backslash escapes. */
function words(value: string): string[] {
  const out: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < value.length) word = (word ?? "") + value[++i];
      else word = (word ?? "") + c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= "";
    } else if (c === "\\" && i + 1 < value.length) {
      word = (word ?? "") + value[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) out.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) out.push(word);
  return out;
}

/** A value reduced to what it means for `setting`, for comparing. */
function normalise(setting: string, value: string): string {
  let w = words(value.trim());
  if (!CASE_SENSITIVE_SETTINGS.has(setting)) w = w.map((x) => x.toLowerCase());
  if (LIST_SETTINGS.has(setting)) w = [...new Set(w)].sort();
  return w.join(" ");
}

/** Split `Key value…` into the lower-case key (as sshd -T prints it) and the rest, or undefined for a blank or comment line. */
function keyValue(line: string): { key: string; value: string } | undefined {
  const t = line.trim();
  if (t === "" || t.startsWith("#")) return undefined;
  const m = /^(\S+)(?:\s+(.*))?$/.exec(t)!;
  return { key: m[1]!.toLowerCase(), value: (m[2] ?? "").trim() };
}

/** The settings of an sshd_config `Match` block as lower-case key and value, in order; the `Match` line, blanks and comments left out. */
export function blockSettings(block: string): { key: string; value: string }[] {
  return block
    .split("\n")
    .map(keyValue)
    .filter((kv): kv is { key: string; value: string } => kv !== undefined && kv.key !== "match");
}

/** `sshd -T` output as setting → value; a key printed on several lines (hostkey, listenaddress…) keeps them joined by a space. */
export function parseSshdT(output: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of output.split("\n")) {
    const kv = keyValue(line);
    if (!kv) continue;
    const before = out.get(kv.key);
    out.set(kv.key, before === undefined ? kv.value : `${before} ${kv.value}`);
  }
  return out;
}

/**
 * Compare every setting of `expectedBlock` (the block authorize-key prints) with what `sshd -T`
 * printed: keys case-insensitively, values case-insensitively but for ForceCommand's, quotes
 * removed, PermitOpen's and PermitListen's targets in any order.
 */
export function compareSshdSettings(expectedBlock: string, sshdTOutput: string): SshdSettingCheck[] {
  const effective = parseSshdT(sshdTOutput);
  return blockSettings(expectedBlock).map(({ key, value }) => {
    const got = effective.get(key);
    return { setting: key, expected: value, effective: got ?? null, ok: got !== undefined && normalise(key, got) === normalise(key, value) };
  });
}

/** One line per setting, columns aligned: `ok` or `WRONG`, the setting, the expected value, what sshd applies. */
export function formatSshdChecks(checks: SshdSettingCheck[]): string {
  const w = Math.max(...checks.map((c) => c.setting.length));
  const e = Math.max(...checks.map((c) => c.expected.length));
  return checks
    .map(
      (c) =>
        `${(c.ok ? "ok" : "WRONG").padEnd(6)} ${c.setting.padEnd(w)}  expected ${c.expected.padEnd(e)}  sshd: ${c.effective ?? "(not printed by sshd -T)"}`,
    )
    .join("\n");
}

/** A command line for a message: arguments with spaces or shell characters single-quoted. */
function display(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_/.,:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

/** `sshd` on the PATH, else /usr/sbin/sshd (where Debian puts it; root's PATH has it, a user's often not). */
async function findSshd(env: NodeJS.ProcessEnv): Promise<string> {
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, "sshd");
    try {
      await fs.access(file, fsConstants.X_OK);
      if ((await fs.stat(file)).isFile()) return file;
    } catch {
      // not here
    }
  }
  return "/usr/sbin/sshd";
}

/** How long sshd -T may take. */
const SSHD_TIMEOUT_MS = 10_000;

/** Output kept of each stream (sshd -T prints about 10 kB). */
const MAX_OUTPUT = 4 * 1024 * 1024;

/**
 * Run a program (no shell, its own process group) with a time limit after which the group is
 * killed; never throws: the spawn error, or the exit code and output.
 */
function execNoShell(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ code: number | null; timedOut: boolean; spawnError?: NodeJS.ErrnoException; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | undefined;
    child.stdout.on("data", (b: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += b.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, SSHD_TIMEOUT_MS);
    child.on("error", (err) => (spawnError = err));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut, spawnError, stdout, stderr });
    });
  });
}

/** Arguments of `check-config --sshd`. */
export interface CheckSshdArgs extends GlobalArgs {
  sshdConfig?: string;
  sshdBinary?: string;
  sshdUser?: string;
  sshdAddr?: string;
}

/** Where the fix goes, in messages. */
const DEFAULT_SSHD_CONFIG = "/etc/ssh/sshd_config";

/**
 * Run `sshd -T` for a node's connection (the node user, host `node`, the given address) and
 * compare with the block authorize-key prints. Exit 0 when every setting matches; 1 naming each
 * one that does not; 2 when sshd cannot say (not found, refuses its config, no host keys…).
 */
export async function runCheckSshd(io: Io, args: CheckSshdArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const port = ctx.config.master.listen!.port;
  const user = args.sshdUser ?? ctx.config.ssh.user;
  if (!user)
    throw new AutoscalerError(
      "AUTOSCALER_INPUT_INVALID",
      'no node user to check sshd for; expected haproxy.ssh_command "ssh -i KEY USER@$HOST" (or haproxy.ssh_user) in the ini, or --sshd-user NAME',
      { exitCode: 2 },
    );
  // Refuses a user that is not safe in sshd_config (or in -C, where a comma would add a criterion).
  const block = sshdMatchBlock(user, port);
  const addr = args.sshdAddr ?? "127.0.0.1";
  if (net.isIP(addr) === 0)
    throw new AutoscalerError("AUTOSCALER_USAGE", `--sshd-addr ${JSON.stringify(addr.slice(0, 60))} is not an IP address; expected one such as 10.0.0.5`, {
      exitCode: 2,
    });
  const binary = args.sshdBinary ? path.resolve(io.cwd, args.sshdBinary) : await findSshd(io.env);
  const configFile = args.sshdConfig ? path.resolve(io.cwd, args.sshdConfig) : undefined;
  const sshdArgs = ["-T", ...(configFile ? ["-f", configFile] : []), "-C", `user=${user},host=node,addr=${addr}`];
  const command = display([binary, ...sshdArgs]);

  const r = await execNoShell(binary, sshdArgs, io.env, io.cwd);
  const stderrLines = r.stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^@+$/.test(l))
    .slice(0, 6)
    .map((l) => l.slice(0, 300));
  const cannot = (why: string, hints: string[] = []) =>
    new AutoscalerError("AUTOSCALER_IO", `cannot read sshd's settings: ${command} ${why}`, {
      exitCode: 2,
      details: [...stderrLines, ...hints.map((h) => `hint: ${h}`)],
    });
  if (r.spawnError) {
    const missing = r.spawnError.code === "ENOENT";
    throw cannot(missing ? `failed: ${binary} not found` : `failed to start: ${r.spawnError.message}`, [
      missing ? "install openssh-server, or give sshd's path with --sshd-binary" : "give sshd's path with --sshd-binary",
    ]);
  }
  if (r.timedOut) throw cannot(`did not finish within ${SSHD_TIMEOUT_MS / 1000} s and was stopped`);
  if (r.code !== 0) {
    const hints: string[] = [];
    if (/host ?key/i.test(r.stderr))
      hints.push(
        process.getuid?.() === 0
          ? "sshd -T loads the host keys: check that the HostKey files exist and are mode 0600 (ssh-keygen -A makes missing default ones)"
          : "sshd -T loads the host keys, which only root may read: run this as root (sudo)",
      );
    if (configFile && /No such file|Permission denied/i.test(r.stderr)) hints.push(`check the path given with --sshd-config: ${configFile}`);
    throw cannot(`exited ${r.code ?? "on a signal"}${stderrLines.length ? ":" : " and printed nothing on stderr"}`, hints);
  }
  const checks = compareSshdSettings(block, r.stdout);
  if (checks.every((c) => c.effective === null))
    throw cannot("printed none of the settings it was asked about", [`is ${binary} OpenSSH's sshd? give its path with --sshd-binary`]);

  const wrong = checks.filter((c) => !c.ok);
  if (args.json) {
    const result = {
      ok: wrong.length === 0,
      sshd: { command: [binary, ...sshdArgs], user, host: "node", addr, settings: checks, wrong: wrong.map((c) => c.setting) },
    };
    io.stdout.write(JSON.stringify(result) + "\n");
  } else {
    io.stdout.write(`${command}\n${formatSshdChecks(checks)}\n`);
  }
  if (wrong.length === 0) {
    if (!args.json) io.stdout.write(`sshd: all ${checks.length} settings of the Match block are in effect for user ${user} from ${addr}\n`);
    return 0;
  }
  if (!args.json) io.stdout.write(`sshd: ${wrong.length} of ${checks.length} settings WRONG: ${wrong.map((c) => c.setting).join(", ")}\n`);
  throw new AutoscalerError(
    "AUTOSCALER_CONFIG_INVALID",
    `sshd does not apply ${wrong.length} of the ${checks.length} settings of the Match block to user ${user}: ${wrong
      .map((c) => `${c.setting} (expected ${c.expected}, sshd: ${c.effective ?? "not printed"})`)
      .join(", ")}`,
    {
      exitCode: 1,
      details: [
        `fix: append the block \`autoscaler authorize-key NODE_KEY.pub\` prints to ${configFile ?? DEFAULT_SSHD_CONFIG} (at the end, once), then: sshd -t && systemctl reload ssh`,
        "where an earlier Match block for this user already sets one of these, change it there: sshd applies the first value a matching block gives",
      ],
    },
  );
}
