/**
 * The demo's SSH endpoint, the only way its agents reach the master, as on a real proxy:
 * OpenSSH's sshd when this machine has it (its own config, host key and authorized_keys in
 * the demo folder, letting in the current user with the line `autoscaler authorize-key`
 * prints and the README's Match block), else an embedded server (ssh2) that accepts the
 * node key and forwards only to the master's port. Both listen on 127.0.0.1 only.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ed25519KeyPair } from "@autoscaler/agent";
import ssh2 from "ssh2";

/** A running SSH endpoint. */
export interface SshEndpoint {
  kind: "sshd" | "embedded";
  port: number;
  /** The known_hosts line that trusts it. */
  knownHostsLine: string;
  /** The user agents log in as. */
  user: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** An ed25519 key pair in OpenSSH format. */
export function makeKeyPair(): { privateKey: string; publicLine: string } {
  const k = ed25519KeyPair();
  return { privateKey: k.private, publicLine: k.public.trim() };
}

/** Why the real sshd cannot be used here, or undefined when it can. */
export function sshdUnusable(): string | undefined {
  if (!existsSync("/usr/sbin/sshd")) return "/usr/sbin/sshd is not installed";
  if (process.getuid?.() === 0 && !existsSync("/run/sshd")) return "/run/sshd (sshd's privilege separation folder) is missing";
  return undefined;
}

/** Start OpenSSH's sshd on 127.0.0.1:port for the current user; `authorizedKeysLine` is authorize-key's output. */
export async function startSshd(dir: string, port: number, masterPort: number, authorizedKeysLine: string): Promise<SshEndpoint> {
  const user = os.userInfo().username;
  const sshDir = path.join(dir, "sshd");
  await fs.mkdir(sshDir, { recursive: true, mode: 0o700 });
  const host = makeKeyPair();
  const hostKeyFile = path.join(sshDir, "ssh_host_ed25519_key");
  await fs.writeFile(hostKeyFile, host.privateKey, { mode: 0o600 });
  const authorizedKeys = path.join(sshDir, "authorized_keys");
  await fs.writeFile(authorizedKeys, authorizedKeysLine.trim() + "\n", { mode: 0o600 });
  const config = [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKeyFile}`,
    `PidFile ${path.join(sshDir, "sshd.pid")}`,
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "UsePAM no",
    "StrictModes no",
    `PermitRootLogin ${user === "root" ? "prohibit-password" : "no"}`,
    `AllowUsers ${user}`,
    "MaxStartups 100:30:200",
    // The README's block for nodes.
    `Match User ${user}`,
    `    AuthorizedKeysFile ${authorizedKeys}`,
    "    AllowTcpForwarding local",
    `    PermitOpen 127.0.0.1:${masterPort}`,
    "    ForceCommand /bin/false",
    "    PermitTTY no",
    "    X11Forwarding no",
    "    AllowAgentForwarding no",
    "",
  ].join("\n");
  const configFile = path.join(sshDir, "sshd_config");
  await fs.writeFile(configFile, config);
  const test = spawnSync("/usr/sbin/sshd", ["-t", "-f", configFile], { encoding: "utf8" });
  if (test.status !== 0) throw new Error(`sshd refused the demo's config: ${test.stderr.trim()}`);
  const child: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", configFile], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let log = "";
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  await waitListening(port, () => (child.exitCode !== null ? `sshd exited: ${log.trim()}` : undefined));
  return {
    kind: "sshd",
    port,
    user,
    knownHostsLine: `[127.0.0.1]:${port} ${host.publicLine.split(" ").slice(0, 2).join(" ")}`,
    pid: child.pid,
    stop: () => stopChild(child),
  };
}

/** Start the embedded SSH server: public-key login with the node key, `direct-tcpip` to the master's port only. */
export async function startEmbedded(port: number, masterPort: number, nodePublicLine: string): Promise<SshEndpoint> {
  const host = makeKeyPair();
  const allowed = ssh2.utils.parseKey(nodePublicLine);
  if (allowed instanceof Error) throw allowed;
  const allowedKey = Array.isArray(allowed) ? allowed[0]! : allowed;
  const server = new ssh2.Server({ hostKeys: [host.privateKey] }, (client) => {
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey" || ctx.key.algo !== allowedKey.type || !ctx.key.data.equals(allowedKey.getPublicSSH())) return ctx.reject(["publickey"]);
      if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
      return allowedKey.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true ? ctx.accept() : ctx.reject(["publickey"]);
    });
    client.on("ready", () => {
      client.on("tcpip", (accept, reject, info) => {
        if (info.destIP !== "127.0.0.1" || info.destPort !== masterPort) return reject();
        const upstream = net.connect(masterPort, "127.0.0.1");
        upstream.once("connect", () => {
          const channel = accept();
          channel.pipe(upstream).pipe(channel);
          channel.on("error", () => upstream.destroy());
          upstream.on("close", () => channel.close());
        });
        upstream.once("error", () => reject());
      });
      client.on("session", (_accept, reject) => reject());
    });
    client.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    kind: "embedded",
    port,
    user: "autoscaler",
    knownHostsLine: `[127.0.0.1]:${port} ${host.publicLine.split(" ").slice(0, 2).join(" ")}`,
    pid: undefined,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function waitListening(port: number, failed: () => string | undefined, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM a child, SIGKILL after 3 s; resolves when it has exited. */
export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

export { waitListening };
