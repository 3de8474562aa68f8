/**
 * One SSH connection to a proxy's sshd and one `direct-tcpip` channel through it to the
 * master's loopback port (what `ssh -W 127.0.0.1:7300` does). The agent's only ssh2 import.
 * The host key is checked against known_hosts before anything else happens.
 */
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type { Client as Ssh2Client } from "ssh2";
import { hostKeyAlgorithms, verifyHostKey, type HostKeyVerdict, type KnownHostLine } from "./known-hosts.js";

// ssh2's client module alone: its index also loads the server, the HTTP agents and the key
// generator, about 0.7 MiB of RSS the agent would keep (BENCHMARKS.md "Agent footprint").
const Client = createRequire(import.meta.url)("ssh2/lib/client.js") as typeof Ssh2Client;

/** Where and how to connect. */
export interface TunnelTarget {
  host: string;
  sshPort: number;
  username: string;
  privateKey: Buffer;
  knownHosts: KnownHostLine[];
  knownHostsFile: string;
  masterHost: string;
  masterPort: number;
  keepaliveMs: number;
  readyTimeoutMs: number;
}

/** An open tunnel: the channel stream, a way to close it, and a promise that settles when it closes. */
export interface Tunnel {
  stream: Duplex;
  close(): void;
  closed: Promise<void>;
}

/** A refusal of the proxy's host key; its message carries the fingerprint and the fix. */
export class HostKeyError extends Error {
  constructor(readonly verdict: Extract<HostKeyVerdict, { ok: false }>) {
    super(verdict.message);
    this.name = "HostKeyError";
  }
}

/** Connect, verify the host key, authenticate with the key, and open the channel to the master. */
export function openTunnel(t: TunnelTarget): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let refusal: Extract<HostKeyVerdict, { ok: false }> | undefined;
    let settled = false;
    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => (resolveClosed = r));
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(refusal ? new HostKeyError(refusal) : err);
    };
    client.on("ready", () => {
      // ssh2 has no timeout of its own for a channel the server never answers: one that does not
      // open within readyTimeoutMs ends this attempt, as a handshake that never completes does.
      const opening = setTimeout(() => {
        fail(new Error(`the proxy did not open the tunnel to ${t.masterHost}:${t.masterPort} within ${t.readyTimeoutMs} ms`));
        client.destroy();
      }, t.readyTimeoutMs);
      client.forwardOut("127.0.0.1", 0, t.masterHost, t.masterPort, (err, stream) => {
        clearTimeout(opening);
        if (err) return fail(new Error(`the proxy refused the tunnel to ${t.masterHost}:${t.masterPort}: ${err.message}`));
        if (settled) return stream.destroy();
        settled = true;
        stream.on("close", () => client.end());
        // A write to a channel that is closing emits "error"; the "close" that follows ends the tunnel.
        stream.on("error", () => client.end());
        resolve({ stream, close: () => client.end(), closed });
      });
    });
    client.on("error", (err) => fail(err));
    client.on("close", () => {
      resolveClosed();
      fail(new Error("the SSH connection closed"));
    });
    client.connect({
      host: t.host,
      port: t.sshPort,
      username: t.username,
      privateKey: t.privateKey,
      algorithms: { serverHostKey: hostKeyAlgorithms(t.knownHosts, t.host, t.sshPort) as never },
      hostVerifier: (key: Buffer) => {
        const v = verifyHostKey(t.knownHosts, t.knownHostsFile, t.host, t.sshPort, key);
        if (!v.ok) refusal = v;
        return v.ok;
      },
      keepaliveInterval: t.keepaliveMs,
      keepaliveCountMax: 3,
      readyTimeout: t.readyTimeoutMs,
    });
  });
}
