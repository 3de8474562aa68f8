/**
 * Every ini key, its default and how its value is read: the one place a key is spelled.
 * The typed config is derived from this table, so a key added here is a typed field everywhere.
 */
import path from "node:path";
import { parseCidr, type Cidr } from "../networks.js";
import { checkHost, checkName, checkPort, isLoopbackHost, normaliseHost, splitHostPort } from "../validate.js";

/** What a key's reader needs besides the raw text. */
export interface ParseContext {
  /** The config file's folder: relative paths are relative to it. */
  dir: string;
  home: string;
}

/** A value read, or the reason it was not: `expected` completes "expected …". */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; expected: string };

/** One key: default (as ini text), reader, and whether its value is a secret that no message may print. */
export interface KeySpec<T> {
  default: string;
  parse(raw: string, ctx: ParseContext): ParseResult<T>;
  secret?: boolean;
}

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });
const bad = <T>(expected: string): ParseResult<T> => ({ ok: false, expected });

const noNewline = (raw: string): boolean => !raw.includes("\n");

function text(def = "", options: { secret?: boolean } = {}): KeySpec<string> {
  return {
    default: def,
    secret: options.secret,
    parse: (raw) => (noNewline(raw) ? ok(raw) : bad("a single line (no continuation lines)")),
  };
}

/** A shell command run with /bin/sh -c; may be empty (off) unless `required`. */
function command(def: string, required = false): KeySpec<string> {
  return {
    default: def,
    parse: (raw) => {
      if (!noNewline(raw)) return bad("a single-line shell command");
      if (required && raw.trim() === "") return bad("a shell command (it may not be empty)");
      return ok(raw);
    },
  };
}

function expandPath(raw: string, ctx: ParseContext): string {
  const home = raw === "~" || raw.startsWith("~/") ? path.join(ctx.home, raw.slice(1)) : raw;
  return path.resolve(ctx.dir, home);
}

/** A file path; relative paths are resolved against the config file's folder. Empty means "off" when `optional`. */
function filePath(def: string, optional = false): KeySpec<string> {
  return {
    default: def,
    parse: (raw, ctx) => {
      if (!noNewline(raw) || raw.includes("\0")) return bad("a file path on one line");
      if (raw.trim() === "") return optional ? ok("") : bad("a file path (it may not be empty)");
      return ok(expandPath(raw.trim(), ctx));
    },
  };
}

const DURATION = /^(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** A duration in seconds: `30`, `1.5`, `500ms`, `10m`. `min` is inclusive unless `positive`. */
function seconds(def: number, options: { positive?: boolean } = { positive: true }): KeySpec<number> {
  const expected = options.positive
    ? "a duration greater than 0 (seconds, or with a unit: 500ms, 30s, 5m, 1h)"
    : "a duration of 0 or more (seconds, or with a unit: 500ms, 30s, 5m, 1h)";
  return {
    default: String(def),
    parse: (raw) => {
      const m = DURATION.exec(raw.trim());
      if (!m) return bad(expected);
      const value = Number(m[1]) * UNIT_SECONDS[m[2] ?? "s"]!;
      if (!Number.isFinite(value) || (options.positive && value <= 0)) return bad(expected);
      return ok(value);
    },
  };
}

/** An optional duration: empty means "use another key's value" (for the cooldown overrides). */
function optionalSeconds(): KeySpec<number | undefined> {
  const inner = seconds(0, { positive: false });
  return { default: "", parse: (raw, ctx) => (raw.trim() === "" ? ok(undefined) : inner.parse(raw, ctx)) };
}

function integer(def: number, min: number, max = Number.MAX_SAFE_INTEGER): KeySpec<number> {
  const expected = max === Number.MAX_SAFE_INTEGER ? `a whole number of at least ${min}` : `a whole number from ${min} to ${max}`;
  return {
    default: String(def),
    parse: (raw) => {
      if (!/^-?\d+$/.test(raw.trim())) return bad(expected);
      const n = Number(raw.trim());
      return n >= min && n <= max ? ok(n) : bad(expected);
    },
  };
}

/** A fraction from 0 to 1 (`0.1`), or a percentage (`10%`). */
function fraction(def: number): KeySpec<number> {
  const expected = "a fraction from 0 to 1 (such as 0.1) or a percentage (such as 10%)";
  return {
    default: String(def),
    parse: (raw) => {
      const t = raw.trim();
      const m = /^(\d+(?:\.\d+)?|\.\d+)(%?)$/.exec(t);
      if (!m) return bad(expected);
      const n = Number(m[1]) / (m[2] ? 100 : 1);
      return n >= 0 && n <= 1 ? ok(n) : bad(expected);
    },
  };
}

function percent(def: number): KeySpec<number> {
  const expected = "a CPU percentage greater than 0 and at most 100";
  return {
    default: String(def),
    parse: (raw) => {
      const t = raw.trim().replace(/%$/, "");
      if (!/^\d+(\.\d+)?$/.test(t)) return bad(expected);
      const n = Number(t);
      return n > 0 && n <= 100 ? ok(n) : bad(expected);
    },
  };
}

function oneOf<const T extends string>(values: readonly T[], def: T): KeySpec<T> {
  return {
    default: def,
    parse: (raw) => {
      const v = raw.trim().toLowerCase();
      return (values as readonly string[]).includes(v) ? ok(v as T) : bad(`one of ${values.join(", ")}`);
    },
  };
}

/** A comma list of networks in CIDR form (`10.0.0.0/8, 2001:db8::/32`); empty: the default rule. */
function cidrs(): KeySpec<Cidr[]> {
  const expected =
    "a comma-separated list of networks such as 10.0.0.0/8, 192.168.0.0/16 or 2001:db8::/32 (empty: any unicast address but loopback and link-local)";
  return {
    default: "",
    parse: (raw) => {
      const out: Cidr[] = [];
      for (const item of raw
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "")) {
        const cidr = parseCidr(item);
        if (!cidr) return bad(`${expected}; ${JSON.stringify(item)} is not one`);
        out.push(cidr);
      }
      return ok(out);
    },
  };
}

/** A comma list of ports; empty: any. */
function ports(): KeySpec<number[]> {
  const expected = "a comma-separated list of ports from 1 to 65535 (empty: any port)";
  return {
    default: "",
    parse: (raw) => {
      const items = raw
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "");
      if (items.some((p) => checkPort(p) !== undefined)) return bad(expected);
      return ok(items.map(Number));
    },
  };
}

function name(def: string, optional = false): KeySpec<string> {
  return {
    default: def,
    parse: (raw) => {
      const v = raw.trim();
      if (v === "" && optional) return ok("");
      return checkName(v) === undefined ? ok(v) : bad("1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
    },
  };
}

/** A TCP address `host:port`; with `loopback`, only 127.0.0.0/8, ::1 or localhost. Empty is "off" when `optional`. */
export interface ListenAddress {
  host: string;
  port: number;
}
function listen(def: string, optional = false): KeySpec<ListenAddress | undefined> {
  const expected = "a loopback address and port such as 127.0.0.1:7300 (the master never listens beyond this machine)";
  return {
    default: def,
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return optional ? ok(undefined) : bad(expected);
      const { host, port } = splitHostPort(v);
      if (port === undefined || checkPort(port) !== undefined || checkHost(host) !== undefined) return bad(expected);
      if (!isLoopbackHost(host)) return bad(expected);
      return ok({ host: normaliseHost(host), port: Number(port) });
    },
  };
}

/**
 * A TCP address `host:port` that may be any address (the webhook listener: a monitoring system
 * must reach it); empty is "off".
 */
function anyListen(): KeySpec<ListenAddress | undefined> {
  const expected = "an address and port such as 127.0.0.1:7310 or 0.0.0.0:7310 (empty: off)";
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok(undefined);
      const { host, port } = splitHostPort(v);
      if (port === undefined || checkPort(port) !== undefined || checkHost(host) !== undefined) return bad(expected);
      return ok({ host: normaliseHost(host), port: Number(port) });
    },
  };
}

/** A proxy box agents connect to: host, and the sshd port when given as host:port. */
export interface ProxyServer {
  host: string;
  sshPort: number | undefined;
}
function servers(): KeySpec<ProxyServer[]> {
  const expected = "a comma-separated list of proxy hosts, each host or host:sshport (IPv6 as [addr]:port)";
  return {
    default: "",
    parse: (raw) => {
      const items = raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
      const out: ProxyServer[] = [];
      for (const item of items) {
        const { host, port } = splitHostPort(item);
        if (checkHost(host) !== undefined) return bad(`${expected}; ${JSON.stringify(item)} is not a valid host`);
        if (port !== undefined && checkPort(port) !== undefined) return bad(`${expected}; ${JSON.stringify(item)} has a bad port`);
        out.push({ host: normaliseHost(host), sshPort: port === undefined ? undefined : Number(port) });
      }
      return ok(out);
    },
  };
}

function optionalHost(): KeySpec<string> {
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok("");
      return checkHost(v) === undefined ? ok(normaliseHost(v)) : bad("an IPv4 address, an IPv6 address or a DNS name");
    },
  };
}

function port(def: number): KeySpec<number> {
  return {
    default: String(def),
    parse: (raw) => (checkPort(raw) === undefined ? ok(Number(raw.trim())) : bad("a port from 1 to 65535")),
  };
}

function url(): KeySpec<string> {
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok("");
      try {
        const u = new URL(v);
        if (u.protocol === "http:" || u.protocol === "https:") return ok(v);
      } catch {
        // fall through
      }
      return bad("an http:// or https:// URL, or empty (off)");
    },
  };
}

/** etcd's client endpoints: a comma list of http:// or https:// URLs with a port; empty: no etcd. */
function etcdEndpoints(): KeySpec<string[]> {
  const expected = "a comma-separated list of etcd client URLs such as http://10.0.0.10:2379, https://10.0.0.11:2379 (empty: no etcd)";
  return {
    default: "",
    parse: (raw) => {
      const out: string[] = [];
      for (const item of raw
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "")) {
        let u: URL;
        try {
          u = new URL(item);
        } catch {
          return bad(`${expected}; ${JSON.stringify(item)} is not a URL`);
        }
        const plain = u.pathname === "/" && u.search === "" && u.hash === "" && u.username === "" && u.password === "";
        if ((u.protocol !== "http:" && u.protocol !== "https:") || u.port === "" || !plain || checkHost(u.hostname.replace(/^\[|\]$/g, "")) !== undefined) {
          return bad(`${expected}; ${JSON.stringify(item)} is not one (scheme, host and port only)`);
        }
        out.push(`${u.protocol}//${u.host}`);
      }
      return ok(out);
    },
  };
}

/** A key prefix in etcd: starts and ends with '/', printable, no spaces; empty: /autoscaler/<cluster name>/. */
function etcdPrefix(): KeySpec<string> {
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok("");
      return /^\/[A-Za-z0-9._/-]*\/$/.test(v) && !v.includes("//") && v.length <= 200
        ? ok(v)
        : bad("a key prefix that starts and ends with '/', such as /autoscaler/web/ (letters, digits, '.', '_', '-' and '/')");
    },
  };
}

/** A number of resource units of at least 0 (`resources` mode): `8`, `2.5`. */
function units(def: string): KeySpec<number> {
  const expected = "a number of resource units, 0 or more";
  return {
    default: def,
    parse: (raw) => {
      const v = raw.trim();
      return /^(\d{1,9}(\.\d+)?|\.\d+)$/.test(v) ? ok(Number(v)) : bad(expected);
    },
  };
}

/** A number of resource units greater than 0, or empty (not set). */
function optionalUnits(): KeySpec<number | undefined> {
  const expected = "a number of resource units greater than 0, or empty (then the nodes' highest report)";
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok(undefined);
      return /^(\d{1,9}(\.\d+)?|\.\d+)$/.test(v) && Number(v) > 0 ? ok(Number(v)) : bad(expected);
    },
  };
}

/** A key of the JSON a node's app answers (`leave`, `slots.free`): dot-separated names of letters, digits, '_' and '-'. */
function jsonKey(def: string): KeySpec<string> {
  return {
    default: def,
    parse: (raw) => {
      const v = raw.trim();
      return /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/.test(v) ? ok(v) : bad("a JSON key such as leave or slots.free (dot-separated names)");
    },
  };
}

/** Where the agent reads CPU time from. */
export type CpuSource = { kind: "system" } | { kind: "cgroup"; path: string } | { kind: "pid"; pidFile: string };
function cpuSource(): KeySpec<CpuSource> {
  const expected = "system, cgroup:PATH (a cgroup folder) or pid:PIDFILE";
  return {
    default: "system",
    parse: (raw, ctx) => {
      const v = raw.trim();
      if (v === "system") return ok({ kind: "system" });
      const m = /^(cgroup|pid):(.+)$/.exec(v);
      if (!m || m[2]!.includes("\n")) return bad(expected);
      const p = expandPath(m[2]!.trim(), ctx);
      return ok(m[1] === "cgroup" ? { kind: "cgroup", path: p } : { kind: "pid", pidFile: p });
    },
  };
}

/** The settings table. Section and key names are exactly those of the ini. */
export const SCHEMA = {
  aws: {
    aws_access_key: text("", { secret: true }),
    aws_secret_key: text("", { secret: true }),
    /** The third part of temporary credentials (AWS STS): exported as AWS_SESSION_TOKEN. */
    session_token: text("", { secret: true }),
    region: text(""),
    /** The original tool's name for `region`. */
    aws_default_region: text(""),
  },
  machine: {
    scale_up_command: command(""),
    scale_down_command: command(""),
    launch_timeout: seconds(600),
    command_timeout: seconds(120),
  },
  haproxy: {
    servers: servers(),
    ssh_command: text(""),
    /** The original tool's second form: `ssh_user` plus `ssh_params` instead of `ssh_command`. */
    ssh_user: text(""),
    ssh_params: text(""),
    known_hosts: filePath("known_hosts"),
    server_line: text("server $NAME $IP:$PORT check"),
    backend: name("autoscaler"),
    template: filePath("haproxy.cfg.tmpl"),
    config: filePath("/etc/haproxy/haproxy.cfg"),
    check_command: command("haproxy -c -f $CONFIG", true),
    reload_command: command("systemctl reload haproxy", true),
    runtime_socket: filePath("", true),
    master_socket: filePath("/run/haproxy-master.sock", true),
    reload_timeout: seconds(10),
  },
  master: {
    listen: listen("127.0.0.1:7300"),
    token: text("", { secret: true }),
    role: oneOf(["auto", "decider", "follower"], "auto"),
    metrics_listen: listen("127.0.0.1:9717", true),
    /** Webhooks of named policies (`POST /hooks/<secret>`); empty: off. It may be any address: put TLS in front (HAProxy). */
    webhook_listen: anyListen(),
    /** Networks agents may register addresses in; empty: any unicast but loopback, link-local, unspecified, multicast, broadcast. */
    node_networks: cidrs(),
    /** Ports agents may register; empty: any. */
    node_ports: ports(),
    /** allow: an agent may present the cluster secret itself (the weaker mode of the seed's ini); refuse: only node and launch credentials. */
    shared_token: oneOf(["allow", "refuse"], "allow"),
    state_dir: filePath("/var/lib/autoscaler"),
    interval: seconds(1),
  },
  scaling: {
    /** target: track target_cpu per node (the default); instance and average: the seed's threshold rules; resources: keep min_available units free. */
    mode: oneOf(["target", "instance", "average", "resources"], "target"),
    target_cpu: percent(60),
    /** Target mode: a deviation from target_cpu within this fraction does nothing (as HPA's 0.1). */
    tolerance: fraction(0.1),
    /** Target mode: scale down only to the highest recommendation of this long (HPA's stabilisation window). */
    scale_down_window: seconds(300),
    /** Target mode: scale up only to the lowest recommendation of this long, so a shorter spike is not answered (0: at once). */
    scale_up_window: seconds(0, { positive: false }),
    /** Target mode: at most this many nodes removed by one scale-down decision. */
    scale_down_limit: integer(2, 1),
    /** Target mode: a floor from the demand of the same minutes 1 and 7 days earlier. */
    predictive: oneOf(["off", "on"], "off"),
    /** How long a new node takes from the launch decision to serving: the predictive floor looks this far ahead. */
    boot_time: seconds(120),
    scale_up_threshold: percent(75),
    scale_down_threshold: percent(25),
    window: seconds(60),
    /** Empty: 300 s in the threshold modes; in target mode 30 s up (the step is sized by the deficit) and 0 s down (scale_down_window stabilises). */
    cooldown: optionalSeconds(),
    scale_up_cooldown: optionalSeconds(),
    scale_down_cooldown: optionalSeconds(),
    min_nodes: integer(1, 0),
    max_nodes: integer(10, 1),
    step: integer(1, 1),
    scale_down_order: oneOf(["oldest", "newest"], "oldest"),
    drain_seconds: seconds(30, { positive: false }),
    node_timeout: seconds(30),
    forget_after: seconds(600),
    /** Resources mode: the resource units (the nodes' [agent] capacity_url reports) that must stay free across live nodes. */
    min_available: units("0"),
    /** Resources mode: the units one node brings; empty: the highest any node has reported. */
    node_capacity: optionalUnits(),
  },
  cluster: {
    /** The cluster's name: the default etcd prefix is /autoscaler/<name>/. */
    name: name("default"),
    /** etcd's endpoints; empty: no etcd (the first of [haproxy] servers decides). */
    etcd: etcdEndpoints(),
    prefix: etcdPrefix(),
    /** The name this master campaigns under; empty: the entry of [haproxy] servers that is this machine, else its host name. */
    member: name("", true),
    /** The leader's lease: a follower takes over within this long after the leader is gone. */
    lease_ttl: integer(10, 1, 600),
    /** TLS to etcd: the CA that signed its certificates, and this master's client certificate and key (all optional). */
    ca: filePath("", true),
    cert: filePath("", true),
    key: filePath("", true),
    /** etcd's password auth (both or neither). */
    user: text(""),
    password: text("", { secret: true }),
  },
  agent: {
    name: name("", true),
    address: optionalHost(),
    port: port(80),
    instance_id: text(""),
    /** This node's credential (autoscaler node-credential, or a launch's AUTOSCALER_JOIN_CREDENTIAL); empty: [master] token, the weaker mode. */
    credential: text("", { secret: true }),
    /** Where the agent keeps the credential a master hands it in welcome (0600); empty: <[master] state_dir>/node-credential. */
    credential_file: filePath("", true),
    interval: seconds(5),
    health_url: url(),
    cpu_source: cpuSource(),
    /** The node's app says whether it wants to leave: the agent polls this JSON each interval and leaves when leave_key is true. */
    leave_url: url(),
    leave_key: jsonKey("leave"),
    /** The node's app reports its free resource units: a number at capacity_key, sent with each sample (resources mode). */
    capacity_url: url(),
    capacity_key: jsonKey("available"),
  },
} as const satisfies Record<string, Record<string, KeySpec<unknown>>>;

/** A signed whole number of nodes, not 0: `+2`, `-1`. */
function signedCount(): KeySpec<number | undefined> {
  const expected = "a signed whole number of nodes such as +2 or -1 (not 0, at most 1000 either way)";
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok(undefined);
      if (!/^[+-]?\d{1,4}$/.test(v)) return bad(expected);
      const n = Number(v);
      return n !== 0 && Math.abs(n) <= 1000 ? ok(n) : bad(expected);
    },
  };
}

/** A signed percentage, not 0: `+50`, `-10%`, `+12.5`. */
function signedPercent(): KeySpec<number | undefined> {
  const expected = "a signed percentage such as +50 or -10% (not 0, at most 1000 either way)";
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim().replace(/%$/, "");
      if (v === "") return ok(undefined);
      if (!/^[+-]?(\d{1,4}(\.\d+)?|\.\d+)$/.test(v)) return bad(expected);
      const n = Number(v);
      return n !== 0 && Math.abs(n) <= 1000 ? ok(n) : bad(expected);
    },
  };
}

/** An optional whole number (empty: not set). */
function optionalInteger(min: number, max: number): KeySpec<number | undefined> {
  const inner = integer(min, min, max);
  return { default: "", parse: (raw, ctx) => (raw.trim() === "" ? ok(undefined) : inner.parse(raw, ctx)) };
}

/** An IANA time zone such as Europe/Amsterdam (checked against the runtime's zone data); empty: UTC. */
function timeZone(): KeySpec<string> {
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return ok("");
      try {
        new Intl.DateTimeFormat("en", { timeZone: v });
        return /^[A-Za-z0-9_+\-/]{1,64}$/.test(v) ? ok(v) : bad("an IANA time zone such as Europe/Amsterdam or America/New_York (empty: UTC)");
      } catch {
        return bad("an IANA time zone such as Europe/Amsterdam or America/New_York (empty: UTC)");
      }
    },
  };
}

/** A 5-field cron expression on one line; its fields are checked by the cron parser (config/cron.ts). */
function cronText(): KeySpec<string> {
  return {
    default: "",
    parse: (raw) => {
      const v = raw.trim().replace(/\s+/g, " ");
      if (v === "") return bad('a 5-field cron expression such as "0 8 * * 1-5" (minute hour day-of-month month day-of-week)');
      return noNewline(raw) ? ok(v) : bad("a cron expression on one line");
    },
  };
}

/**
 * The keys of the section families `[policy:NAME]` and `[schedule:NAME]`: one section per named
 * policy or schedule. Which keys go together is checked in config/families.ts.
 */
export const FAMILY_SCHEMA = {
  policy: {
    /** Add or remove this many nodes. */
    change: signedCount(),
    /** Add or remove this percent of the current count, rounded away from zero, at least 1 node. */
    change_percent: signedPercent(),
    /** Set the count to this. */
    desired: optionalInteger(0, 1000),
    /** The policy's own cooldown, checked together with the group's scale_up_cooldown / scale_down_cooldown. */
    cooldown: seconds(0, { positive: false }),
  },
  schedule: {
    cron: cronText(),
    /** The zone the cron expression is read in; empty: UTC. */
    timezone: timeZone(),
    /** A named policy to execute, or (instead) new limits and a desired count, as AWS scheduled actions. */
    policy: name("", true),
    min_nodes: optionalInteger(0, 1000),
    max_nodes: optionalInteger(1, 1000),
    desired: optionalInteger(0, 1000),
    /** A run missed while the master was down is run late only within this long. */
    grace: seconds(300, { positive: false }),
  },
} as const satisfies Record<string, Record<string, KeySpec<unknown>>>;

/** The section names of the ini. */
export type SectionName = keyof typeof SCHEMA;

type ValueOf<S> = S extends KeySpec<infer T> ? T : never;

/** The typed values of every key, as read (after defaults, before cross-field rules). */
export type Settings = { [S in SectionName]: { [K in keyof (typeof SCHEMA)[S]]: ValueOf<(typeof SCHEMA)[S][K]> } };
