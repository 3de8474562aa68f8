/**
 * A whole installation in one folder, run as an ordinary user on loopback: what `init --local`
 * writes, and what the demo and the tests build on. One place for the rule, so the three never
 * drift apart.
 */
import net from "node:net";
import path from "node:path";

/**
 * Settings that keep every file and socket in the installation's folder (relative paths in the
 * ini are relative to its folder) and reload HAProxy with a signal rather than systemctl.
 * `servers` stays empty: this master is the only proxy, so it decides.
 */
export const LOCAL_SETTINGS: readonly string[] = [
  "haproxy.config=haproxy.cfg",
  "haproxy.master_socket=master.sock",
  "haproxy.runtime_socket=admin.sock",
  "haproxy.reload_command=kill -USR2 $(cat haproxy.pid)",
  "master.state_dir=state",
  // Backends on loopback (agents tried on this machine) are never accepted unless listed.
  "master.node_networks=127.0.0.0/8",
];

/**
 * The shipped template made to run unprivileged in `dir`: the frontend on 127.0.0.1:`port`, no
 * chroot, user or group switch, no syslog, and the admin socket and server-state file in `dir`.
 * Paths inside the template are absolute: HAProxy reads them against its own working folder,
 * not the ini's. Throws when the template lacks the lines this changes (an edited template).
 */
export function localTemplate(text: string, port: number, dir: string): string {
  const steps: [RegExp, string][] = [
    [/^(\s*)bind :80\s*$/m, `$1bind 127.0.0.1:${port}`],
    [/^\s*(chroot|user|group) .*\n/gm, ""],
    [/^\s*log \/dev\/log.*\n/m, ""],
    [/stats socket \/run\/haproxy\/admin\.sock/, `stats socket ${path.join(dir, "admin.sock")}`],
    [/server-state-file \/var\/lib\/autoscaler\/haproxy-server-state/, `server-state-file ${path.join(dir, "haproxy-server-state")}`],
  ];
  let out = text;
  for (const [pattern, replacement] of steps) {
    const next = out.replace(pattern, replacement);
    if (next === out) throw new Error(`the template has no line matching ${pattern}; a local installation needs the shipped template`);
    out = next;
  }
  return out;
}

/** The command that starts HAProxy on a local installation: master-worker, in the background, its master CLI and pid file in `dir`. */
export function localHaproxyCommand(dir: string): string {
  const q = (p: string) => (/^[A-Za-z0-9/._+@-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`);
  return `haproxy -W -D -S ${q(path.join(dir, "master.sock"))} -p ${q(path.join(dir, "haproxy.pid"))} -f ${q(path.join(dir, "haproxy.cfg"))}`;
}

/** Whether 127.0.0.1:`port` can be bound now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
