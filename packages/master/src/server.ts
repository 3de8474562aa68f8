/**
 * The master's agent listener: loopback TCP (agents arrive through the proxy's sshd), NDJSON
 * validated line by line. Every refusal closes only that connection, with a logged reason and
 * a counted metric; the master carries on.
 *
 *   connected ──hello (version, credential, address, name: admission.ts)──► registered ──sample…──► registered
 *       │                                                  │
 *       └── bad line / refused hello / no hello in time ───────────────────┴──► closed (reason logged)
 */
import net from "node:net";
import { type Logger } from "@autoscaler/shared";
import { decodeAgentMessage } from "@autoscaler/shared/agent-messages";
import { PROTOCOL_VERSION, createLineSplitter, encodeMessage, type HelloMessage, type MasterMessage, type SampleMessage } from "@autoscaler/shared/protocol";
import type { Admission, AdmissionRefusal } from "./admission.js";
import type { Registry } from "./registry.js";

/** Why a connection was closed by the master; the label of the refusals metric. */
export type RefusalReason =
  | AdmissionRefusal
  | "bad_json"
  | "wrong_shape"
  | "line_too_long"
  | "no_hello"
  | "hello_timeout"
  | "hello_budget"
  | "version"
  | "name_taken"
  | "name_manual"
  | "too_many_connections"
  | "idle"
  | "internal";

/** What the listener needs from the rest of the master. */
export interface ServerDeps {
  registry: Registry;
  /** This master's role now (with etcd it changes with the leadership). */
  role: () => "decider" | "follower";
  version: string;
  logger: Logger;
  now: () => number;
  /** Whether a hello may register: credential, address, name and room (admission.ts). */
  judge: (hello: HelloMessage) => Admission;
  /** Called for a hello the registry accepted: write hosts.d and schedule an apply. May refuse by throwing. */
  onRegistered: (hello: HelloMessage, isNew: boolean, admission: Extract<Admission, { ok: true }>) => Promise<void>;
  /** The node credential `welcome` hands to a node that registered with a launch's join credential or the cluster secret. */
  credentialFor: (name: string) => string;
  onRefused: (reason: RefusalReason, detail: string) => void;
  /** A sample arrived; `kept` is false when the registry dropped it (a flood). */
  onSample: (kept: boolean, sample: SampleMessage) => void;
  /**
   * A registered node asked to leave on its own connection: `name` is the name its hello
   * registered there (never a name the message gives: it names none), with the credential kind
   * that hello presented.
   */
  onLeave?: (name: string, credential: Extract<Admission, { ok: true }>["kind"]) => void;
}

/** Lines read but not yet handled, per connection, before the socket is paused. */
const MAX_QUEUED_LINES = 256;
/** Lines handled before the loop yields to timers and other sockets. */
const LINES_PER_TURN = 256;

/** Listener limits. */
export interface ServerLimits {
  /** Connections that said a valid hello. */
  maxConnections: number;
  /** Connections that have not (yet): past this many, the oldest of them is closed for the newest. */
  helloBudget: number;
  helloTimeoutMs: number;
  idleTimeoutMs: number;
}

/** Start listening on host:port; resolves once listening. */
export async function startAgentServer(
  host: string,
  port: number,
  deps: ServerDeps,
  limits: ServerLimits,
): Promise<{ server: net.Server; close: () => Promise<void>; connections: () => number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => handle(socket));

  /** Connections without a valid hello yet, oldest first, each with its way to close. */
  const unintroduced = new Map<net.Socket, () => void>();

  function handle(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    if (sockets.size - unintroduced.size >= limits.maxConnections) {
      deps.onRefused("too_many_connections", peer);
      deps.logger.warn("connection refused: too many connections", { peer, limit: limits.maxConnections });
      socket.destroy();
      return;
    }
    // Silent or slow connections never crowd out agents: past the budget, the oldest goes.
    if (unintroduced.size >= limits.helloBudget) unintroduced.entries().next().value![1]();
    sockets.add(socket);
    socket.setNoDelay(true);
    const splitter = createLineSplitter();
    let node: string | undefined;
    let credential: Extract<Admission, { ok: true }>["kind"] | undefined;
    /** Closed: refused by us, or gone. Refused: no more lines are handled (lines read before the peer closed still are). */
    let closed = false;
    let refused = false;

    const send = (m: MasterMessage) => {
      if (!socket.destroyed) socket.write(encodeMessage(m));
    };
    const refuse = (reason: RefusalReason, message: string, fields: Record<string, unknown> = {}, tellAgent = false) => {
      if (closed) return;
      closed = true;
      refused = true;
      unintroduced.delete(socket);
      deps.onRefused(reason, message);
      deps.logger.warn(`agent connection closed: ${message}`, { reason, peer, ...(node ? { node } : {}), ...fields });
      if (tellAgent) send({ type: "error", code: reason.toUpperCase(), message });
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    unintroduced.set(socket, () => refuse("hello_budget", `more than ${limits.helloBudget} connections without a hello; the oldest is closed`));

    const helloTimer = setTimeout(() => refuse("hello_timeout", `no hello within ${limits.helloTimeoutMs} ms`), limits.helloTimeoutMs);
    helloTimer.unref();
    socket.setTimeout(limits.idleTimeoutMs, () => refuse("idle", `no data for ${limits.idleTimeoutMs} ms`));

    const handleLine = async (line: string): Promise<void> => {
      // A hello that arrives from a connection already gone registers nothing.
      if (refused || (node === undefined && socket.destroyed)) return;
      const decoded = decodeAgentMessage(line);
      if (!decoded.ok) {
        refuse(decoded.reason === "bad JSON" ? "bad_json" : "wrong_shape", decoded.reason);
        return;
      }
      const msg = decoded.message;
      if (node === undefined) {
        if (msg.type !== "hello") return refuse("no_hello", "the first message must be hello");
        clearTimeout(helloTimer);
        unintroduced.delete(socket);
        if (msg.version !== PROTOCOL_VERSION) {
          return refuse("version", `protocol version ${msg.version} is not supported; this master speaks ${PROTOCOL_VERSION}`, { name: msg.name }, true);
        }
        const admission = deps.judge(msg);
        if (!admission.ok) return refuse(admission.reason, admission.message, { name: msg.name }, true);
        const res = deps.registry.register(msg, deps.now(), admission.kind);
        if (!res.ok) {
          return refuse(res.reason === "NAME_TAKEN" ? "name_taken" : "name_manual", res.message, { name: msg.name, address: msg.address }, true);
        }
        node = msg.name;
        credential = admission.kind;
        try {
          await deps.onRegistered(msg, res.isNew, admission);
        } catch (err) {
          deps.registry.disconnect(msg.name);
          node = undefined;
          return refuse("internal", `registration failed: ${(err as Error).message}`, { name: msg.name }, true);
        }
        deps.logger.info("agent registered", { node: msg.name, address: msg.address, port: msg.port, peer, new: res.isNew, credential: admission.kind });
        send({
          type: "welcome",
          version: PROTOCOL_VERSION,
          role: deps.role(),
          master_version: deps.version,
          ...(admission.issueCredential ? { credential: deps.credentialFor(msg.name) } : {}),
        });
        return;
      }
      if (msg.type === "hello") return refuse("wrong_shape", "a second hello on one connection");
      if (msg.type === "leave") {
        deps.logger.info("node asks to leave", { node, peer, credential });
        deps.onLeave?.(node, credential!);
        return;
      }
      deps.onSample(deps.registry.recordSample(node, msg, deps.now()), msg);
    };

    // Lines wait here and are handled one at a time, in order. Past MAX_QUEUED_LINES the socket
    // is paused, so a flood waits in the kernel's buffers (TCP back-pressure), not in the
    // master's memory; every LINES_PER_TURN lines the loop yields, so decisions and other
    // connections go on meanwhile.
    const queue: string[] = [];
    let lineTooLong = false;
    let draining = false;
    const drain = async () => {
      draining = true;
      let handled = 0;
      while (queue.length > 0 && !refused) {
        await handleLine(queue.shift()!);
        if (++handled % LINES_PER_TURN === 0) await new Promise((r) => setImmediate(r));
      }
      if (lineTooLong) refuse("line_too_long", "a line over 64 KiB");
      queue.length = 0;
      draining = false;
      if (!closed && socket.isPaused()) socket.resume();
    };
    socket.on("data", (chunk: Buffer) => {
      if (closed || lineTooLong) return;
      const { lines, tooLong } = splitter.push(chunk);
      for (const line of lines) queue.push(line);
      lineTooLong = tooLong;
      if (queue.length > MAX_QUEUED_LINES) socket.pause();
      if (!draining) void drain();
    });
    socket.on("error", () => undefined); // a reset by the peer is an ordinary end
    socket.on("close", () => {
      clearTimeout(helloTimer);
      sockets.delete(socket);
      unintroduced.delete(socket);
      closed = true;
      if (node) {
        deps.registry.disconnect(node);
        deps.logger.info("agent disconnected", { node, peer });
      }
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // A backlog as deep as the connection limit: a reconnect storm waits in the queue instead of
    // being dropped and retried by the agents' TCP stacks.
    server.listen({ host, port, exclusive: true, backlog: limits.maxConnections }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    server,
    connections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
