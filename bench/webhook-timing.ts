/**
 * Webhook lookup timing: does a wrong secret, or a near miss (the right secret with its last
 * character changed), take as long as the right one? If a near miss answered faster or slower
 * than a wrong secret, an attacker could find the secret a character at a time.
 *
 *   (a) the lookup alone, in process: `findWebhook` over 100 stored hooks (SHA-256 of the
 *       candidate, then `timingSafeEqual` against every stored hash), right (the first hook and
 *       the last), wrong and near-miss secrets interleaved, 20,000 calls each, in ns;
 *   (b) over HTTP on 127.0.0.1: the real webhook server (`startWebhookServer`) with the same
 *       hooks, POST /hooks/<secret> over a keep-alive connection, 3,000 calls each, interleaved;
 *       its rate limits run on a clock that moves an hour per call (so every call reaches the
 *       lookup) and a right secret runs a stub that answers at once (the state machine is not
 *       what is measured).
 *
 * The result is the medians and the ratio near-miss / wrong (1.00: no difference).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "@autoscaler/shared";
import { createEventLog } from "../packages/master/src/events.js";
import { createMetrics } from "../packages/master/src/metrics.js";
import type { MasterStatus } from "../packages/master/src/status.js";
import { findWebhook, hashSecret, newWebhookSecret, startWebhookServer } from "../packages/master/src/webhooks.js";
import { type BenchResult, loadNote, machineInfo, mdTable, ms, stats, textTable, type Stats } from "./lib.js";
import os from "node:os";

const HOOKS = 100;
const LOOKUPS = 20_000;
const CALLS = 3_000;
const WARMUP = 500;

type Kind = "right (first)" | "right (last)" | "wrong" | "near miss";
const KINDS: Kind[] = ["right (first)", "right (last)", "wrong", "near miss"];

function secretsFor(first: string, last: string): Record<Kind, () => string> {
  const nearMiss = last.slice(0, -1) + (last.endsWith("A") ? "B" : "A");
  return {
    "right (first)": () => first,
    "right (last)": () => last,
    // A fresh wrong secret each call, so no cache anywhere could help.
    wrong: () => newWebhookSecret(),
    "near miss": () => nearMiss,
  };
}

/** Medians of the in-process lookup, in nanoseconds. */
function lookups(hooks: ReturnType<typeof makeHooks>): Record<Kind, Stats> {
  const secrets = secretsFor(hooks.secrets[0]!, hooks.secrets.at(-1)!);
  const samples: Record<Kind, number[]> = { "right (first)": [], "right (last)": [], wrong: [], "near miss": [] };
  for (let i = 0; i < LOOKUPS + WARMUP; i++) {
    for (const kind of KINDS) {
      const secret = secrets[kind]();
      const t0 = process.hrtime.bigint();
      const found = findWebhook(hooks.records, secret);
      const t1 = process.hrtime.bigint();
      if ((found !== undefined) !== kind.startsWith("right")) throw new Error(`lookup of a ${kind} secret went wrong`);
      if (i >= WARMUP) samples[kind].push(Number(t1 - t0));
    }
  }
  return Object.fromEntries(KINDS.map((k) => [k, stats(samples[k])])) as Record<Kind, Stats>;
}

function makeHooks() {
  const secrets = Array.from({ length: HOOKS }, () => newWebhookSecret());
  const records = secrets.map((s, i) => ({ name: `hook-${i}`, policy: "p", sha256: hashSecret(s), createdAt: 0 }));
  return { secrets, records };
}

/** POST once on a keep-alive agent; resolves with the status and the time to the end of the answer (ms). */
function post(agent: http.Agent, port: number, path: string): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: { "content-length": "0" } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function overHttp(hooks: ReturnType<typeof makeHooks>): Promise<Record<Kind, Stats>> {
  let clock = 0;
  const server = await startWebhookServer("127.0.0.1", 0, {
    logger: createLogger({ write: () => true }, { level: "error" }),
    events: createEventLog(() => clock),
    metrics: createMetrics(() => ({ nodes: [] }) as unknown as MasterStatus),
    now: () => (clock += 3_600_000),
    leading: () => true,
    find: (secret) => {
      const h = findWebhook(hooks.records, secret);
      return h ? { found: true, name: h.name, policy: h.policy } : { found: false };
    },
    execute: async () => ({ outcome: "executed", result: "stub" }),
  });
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const secrets = secretsFor(hooks.secrets[0]!, hooks.secrets.at(-1)!);
  const samples: Record<Kind, number[]> = { "right (first)": [], "right (last)": [], wrong: [], "near miss": [] };
  try {
    for (let i = 0; i < CALLS + WARMUP / 5; i++) {
      for (const kind of KINDS) {
        const r = await post(agent, port, `/hooks/${secrets[kind]()}`);
        const expected = kind.startsWith("right") ? 202 : 404;
        if (r.status !== expected) throw new Error(`a ${kind} secret got ${r.status}, expected ${expected}`);
        if (i >= WARMUP / 5) samples[kind].push(r.ms);
      }
    }
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
  return Object.fromEntries(KINDS.map((k) => [k, stats(samples[k])])) as Record<Kind, Stats>;
}

/** Run the benchmark. */
export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  const loadAtStart = os.loadavg()[0]!;
  const info = await machineInfo();
  const hooks = makeHooks();
  log(`webhook-timing: ${LOOKUPS} in-process lookups of each kind over ${HOOKS} hooks`);
  const inProcess = lookups(hooks);
  log(`webhook-timing: ${CALLS} HTTP calls of each kind`);
  const http = await overHttp(hooks);
  const ns = (v: number) => `${Math.round(v).toLocaleString("en")} ns`;
  const ratio = (s: Record<Kind, Stats>) => s["near miss"].median / s.wrong.median;
  const head = ["secret", "lookup median (p95)", "HTTP median (p95), ms"];
  const rows = KINDS.map((k) => [k, `${ns(inProcess[k].median)} (${ns(inProcess[k].p95)})`, `${ms(http[k].median)} (${ms(http[k].p95)})`]);
  rows.push(["near miss / wrong", ratio(inProcess).toFixed(3), ratio(http).toFixed(3)]);
  const markdown = [
    `Measured ${info.date} with \`npx tsx bench/run.ts webhook-timing\`; ${loadNote(loadAtStart)}.`,
    "",
    `Does a wrong or near-miss webhook secret (the right one with its last character changed) take as long as the right one? The lookup hashes the candidate (SHA-256) and compares it with every stored hash with \`timingSafeEqual\`, none skipped. In process: \`findWebhook\` over ${HOOKS} stored hooks, ${LOOKUPS.toLocaleString("en")} calls of each kind, interleaved. Over HTTP: the real webhook server on 127.0.0.1, POST /hooks/<secret> on one keep-alive connection, ${CALLS.toLocaleString("en")} calls of each kind, interleaved (rate limits on a clock moved an hour per call, so every call reaches the lookup; a right secret runs a stub, not the state machine, and answers 202; the others 404).`,
    "",
    mdTable(head, rows),
    "",
    `A ratio near 1 means a near miss gives an attacker nothing over a wrong secret. A right secret takes the other path (it runs a policy and answers 202), which the URL's 256 random bits keep out of reach; the first and the last of ${HOOKS} hooks take the same time.`,
  ].join("\n");
  return { id: "webhook-timing", text: textTable(head, rows), markdown };
}
