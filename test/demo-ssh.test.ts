/**
 * The demo's embedded SSH server (used where OpenSSH's sshd is not): checked with the real
 * OpenSSH client. It lets in only the node key, forwards only to the master's port, gives no
 * shell, and presents the host key its known_hosts line names.
 */
import net from "node:net";
import path from "node:path";
import { promises as fs } from "node:fs";
import { afterEach, expect, test } from "vitest";
import { makeKeyPair, startEmbedded, type SshEndpoint } from "../packages/cli/src/demo/ssh-endpoint.js";
import { freePort, runProcess, Scope } from "./helpers/process.js";

const scope = new Scope();
let endpoint: SshEndpoint | undefined;
afterEach(async () => {
  await endpoint?.stop();
  endpoint = undefined;
  await scope.cleanup();
});

/** A TCP echo server standing in for the master's port; answers "master:" + what it got. */
async function echoServer(): Promise<number> {
  const server = scope.trackServer(net.createServer((s) => s.on("data", (b) => s.end(`master:${b.toString()}`))));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return (server.address() as net.AddressInfo).port;
}

test("only the node key gets in, only to the master's port, with no shell; the host key matches its known_hosts line", async () => {
  const dir = await scope.tempDir("autoscaler-demo-ssh-");
  const masterPort = await echoServer();
  const otherPort = await echoServer();
  const node = makeKeyPair();
  const stranger = makeKeyPair();
  for (const [name, key] of [
    ["node_key", node],
    ["stranger_key", stranger],
  ] as const)
    await fs.writeFile(path.join(dir, name), key.privateKey, { mode: 0o600 });
  const port = await freePort();
  endpoint = await startEmbedded(port, masterPort, node.publicLine);
  await fs.writeFile(path.join(dir, "known_hosts"), endpoint.knownHostsLine + "\n");
  const ssh = (key: string, ...args: string[]) =>
    runProcess(
      "ssh",
      [
        "-F",
        "/dev/null",
        "-i",
        path.join(dir, key),
        "-p",
        String(port),
        "-o",
        `UserKnownHostsFile=${path.join(dir, "known_hosts")}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        ...args,
        "demo@127.0.0.1",
      ],
      { timeoutMs: 15_000, input: "hello" },
    );

  const through = await ssh("node_key", "-W", `127.0.0.1:${masterPort}`);
  expect(through.stdout, through.stderr).toBe("master:hello");

  const elsewhere = await ssh("node_key", "-W", `127.0.0.1:${otherPort}`);
  expect(elsewhere.stdout).not.toContain("master:");
  expect(elsewhere.code).not.toBe(0);

  const strangerTry = await ssh("stranger_key", "-W", `127.0.0.1:${masterPort}`);
  expect(strangerTry.code).not.toBe(0);
  expect(strangerTry.stderr).toMatch(/Permission denied/);

  const shell = await ssh("node_key", "-T", "id");
  expect(shell.code).not.toBe(0);
  expect(shell.stdout).not.toMatch(/uid=/);

  // Another host key under the same name is refused by the client: the line really pins this server's key.
  await fs.writeFile(path.join(dir, "known_hosts"), `[127.0.0.1]:${port} ${makeKeyPair().publicLine}\n`);
  const spoofed = await ssh("node_key", "-W", `127.0.0.1:${masterPort}`);
  expect(spoofed.code).not.toBe(0);
  expect(spoofed.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
});
