/**
 * Config: read → parse → normalise → rules → `{config, errors, warnings}`. Only `loadConfig`
 * touches the disk; `parseConfig` is pure so that every rule has a table test.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AutoscalerError, EXIT_CONFIG, errnoCode } from "../errors.js";
import { readIni, type IniDocument } from "./ini-reader.js";
import { SCHEMA, type KeySpec, type ParseContext, type SectionName, type Settings } from "./schema.js";
import { parseSshArgs, splitWords, type SshSettings } from "./ssh.js";
import { CROSS_FIELD_RULES } from "./rules.js";
import { familyOf, readFamilies, type PolicyConfig, type ScheduleConfig } from "./families.js";

/** The default config file, used when neither --config nor AUTOSCALER_CONFIG is given. */
export const DEFAULT_CONFIG_PATH = "/etc/autoscaler/autoscaler.ini";

/**
 * Cooldowns (seconds) when neither `cooldown` nor a direction's override is set. Target mode
 * sizes each scale-up by the deficit, so its up-cooldown is short, and its scale-down is held
 * by `scale_down_window` instead of a cooldown; the threshold modes keep the seed's 300 s.
 */
export const DEFAULT_COOLDOWNS = {
  target: { up: 30, down: 0 },
  instance: { up: 300, down: 300 },
  average: { up: 300, down: 300 },
  /** Sized by the deficit like target mode; its scale-down is held by scale_down_window. */
  resources: { up: 30, down: 0 },
} as const;

/** One problem with one key: what was found and what was expected. */
export interface ConfigProblem {
  /** `section.key`, or a file-level subject such as the file name. */
  subject: string;
  message: string;
}

/** The loaded configuration: every key typed, paths absolute, plus what is derived from several keys. */
export interface Config extends Settings {
  /** Absolute path of the ini file. */
  file: string;
  /** Its folder: relative paths in the ini are relative to it. */
  dir: string;
  /** `<dir>/hosts.d`: one file per backend. */
  hostsDir: string;
  /** The AWS region from `region`, or the original tool's `aws_default_region`. */
  awsRegion: string;
  /** Scale-up and scale-down cooldowns in seconds, after the overrides. */
  cooldowns: { up: number; down: number };
  /** User, key and port for the agent, from `ssh_command` or `ssh_user` + `ssh_params`. */
  ssh: SshSettings;
  /** Values no log line, status output or event may show. */
  secrets: string[];
  /** `[cluster] prefix`, or `/autoscaler/<cluster name>/` when it is empty. */
  etcdPrefix: string;
  /** The `[policy:NAME]` sections, in ini order. */
  policies: PolicyConfig[];
  /** The `[schedule:NAME]` sections, in ini order. */
  schedules: ScheduleConfig[];
}

/** What parsing found: a config when there are no errors. */
export interface ConfigResult {
  config: Config | undefined;
  errors: ConfigProblem[];
  warnings: ConfigProblem[];
}

/** One line per problem, as the CLI prints them. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.subject}: ${p.message}`;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

/** ` (did you mean "X"?)` for the closest candidate within two edits, else "". */
export function suggest(word: string, candidates: string[]): string {
  const best = candidates
    .map((c) => ({ c, d: editDistance(word, c) }))
    .filter((x) => x.d <= 2)
    .sort((x, y) => x.d - y.d)[0];
  return best ? ` (did you mean "${best.c}"?)` : "";
}

function showValue(spec: KeySpec<unknown>, raw: string): string {
  return spec.secret ? "[redacted]" : JSON.stringify(raw);
}

/** Parse ini text into a config. Pure: `file` only names the config and anchors relative paths. */
export function parseConfig(text: string, file: string, options: { home?: string } = {}): ConfigResult {
  const errors: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const absFile = path.resolve(file);
  const ctx: ParseContext = { dir: path.dirname(absFile), home: options.home ?? os.homedir() };
  const { doc, errors: syntax } = readIni(text);
  for (const e of syntax) errors.push({ subject: path.basename(absFile), message: e.message });
  if (doc.has("")) {
    const first = [...doc.get("")!.values()][0];
    errors.push({
      subject: path.basename(absFile),
      message: `line ${first?.line ?? 1} has a key before any [section]; expected it under one of ${Object.keys(SCHEMA)
        .map((s) => `[${s}]`)
        .join(", ")}`,
    });
  }
  warnUnknown(doc, warnings);

  const settings = {} as Record<string, Record<string, unknown>>;
  const failed = new Set<string>();
  for (const [section, keys] of Object.entries(SCHEMA) as [SectionName, Record<string, KeySpec<unknown>>][]) {
    settings[section] = {};
    for (const [key, spec] of Object.entries(keys)) {
      const entry = doc.get(section)?.get(key);
      const raw = entry?.value ?? spec.default;
      const result = spec.parse(raw, ctx);
      if (result.ok) {
        settings[section]![key] = result.value;
        continue;
      }
      errors.push({ subject: `${section}.${key}`, message: `${showValue(spec, raw)} is not valid; expected ${result.expected}` });
      failed.add(`${section}.${key}`);
      // Stand in the default so the rules below can still check the keys that did parse.
      const fallback = spec.parse(spec.default, ctx);
      settings[section]![key] = fallback.ok ? fallback.value : undefined;
    }
  }

  const s = settings as unknown as Settings;
  const ssh = readSsh(s, ctx, errors, warnings);
  const { policies, schedules } = readFamilies(doc, ctx, errors, warnings);
  const config: Config = {
    ...s,
    file: absFile,
    dir: ctx.dir,
    hostsDir: path.join(ctx.dir, "hosts.d"),
    awsRegion: s.aws.region || s.aws.aws_default_region,
    cooldowns: {
      up: s.scaling.scale_up_cooldown ?? s.scaling.cooldown ?? DEFAULT_COOLDOWNS[s.scaling.mode].up,
      down: s.scaling.scale_down_cooldown ?? s.scaling.cooldown ?? DEFAULT_COOLDOWNS[s.scaling.mode].down,
    },
    ssh,
    etcdPrefix: s.cluster.prefix || `/autoscaler/${s.cluster.name}/`,
    policies,
    schedules,
    secrets: [s.aws.aws_access_key, s.aws.aws_secret_key, s.aws.session_token, s.master.token, s.agent.credential, s.cluster.password].filter(
      (v) => typeof v === "string" && v !== "",
    ),
  };
  if (s.aws.region && s.aws.aws_default_region && s.aws.region !== s.aws.aws_default_region) {
    warnings.push({ subject: "aws.aws_default_region", message: `ignored: aws.region (${JSON.stringify(s.aws.region)}) is set and wins` });
  }
  // Every rule whose keys parsed runs, so one run shows every problem (SPEC: one message per problem).
  for (const rule of CROSS_FIELD_RULES) if (rule.keys.every((k) => !failed.has(k))) rule.check(config, errors, warnings);
  return errors.length > 0 ? { config: undefined, errors, warnings } : { config, errors, warnings };
}

function warnUnknown(doc: IniDocument, warnings: ConfigProblem[]): void {
  const sections = Object.keys(SCHEMA);
  for (const [section, keys] of doc) {
    if (section === "" || familyOf(section)) continue;
    const known = (SCHEMA as Record<string, Record<string, unknown>>)[section];
    if (!known) {
      warnings.push({ subject: `[${section}]`, message: `unknown section, ignored${suggest(section, sections)}` });
      continue;
    }
    for (const [key, entry] of keys) {
      if (!(key in known)) {
        warnings.push({ subject: `${section}.${key}`, message: `unknown key on line ${entry.line}, ignored${suggest(key, Object.keys(known))}` });
      }
    }
  }
}

function readSsh(s: Settings, ctx: ParseContext, errors: ConfigProblem[], warnings: ConfigProblem[]): SshSettings {
  const empty: SshSettings = { user: undefined, identityFile: undefined, port: undefined };
  const { ssh_command, ssh_user, ssh_params } = s.haproxy;
  if (ssh_command.trim() !== "") {
    if (ssh_user || ssh_params)
      warnings.push({ subject: "haproxy.ssh_user", message: "ignored: haproxy.ssh_command is set and wins over ssh_user/ssh_params" });
    const words = splitWords(ssh_command);
    if (path.basename(words[0] ?? "") !== "ssh") {
      errors.push({
        subject: "haproxy.ssh_command",
        message: `${JSON.stringify(ssh_command)} is not valid; expected an ssh command line such as "ssh -i KEY -p PORT USER@$HOST"`,
      });
      return empty;
    }
    const parsed = parseSshArgs(words.slice(1), ctx.dir, ctx.home);
    if (!parsed.ok) {
      errors.push({ subject: "haproxy.ssh_command", message: `${JSON.stringify(ssh_command)} is not valid; expected ${parsed.expected}` });
      return empty;
    }
    if (parsed.target === undefined || !/\$\{?HOST\}?$/.test(parsed.target)) {
      errors.push({
        subject: "haproxy.ssh_command",
        message: `${JSON.stringify(ssh_command)} is not valid; expected the target USER@$HOST (the agent puts each proxy host in place of $HOST)`,
      });
      return empty;
    }
    return parsed.value;
  }
  if (ssh_user || ssh_params) {
    const parsed = parseSshArgs(splitWords(ssh_params), ctx.dir, ctx.home);
    if (!parsed.ok) {
      errors.push({ subject: "haproxy.ssh_params", message: `${JSON.stringify(ssh_params)} is not valid; expected ${parsed.expected}` });
      return empty;
    }
    return { ...parsed.value, user: ssh_user || parsed.value.user };
  }
  return empty;
}

/** Which config file a command uses: --config, else $AUTOSCALER_CONFIG, else the default. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string {
  const chosen = flag ?? env.AUTOSCALER_CONFIG ?? DEFAULT_CONFIG_PATH;
  return path.resolve(cwd, chosen);
}

/**
 * Read and parse the config file. Throws an AutoscalerError (exit 78) naming every problem;
 * warnings are returned for the caller to print. Warns when the file is readable by others.
 */
export async function loadConfig(file: string, options: { home?: string } = {}): Promise<{ config: Config; warnings: ConfigProblem[] }> {
  let text: string;
  let mode: number;
  try {
    text = await fs.readFile(file, "utf8");
    mode = (await fs.stat(file)).mode & 0o777;
  } catch (err) {
    if (errnoCode(err) === "ENOENT") {
      throw new AutoscalerError(
        "AUTOSCALER_CONFIG_NOT_FOUND",
        `config file ${file} not found; run "autoscaler init --config ${file}" to create it, or pass --config PATH (or set AUTOSCALER_CONFIG)`,
        { exitCode: EXIT_CONFIG },
      );
    }
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `cannot read config file ${file}: ${(err as Error).message}`, { exitCode: EXIT_CONFIG });
  }
  const result = parseConfig(text, file, options);
  if ((mode & 0o077) !== 0) {
    result.warnings.unshift({
      subject: file,
      message: `is readable by group or others (mode ${mode.toString(8).padStart(4, "0")}) and may hold credentials; fix: chmod 600 ${file}`,
    });
  }
  if (!result.config) {
    const lines = result.errors.map(formatProblem);
    // The warnings too: an unknown key's "did you mean" is often the cause of an error beside it.
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `config ${file} has ${lines.length} problem${lines.length === 1 ? "" : "s"}:`, {
      exitCode: EXIT_CONFIG,
      details: [...lines, ...result.warnings.map((w) => `warning: ${formatProblem(w)}`)],
    });
  }
  return { config: result.config, warnings: result.warnings };
}
