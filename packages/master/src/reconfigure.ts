/**
 * SIGHUP: what a new ini changes in a running master. Pure: compares the running config with
 * the new one key by key (every key of the schema, so a key added there is classified here)
 * and returns the config to run with: the new values, except for keys that only a restart can
 * change, which keep their running values.
 */
import { SCHEMA, type Config } from "@autoscaler/shared";

/** Keys a running master cannot change, each with why (for the warning the operator reads). */
export const RESTART_KEYS: Readonly<Record<string, string>> = {
  "master.listen": "the agent listener is bound once, at start",
  "master.metrics_listen": "the metrics server is bound once, at start",
  "master.webhook_listen": "the webhook server is bound once, at start",
  "master.state_dir": "state.json and the control socket are opened at start",
  "master.token": "the agent listener checks hellos against the token it started with",
  "master.role": "the role is decided at start",
  "haproxy.servers": "the role (with role = auto) is decided from it at start",
  ...Object.fromEntries(Object.keys(SCHEMA.cluster).map((k) => [`cluster.${k}`, "the master joins etcd (or not) once, at start"])),
  "haproxy.config": "HAProxy reads the file it was started with; move it, then restart HAProxy and the master",
};

/** Keys only the agent reads; the master has nothing to apply for them. */
export const AGENT_ONLY_KEYS: ReadonlySet<string> = new Set([
  "haproxy.ssh_command",
  "haproxy.ssh_user",
  "haproxy.ssh_params",
  "haproxy.known_hosts",
  ...Object.keys(SCHEMA.agent).map((k) => `agent.${k}`),
]);

/** What a reload does: the config to run with, and the changed keys sorted by what happens to them. */
export interface ReconfigurePlan {
  config: Config;
  /** Changed keys the master applies now. */
  applied: string[];
  /** Changed keys kept at their running value until a restart, with why. */
  needsRestart: { key: string; why: string }[];
  /** Changed keys the master does not use (agent settings). */
  ignored: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Compare the running config with a newly loaded one (same file) and plan the swap. */
export function planReconfigure(running: Config, next: Config): ReconfigurePlan {
  const applied: string[] = [];
  const needsRestart: { key: string; why: string }[] = [];
  const ignored: string[] = [];
  const sections: Record<string, Record<string, unknown>> = {};
  for (const [section, keys] of Object.entries(SCHEMA)) {
    const now = (running as unknown as Record<string, Record<string, unknown>>)[section]!;
    const then = (next as unknown as Record<string, Record<string, unknown>>)[section]!;
    const merged = { ...then };
    for (const key of Object.keys(keys)) {
      const name = `${section}.${key}`;
      if (same(now[key], then[key])) continue;
      if (RESTART_KEYS[name] !== undefined) {
        merged[key] = now[key];
        needsRestart.push({ key: name, why: RESTART_KEYS[name] });
      } else if (AGENT_ONLY_KEYS.has(name)) {
        ignored.push(name);
      } else {
        applied.push(name);
      }
    }
    sections[section] = merged;
  }
  // The section families: a changed [policy:NAME] or [schedule:NAME] applies at once (the scaler reads them at use).
  if (!same(running.policies, next.policies)) applied.push("policies");
  if (!same(running.schedules, next.schedules)) applied.push("schedules");
  const config: Config = {
    ...next,
    ...(sections as unknown as Pick<Config, keyof typeof SCHEMA>),
    // Where the installation lives never moves under a running master.
    file: running.file,
    dir: running.dir,
    hostsDir: running.hostsDir,
    etcdPrefix: running.etcdPrefix,
    // A value that was secret stays redacted, also after the ini dropped it.
    secrets: [...new Set([...running.secrets, ...next.secrets])],
  };
  return { config, applied, needsRestart, ignored };
}
