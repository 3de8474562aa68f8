/**
 * Runs the benchmarks and (re)writes BENCHMARKS.md at the repo root.
 *
 *   npm run bench                      # all of them (builds first)
 *   npx tsx bench/run.ts render        # one (or several) by name; only their sections are rewritten
 *
 * Each section of BENCHMARKS.md sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`,
 * so a partial run replaces its own sections and keeps the others.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { cleanupAll, installSignalCleanup, machineInfo, REPO_ROOT, type BenchResult } from "./lib.js";

type Bench = { run: (log?: (s: string) => void) => Promise<BenchResult> };

const BENCHES: Record<string, { title: string; load: () => Promise<Bench> }> = {
  render: { title: "Render and compare vs haproxy -c", load: () => import("./render.js") },
  reload: { title: "generate --reload vs HAProxy's own check + reload", load: () => import("./reload.js") },
  "reload-under-load": { title: "Reloads under keep-alive load", load: () => import("./reload-under-load.js") },
  "agent-footprint": { title: "Agent footprint", load: () => import("./agent-footprint.js") },
  registration: { title: "Registration: hello to first request", load: () => import("./registration.js") },
  "master-load": { title: "Master under many agents", load: () => import("./master-load.js") },
  decision: { title: "Decision latency", load: () => import("./decision.js") },
  reaction: { title: "Reaction end to end", load: () => import("./reaction.js") },
};
const ORDER = Object.keys(BENCHES);
const OUT = path.join(REPO_ROOT, "BENCHMARKS.md");

function section(id: string, body: string): string {
  return `<!-- bench:${id} -->\n${body.trim()}\n<!-- /bench:${id} -->`;
}

/** The section bodies of an existing BENCHMARKS.md, by id. */
function parseSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/<!-- bench:([\w-]+) -->\n([\s\S]*?)\n<!-- \/bench:\1 -->/g)) out.set(m[1]!, m[2]!);
  return out;
}

async function header(): Promise<string> {
  const info = await machineInfo();
  return [
    "# Benchmarks",
    "",
    "Written by `bench/run.ts`; do not edit by hand (a rerun rewrites it).",
    "",
    `Machine: ${info.cpus} CPUs (${info.cpuModel}), ${info.memGiB} GiB memory; ${info.haproxy}; node ${info.node}. Header written ${info.date}; each section says when it was measured.`,
    "",
    "Rerun everything with `npm run bench` (builds first, then runs `bench/run.ts`), or one benchmark with",
    "`npx tsc -b && npx tsx bench/run.ts NAME`, NAME one of " + ORDER.map((n) => `\`${n}\``).join(", ") + "; that rewrites only its own section.",
    "Everything runs on 127.0.0.1 in temp folders that are removed afterwards; every HAProxy, sshd, master, agent and CLI process started is stopped by its pid.",
    "`agent-footprint`, `registration`, `master-load`, `decision` and `reaction` also need OpenSSH's sshd and the user `autoscaler-test`, as the tests do (`bash .ci/run` sets both up).",
  ].join("\n");
}

async function main(): Promise<number> {
  installSignalCleanup();
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => !BENCHES[a]);
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(", ")}; expected one of ${ORDER.join(", ")}\n`);
    return 2;
  }
  const chosen = args.length > 0 ? ORDER.filter((n) => args.includes(n)) : ORDER;

  let existing = "";
  try {
    existing = await fs.readFile(OUT, "utf8");
  } catch {
    // first run
  }
  const sections = parseSections(existing);

  let failed = 0;
  const started = performance.now();
  for (const name of chosen) {
    const t0 = performance.now();
    try {
      const bench = await BENCHES[name]!.load();
      const result = await bench.run();
      process.stdout.write(`\n${result.text}\n`);
      process.stderr.write(`${name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      sections.set(name, result.markdown);
      // Write after each benchmark, so a later failure keeps what was measured.
      // A new header on a full run, or when the old one does not list every benchmark.
      const staleHeader = !sections.has("header") || ORDER.some((n) => !sections.get("header")!.includes(`\`${n}\``));
      await write(sections, chosen.length === ORDER.length || staleHeader);
    } catch (err) {
      failed++;
      process.stderr.write(`${name}: FAILED: ${(err as Error).stack ?? String(err)}\n`);
    }
  }
  await cleanupAll();
  const left = haproxyLeft();
  if (left) process.stderr.write(`note: haproxy processes on this machine after the run (not necessarily ours):\n${left}\n`);
  process.stderr.write(`all done in ${((performance.now() - started) / 1000).toFixed(1)} s; ${OUT} written\n`);
  return failed > 0 ? 1 : 0;
}

let headerWritten = false;
async function write(sections: Map<string, string>, newHeader: boolean): Promise<void> {
  if (newHeader && !headerWritten) {
    sections.set("header", await header());
    headerWritten = true;
  }
  const parts = ["header", ...ORDER].filter((id) => sections.has(id)).map((id) => section(id, sections.get(id)!));
  for (const id of ORDER) if (!sections.has(id)) parts.push(section(id, `## ${BENCHES[id]!.title}\n\nNot measured yet: run \`npx tsx bench/run.ts ${id}\`.`));
  await fs.writeFile(OUT, parts.join("\n\n") + "\n");
}

function haproxyLeft(): string {
  try {
    return execFileSync("pgrep", ["-a", "haproxy"], { encoding: "utf8" }).trim();
  } catch {
    return ""; // pgrep exits 1 when nothing matches
  }
}

process.exitCode = await main();
