/**
 * A real OpenSSH sshd for tests: its own host key and sshd_config in a temp folder, listening
 * on a free loopback port, letting the dedicated user `autoscaler-test` (made by .ci/run) in
 * with the authorized_keys line that `autoscaler authorize-key` prints, and the README's
 * `Match User` block. Stopped by its pid.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { canConnect } from "./haproxy.js";
import { freePort, waitFor, type Scope } from "./process.js";

/** The user tests log in as. */
export const TEST_SSH_USER = "autoscaler-test";

/** A generated key pair: the private key file and the public key line. */
export interface KeyPair {
  privateFile: string;
  publicFile: string;
  publicLine: string;
}

/** Make an ed25519 key pair with the real ssh-keygen. */
export function makeKeyPair(dir: string, name: string): KeyPair {
  const privateFile = path.join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", privateFile]);
  const publicLine = execFileSync("cat", [`${privateFile}.pub`])
    .toString()
    .trim();
  return { privateFile, publicFile: `${privateFile}.pub`, publicLine };
}

/** A running sshd. `knownHostsLine` trusts its host key for its address and port. */
export interface Sshd {
  port: number;
  address: string;
  pid: () => number;
  hostKey: KeyPair;
  knownHostsLine: string;
  authorizedKeysFile: string;
  log: () => string;
  /** Start it again (after `kill`) on the same port with the same keys. */
  restart: () => Promise<void>;
  kill: (signal?: NodeJS.Signals) => void;
}

/** Check the machine is ready for sshd tests; throws with the fix when it is not. */
export function assertSshdPrerequisites(): void {
  const missing: string[] = [];
  if (!existsSync("/usr/sbin/sshd")) missing.push("/usr/sbin/sshd (apt-get install openssh-server)");
  if (!existsSync("/run/sshd")) missing.push("/run/sshd (mkdir -p /run/sshd)");
  try {
    execFileSync("id", [TEST_SSH_USER], { stdio: "ignore" });
  } catch {
    missing.push(`the user ${TEST_SSH_USER}`);
  }
  if (missing.length > 0) throw new Error(`sshd tests need ${missing.join(", ")}; bash .ci/run sets these up`);
}

/** Options: the master port nodes may open, extra sshd_config lines, the address, and a command to run sshd inside (ip netns exec …). */
export interface SshdOptions {
  masterPort: number;
  address?: string;
  port?: number;
  extraConfig?: string[];
  wrap?: string[];
}

/**
 * Start sshd with the README's settings for nodes. `authorizedKeysFile` starts empty: write the
 * line `autoscaler authorize-key` prints into it.
 */
export async function startSshd(scope: Scope, options: SshdOptions): Promise<Sshd> {
  assertSshdPrerequisites();
  const dir = await scope.tempDir("autoscaler-sshd-");
  // sshd reads authorized_keys as the logged-in user, so the folder must be readable by it.
  await fs.chmod(dir, 0o755);
  const address = options.address ?? "127.0.0.1";
  const port = options.port ?? (await freePort());
  const hostKey = makeKeyPair(dir, "ssh_host_ed25519_key");
  const authorizedKeysFile = path.join(dir, "authorized_keys");
  await fs.writeFile(authorizedKeysFile, "", { mode: 0o644 });
  const config = [
    `Port ${port}`,
    `ListenAddress ${address}`,
    `HostKey ${hostKey.privateFile}`,
    `PidFile ${path.join(dir, "sshd.pid")}`,
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "UsePAM no",
    "StrictModes no",
    "PermitRootLogin no",
    `AllowUsers ${TEST_SSH_USER}`,
    "MaxStartups 200:30:400",
    "LogLevel VERBOSE",
    ...(options.extraConfig ?? []),
    // The README's block for nodes.
    `Match User ${TEST_SSH_USER}`,
    `    AuthorizedKeysFile ${authorizedKeysFile}`,
    "    AllowTcpForwarding local",
    `    PermitOpen 127.0.0.1:${options.masterPort}`,
    "    ForceCommand /bin/false",
    "    PermitTTY no",
    "    X11Forwarding no",
    "    AllowAgentForwarding no",
    "",
  ].join("\n");
  const configFile = path.join(dir, "sshd_config");
  await fs.writeFile(configFile, config);
  execFileSync("/usr/sbin/sshd", ["-t", "-f", configFile]);

  let log = "";
  let child: ReturnType<typeof spawn> | undefined;
  const start = async () => {
    const argv = [...(options.wrap ?? []), "/usr/sbin/sshd", "-D", "-e", "-f", configFile];
    child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    scope.track(child);
    child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
    if (!options.wrap) await waitFor(`sshd on ${address}:${port}`, () => canConnectTo(address, port), 10_000);
    else await waitFor(`sshd on ${address}:${port}`, () => log.includes("Server listening"), 10_000);
  };
  await start();
  return {
    port,
    address,
    pid: () => child!.pid!,
    hostKey,
    knownHostsLine: `[${address}]:${port} ${hostKey.publicLine.split(" ").slice(0, 2).join(" ")}`,
    authorizedKeysFile,
    log: () => log,
    restart: start,
    kill: (signal = "SIGTERM") => {
      if (child?.pid) process.kill(child.pid, signal);
    },
  };
}

async function canConnectTo(host: string, port: number): Promise<boolean> {
  return host === "127.0.0.1" ? canConnect(port) : canConnect(port, host);
}
