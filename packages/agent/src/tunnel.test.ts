/**
 * openTunnel against SSH servers that misbehave in ways OpenSSH's sshd cannot be made to: one
 * that authenticates the node and then never answers its channel request, and one that refuses
 * it. Each attempt must end by itself, so the agent's loop goes on to its next attempt. The
 * server is ssh2's, speaking the real protocol over loopback; the happy path against OpenSSH's
 * sshd is covered by every integration test.
 */
import type { AddressInfo } from "node:net";
import ssh2 from "ssh2";
import { afterEach, expect, test } from "vitest";
import { ed25519KeyPair } from "./keygen.js";
import { parseKnownHosts } from "./known-hosts.js";
import { openTunnel, type TunnelTarget } from "./tunnel.js";

type TcpipAnswer = "never" | "reject";

const servers: ssh2.Server[] = [];
const connections: ssh2.Connection[] = [];
afterEach(async () => {
  for (const c of connections.splice(0)) c.end();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** An SSH server on 127.0.0.1 that lets any key in and answers a `direct-tcpip` request as told. */
async function startServer(answer: TcpipAnswer): Promise<{ port: number; hostLine: string; requests: () => number; closed: Promise<void> }> {
  const host = ed25519KeyPair();
  let requests = 0;
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const server = new ssh2.Server({ hostKeys: [host.private] }, (client) => {
    connections.push(client);
    client.on("authentication", (ctx) => (ctx.method === "publickey" ? ctx.accept() : ctx.reject(["publickey"])));
    client.on("error", () => undefined);
    client.on("close", onClosed);
    client.on("tcpip", (_accept, reject) => {
      requests++;
      if (answer === "reject") reject();
      // "never": neither accept nor reject, as a server stuck on its connect to the target would.
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return { port, hostLine: `[127.0.0.1]:${port} ${host.public.split(" ").slice(0, 2).join(" ")}`, requests: () => requests, closed };
}

function target(port: number, hostLine: string): TunnelTarget {
  return {
    host: "127.0.0.1",
    sshPort: port,
    username: "autoscaler",
    privateKey: Buffer.from(ed25519KeyPair().private),
    knownHosts: parseKnownHosts(hostLine + "\n"),
    knownHostsFile: "known_hosts",
    masterHost: "127.0.0.1",
    masterPort: 7300,
    keepaliveMs: 10_000,
    readyTimeoutMs: 1_000,
  };
}

test("a proxy that authenticates the node but never answers its channel request: the attempt fails after readyTimeoutMs, naming what did not happen", async () => {
  const server = await startServer("never");
  const started = Date.now();
  await expect(openTunnel(target(server.port, server.hostLine))).rejects.toThrow("the proxy did not open the tunnel to 127.0.0.1:7300 within 1000 ms");
  expect(server.requests()).toBe(1);
  expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
  await server.closed; // the node hung up: no half-open connection is left behind
});

test("a proxy that refuses the channel request: the attempt fails at once with the refusal", async () => {
  const server = await startServer("reject");
  await expect(openTunnel(target(server.port, server.hostLine))).rejects.toThrow(/the proxy refused the tunnel to 127\.0\.0\.1:7300/);
  expect(server.requests()).toBe(1);
  await server.closed;
});
