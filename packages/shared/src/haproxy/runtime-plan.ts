/**
 * The runtime path's pure half: what HAProxy runs now (`show servers state`), what the file
 * says, and whether the difference is only servers added or removed, which HAProxy's runtime
 * API can apply without a reload. Anything else (a template edit, a changed server_line, a
 * server that moved) is "not expressible" and takes the reload path.
 */
import type { HostEntry } from "../hosts-store.js";
import { renderHaproxyConfig, renderServerLine } from "./render.js";

/** A host as rendering needs it. */
export type ServerHost = Pick<HostEntry, "name" | "address" | "port">;

/** One server of `show servers state <backend>` (format version 1). */
export interface ServerState {
  name: string;
  address: string;
  port: number;
  /** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
  opState: number;
  /** srv_admin_state, a bit field: 0x01 forced maintenance (the CLI's), 0x02/0x04 inherited/configured maintenance, 0x08 forced drain, 0x20 resolution maintenance. */
  adminState: number;
  /** srv_uweight: the weight set by the config or the CLI. */
  weight: number;
}

/** A server HAProxy sends no new request to. */
const MAINT = 0x01 | 0x02 | 0x04 | 0x20;
export const inMaintenance = (s: Pick<ServerState, "adminState">): boolean => (s.adminState & MAINT) !== 0;

/**
 * Parse the answer of `show servers state <backend>`. Throws with HAProxy's own words when the
 * answer is not the table (an unknown backend, a permission error, an empty answer).
 */
export function parseServersState(answer: string, backend: string): ServerState[] {
  const lines = answer.split("\n").map((l) => l.trim());
  if (lines[0] !== "1" || !lines[1]?.startsWith("# be_id be_name srv_id srv_name srv_addr")) {
    const said = answer.trim().split("\n")[0]?.slice(0, 200) || "(an empty answer)";
    throw new Error(`unexpected answer to "show servers state ${backend}": ${said}`);
  }
  const out: ServerState[] = [];
  for (const line of lines.slice(2)) {
    if (line === "") continue;
    const f = line.split(" ");
    if (f[1] !== backend) continue;
    out.push({ name: f[3]!, address: f[4]!, opState: Number(f[5]), adminState: Number(f[6]), weight: Number(f[7]), port: Number(f[18]) });
  }
  return out;
}

const SECTION = /^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|program|cache|ring|http-errors|mailers)(\s|$)/;

/** One section of a config text. */
export interface Section {
  keyword: string;
  name: string;
  /** The rest of the header after the name (`from NAME` for a backend using named defaults). */
  rest: string[];
  lines: string[][];
}

/** The sections of a config text, each line as its words (comments and blank lines dropped). */
export function configSections(text: string): Section[] {
  const out: Section[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/(^|[^\\])#.*$/, "$1").trim();
    if (line === "") continue;
    const words = line.split(/\s+/);
    if (SECTION.test(line)) out.push({ keyword: words[0]!, name: words[1] ?? "", rest: words.slice(2), lines: [] });
    else out.at(-1)?.lines.push(words);
  }
  return out;
}

/** What a backend of the template gives every server of ours, and the servers the template itself declares. */
export interface BackendShape {
  /** `default-server` options from the defaults section in effect and from the backend, in that order. */
  defaultServer: string[];
  /** Names of the backend's `server` lines: in a config rendered with no hosts, the ones the template writes itself. */
  staticNames: Set<string>;
}

/**
 * Read the backend's shape from the config rendered with no hosts. Undefined (with why) when the
 * runtime API could not give a server what the file gives it: no such backend, or one that
 * takes its defaults from a named `defaults` section.
 */
export function backendShape(skeleton: string, backend: string): BackendShape | { problem: string } {
  const all = configSections(skeleton);
  const index = all.findIndex((s) => (s.keyword === "backend" || s.keyword === "listen") && s.name === backend);
  if (index < 0) return { problem: `the config has no backend or listen section named "${backend}" ([haproxy] backend)` };
  const section = all[index]!;
  if (section.rest[0] === "from")
    return { problem: `backend ${backend} takes named defaults ("from ${section.rest[1] ?? ""}"), which the runtime API does not apply` };
  const defaults = all.slice(0, index).findLast((s) => s.keyword === "defaults");
  const defaultServer = [...(defaults?.lines ?? []), ...section.lines].filter((w) => w[0] === "default-server").flatMap((w) => w.slice(1));
  const staticNames = new Set(section.lines.filter((w) => w[0] === "server" && w[1]).map((w) => w[1]!));
  return { defaultServer, staticNames };
}

/** One server to add: its name and the `add server` command's arguments after `<backend>/<name>`. */
export interface RuntimeAdd {
  name: string;
  /** `<addr>:<port>` and every option, default-server's first, then server_line's (a later keyword wins, as in the file). */
  args: string[];
  /** True when the server has health checks (`enable health` applies). */
  check: boolean;
}

/** The change as runtime commands, or why it must take the reload path. */
export type RuntimePlan = { kind: "runtime"; add: RuntimeAdd[]; remove: string[]; pendingDeletes: string[] } | { kind: "reload"; why: string };

/** What the plan is made from. */
export interface RuntimePlanInputs {
  template: string;
  serverLine: string;
  backend: string;
  /** The hosts the new file has (drained or excluded ones already left out). */
  hosts: readonly ServerHost[];
  /** The live haproxy.cfg as HAProxy last loaded or was brought in step with; undefined if unknown. */
  live: string | undefined;
  /** The servers HAProxy runs now in that backend. */
  running: readonly ServerState[];
}

/**
 * Plan a change. It is runtime-expressible only when the live file is exactly what the current
 * template and server_line give for the servers HAProxy runs now (so the template, the
 * server_line and every other line are unchanged) and each difference is a whole server added
 * or removed. Servers in maintenance that the live file does not have are deletions still
 * waiting for their connections to end: they serve nothing and are left out of the comparison.
 */
export function planRuntimeChange(inputs: RuntimePlanInputs): RuntimePlan {
  const { template, serverLine, backend, hosts, live, running } = inputs;
  if (live === undefined) return { kind: "reload", why: "HAProxy's current config is not known (no live file, or it was not loaded by a reload)" };
  const shape = backendShape(renderHaproxyConfig(template, [], serverLine), backend);
  if ("problem" in shape) return { kind: "reload", why: shape.problem };
  const wanted = new Map(hosts.map((h) => [h.name, h]));
  const ours = running.filter((s) => !shape.staticNames.has(s.name));
  const inFile = backendShape(live, backend);
  const liveNames = "problem" in inFile ? new Set<string>() : inFile.staticNames;
  const pendingDeletes = ours.filter((s) => !liveNames.has(s.name) && inMaintenance(s)).map((s) => s.name);
  const serving = ours.filter((s) => !pendingDeletes.includes(s.name));
  if (renderHaproxyConfig(template, serving, serverLine) !== live) {
    return { kind: "reload", why: "the template, server_line or HAProxy's servers differ from the live haproxy.cfg" };
  }
  const have = new Map(serving.map((s) => [s.name, s]));
  const add: RuntimeAdd[] = [];
  for (const host of hosts) {
    const now = have.get(host.name);
    if (now && (now.address !== host.address || now.port !== host.port)) return { kind: "reload", why: `${host.name} moved to ${host.address}:${host.port}` };
    if (now) continue;
    if (pendingDeletes.includes(host.name)) return { kind: "reload", why: `${host.name} is back while its previous server is still being deleted` };
    const words = renderServerLine(serverLine, host).trim().split(/\s+/);
    if (words[0] !== "server" || words[1] !== host.name || words[2] !== `${host.address}:${host.port}`) {
      return { kind: "reload", why: 'server_line does not start with "server $NAME $IP:$PORT", which is what "add server" takes' };
    }
    const options = [...shape.defaultServer, ...words.slice(3)];
    // The runtime API splits commands at ";" and the config reader honours quotes and escapes: such a word is not passed on as it stands.
    const odd = options.find((w) => /[;"'\\]/.test(w));
    if (odd !== undefined)
      return { kind: "reload", why: `the option ${JSON.stringify(odd)} has a ; quote or backslash, which the runtime API would read differently` };
    add.push({ name: host.name, args: [words[2], ...options], check: options.includes("check") });
  }
  const remove = serving.filter((s) => !wanted.has(s.name)).map((s) => s.name);
  return { kind: "runtime", add, remove, pendingDeletes };
}
