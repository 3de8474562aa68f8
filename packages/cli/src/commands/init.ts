/** `autoscaler init`: write the ini (0600), hosts.d/ and the template. */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import {
  AutoscalerError,
  EXIT_CONFIG,
  createHostsStore,
  renderFromFiles,
  type Config,
  FAMILY_SCHEMA,
  SCHEMA,
  errnoCode,
  formatProblem,
  parseConfig,
  readIfExists,
  resolveConfigPath,
  setIniValue,
  suggest,
  writeFileAtomic,
} from "@autoscaler/shared";
import { findAsset, invokedAs } from "../assets.js";
import { LOCAL_SETTINGS, localHaproxyCommand, localTemplate, portFree } from "../local.js";
import type { GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

/** Arguments of `init`. */
export interface InitArgs extends GlobalArgs {
  force?: boolean;
  set?: string[];
  /** `--local DIR`: a whole installation in DIR that runs as it is on this machine (local.ts). */
  local?: string;
  /** With --local: HAProxy's frontend port on 127.0.0.1 (default 8080). */
  port?: number;
}

/** The folder, ini and frontend port of `init --local`; refuses what cannot work, before anything is written. */
async function localInstallation(io: Io, args: InitArgs): Promise<{ dir: string; file: string; port: number }> {
  if (args.config)
    throw new AutoscalerError("AUTOSCALER_USAGE", "--local DIR writes DIR/autoscaler.ini; expected --local or --config, not both", { exitCode: 2 });
  const port = args.port ?? 8080;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new AutoscalerError("AUTOSCALER_USAGE", `--port ${String(args.port)} is not valid; expected a port from 1 to 65535`, { exitCode: 2 });
  if (!(await portFree(port)))
    throw new AutoscalerError(
      "AUTOSCALER_USAGE",
      `127.0.0.1:${port} is in use, so HAProxy could not listen there; nothing was written. Pass --port N with a free port for HAProxy's frontend`,
      { exitCode: 2 },
    );
  const dir = path.resolve(io.cwd, args.local!);
  return { dir, file: path.join(dir, "autoscaler.ini"), port };
}

/** Parse `section.key=value`; refuses keys the schema does not know. */
export function parseSetting(text: string): { section: string; key: string; value: string } {
  const m = /^([a-z_]+(?::[A-Za-z0-9_-]{1,63})?)\.([a-z_0-9]+)=(.*)$/s.exec(text);
  if (!m)
    throw new AutoscalerError(
      "AUTOSCALER_USAGE",
      `--set ${JSON.stringify(text)} is not valid; expected section.key=value, such as haproxy.config=haproxy.cfg`,
      { exitCode: 2 },
    );
  const [, section, key, value] = m as unknown as [string, string, string, string];
  // A section family (`policy:NAME`, `schedule:NAME`) takes its family's keys.
  const family = /^(policy|schedule):/.exec(section)?.[1] as keyof typeof FAMILY_SCHEMA | undefined;
  const known = family ? FAMILY_SCHEMA[family] : (SCHEMA as Record<string, Record<string, unknown>>)[section];
  if (!known || !(key in known)) {
    const hint = known ? suggest(key, Object.keys(known)) : suggest(section, Object.keys(SCHEMA));
    throw new AutoscalerError("AUTOSCALER_USAGE", `--set ${section}.${key}: no such setting${hint}; expected one of the keys in the README's ini reference`, {
      exitCode: 2,
    });
  }
  if (/[\r\n]/.test(value))
    throw new AutoscalerError("AUTOSCALER_USAGE", `--set ${section}.${key}: the value has a line break; expected one line`, { exitCode: 2 });
  return { section, key, value };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return false;
    throw err;
  }
}

/**
 * Write the template unless one is there (without --force it is kept). With --force an edited
 * template is kept beside as `<template>.<time>.bak` before it is replaced; one that is already
 * what would be written is left alone. Returns the line that says which.
 */
async function writeTemplate(file: string, text: string, force: boolean, local: { port: number } | undefined): Promise<string> {
  const old = await readIfExists(file);
  if (old && !force) return `kept the existing template ${file} (pass --force to replace it; an edited one is then kept as a .bak)`;
  if (old?.toString("utf8") === text) return `kept the template ${file}: it is already the shipped one`;
  let backup = "";
  if (old) {
    const bak = `${file}.${new Date().toISOString().replace(/[:.]/g, "-")}.bak`;
    await writeFileAtomic(bak, old, { mode: 0o644 });
    backup = `; your version is kept as ${bak}`;
  }
  await fs.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, text, { mode: 0o644 });
  const where = local ? ` (frontend on 127.0.0.1:${local.port}, sockets in the folder)` : "";
  return `${old ? "replaced" : "wrote"} the HAProxy template ${file}${where}${backup}`;
}

/** Run `init`. Validates the whole new ini before writing anything. */
export async function runInit(io: Io, args: InitArgs): Promise<number> {
  const local = args.local !== undefined ? await localInstallation(io, args) : undefined;
  const file = local?.file ?? resolveConfigPath(args.config, io.env, io.cwd);
  if (!args.force && (await exists(file))) {
    throw new AutoscalerError("AUTOSCALER_EXISTS", `${file} already exists; it was left as it was. Pass --force to overwrite it (hosts.d is never touched).`);
  }
  let text = await fs.readFile(findAsset("autoscaler.ini"), "utf8");
  text = setIniValue(text, "master", "token", randomBytes(32).toString("base64url"));
  for (const s of [...(local ? LOCAL_SETTINGS : []), ...(args.set ?? [])]) {
    const { section, key, value } = parseSetting(s);
    text = setIniValue(text, section, key, value);
  }
  const parsed = parseConfig(text, file, { home: io.env.HOME });
  if (!parsed.config) {
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `the settings given would make a bad config; nothing was written:`, {
      exitCode: EXIT_CONFIG,
      details: parsed.errors.map(formatProblem),
    });
  }
  const config = parsed.config;
  const iniExisted = await exists(file);
  const hostsBefore = await fs.readdir(config.hostsDir).catch(() => undefined);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, text, { mode: 0o600, forceMode: true });
  await fs.mkdir(config.hostsDir, { recursive: true });
  const shipped = await fs.readFile(findAsset("haproxy.cfg.tmpl"), "utf8");
  const templateNote = await writeTemplate(
    config.haproxy.template,
    local ? localTemplate(shipped, local.port, local.dir) : shipped,
    Boolean(args.force),
    local,
  );
  const iniNote = `${iniExisted ? "replaced" : "wrote"} ${file} (mode 0600, with a new random [master] token)`;
  const entries = (hostsBefore ?? []).filter((f) => f.endsWith(".json")).length;
  const hostsNote =
    hostsBefore === undefined
      ? `created ${config.hostsDir}/`
      : `kept ${config.hostsDir}/ as it was (${entries} entr${entries === 1 ? "y" : "ies"}; init never touches it)`;
  if (local) return localDone(io, config, file, [iniNote, hostsNote, templateNote]);
  const flag = args.config ? ` --config ${file}` : "";
  const cli = invokedAs();
  io.stdout.write(
    [
      iniNote,
      hostsNote,
      templateNote,
      "",
      "Next steps:",
      `  1. Edit ${file}: [haproxy] servers, config and reload_command.`,
      `     [machine] scale_up_command is empty, so nothing is launched until you set it (an AWS`,
      `     example is in the file, commented out); then the master scales between min_nodes and max_nodes.`,
      `  2. Add the backends you already run:   ${cli} add-host 10.0.0.5 8080${flag}`,
      `  3. Render, check and reload HAProxy:  ${cli} generate --reload${flag}`,
      `  4. Check the whole config any time:   ${cli} check-config${flag}`,
      "",
    ].join("\n"),
  );
  return 0;
}

/** `init --local`: render haproxy.cfg once (no backend yet), then say how to start HAProxy and add a backend. */
async function localDone(io: Io, config: Config, file: string, notes: string[]): Promise<number> {
  await writeFileAtomic(config.haproxy.config, await renderFromFiles(config, createHostsStore(config.hostsDir)), { mode: 0o644 });
  const dir = path.dirname(file);
  const cli = invokedAs();
  const port = /^\s*bind 127\.0\.0\.1:(\d+)\s*$/m.exec(await fs.readFile(config.haproxy.template, "utf8"))?.[1] ?? "?";
  io.stdout.write(
    [
      ...notes,
      `wrote ${config.haproxy.config} (no backend yet); everything is in ${dir}`,
      "",
      "Next steps (any user; nothing outside the folder is touched):",
      `  1. Start HAProxy on it:   ${localHaproxyCommand(dir)}`,
      `  2. Add a backend:         ${cli} add-host 127.0.0.1 8081 --config ${file}`,
      `  3. Send a request:        curl http://127.0.0.1:${port}/`,
      `  4. Run the master:        ${cli} master --config ${file}`,
      `  Stop HAProxy with:        kill $(cat ${path.join(dir, "haproxy.pid")})`,
      "",
    ].join("\n"),
  );
  return 0;
}
