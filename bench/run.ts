/**
 * Runs the benchmarks and (re)writes BENCHMARKS.md at the repo root.
 *
 *   npm run bench                      # all of them (builds first)
 *   npx tsx bench/run.ts render        # one (or several) by name; only their sections are rewritten
 *   SOAK_MINUTES=30 npx tsx bench/run.ts soak   # opt-in: run only when named
 *
 * Each section of BENCHMARKS.md sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`,
 * so a partial run replaces its own sections and keeps the others. An opt-in benchmark (the
 * soak) runs only when named and writes its own `<!-- NAME -->` section of another file.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { cleanupAll, installSignalCleanup, machineInfo, REPO_ROOT, type BenchResult } from "./lib.js";

type Bench = { run: (log?: (s: string) => void) => Promise<BenchResult> };

interface Entry {
  title: string;
  load: () => Promise<Bench>;
  /** Run only when named on the command line, and write the section `<!-- NAME -->` … `<!-- /NAME -->` of this file (at the repo root) instead of BENCHMARKS.md. */
  optIn?: { file: string; fileTitle: string };
}

const BENCHES: Record<string, Entry> = {
  render: { title: "Render and compare vs haproxy -c", load: () => import("./render.js") },
  reload: { title: "generate --reload vs HAProxy's own check + reload", load: () => import("./reload.js") },
  "reload-under-load": { title: "Reloads under keep-alive load", load: () => import("./reload-under-load.js") },
  "agent-footprint": { title: "Agent footprint", load: () => import("./agent-footprint.js") },
  registration: { title: "Registration: hello to first request", load: () => import("./registration.js") },
  "runtime-registration": { title: "Registration through the runtime API", load: () => import("./runtime-registration.js") },
  "master-load": { title: "Master under many agents", load: () => import("./master-load.js") },
  "sample-flood": { title: "A sample flood from one node", load: () => import("./sample-flood.js") },
  decision: { title: "Decision latency", load: () => import("./decision.js") },
  reaction: { title: "Reaction end to end", load: () => import("./reaction.js") },
  failover: { title: "Failover on etcd", load: () => import("./failover.js") },
  "status-page": { title: "Status page: history memory and the JSON endpoint", load: () => import("./status-page.js") },
  "scaling-quality": { title: "Scaling quality", load: () => import("./scaling-quality.js") },
  "webhook-timing": { title: "Webhook lookup timing: right, wrong and near-miss secrets", load: () => import("./webhook-timing.js") },
  soak: { title: "Soak", load: () => import("./soak.js"), optIn: { file: "RELIABILITY.md", fileTitle: "# Reliability" } },
};
const ALL = Object.keys(BENCHES);
/** The benchmarks of BENCHMARKS.md: what a run without names runs. */
const ORDER = ALL.filter((n) => !BENCHES[n]!.optIn);
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
    "The soak (`SOAK_MINUTES=30 npx tsx bench/run.ts soak`) runs only when named and writes RELIABILITY.md.",
    "Everything runs on 127.0.0.1 in temp folders that are removed afterwards; every HAProxy, sshd, master, agent and CLI process started is stopped by its pid.",
    "`agent-footprint`, `registration`, `master-load`, `decision` and `reaction` also need OpenSSH's sshd and the user `autoscaler-test`, as the tests do (`bash .ci/run` sets both up).",
  ].join("\n");
}

async function main(): Promise<number> {
  installSignalCleanup();
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => !BENCHES[a]);
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(", ")}; expected one of ${ALL.join(", ")}\n`);
    return 2;
  }
  const chosen = args.length > 0 ? ALL.filter((n) => args.includes(n)) : ORDER;
  const written = new Set<string>();

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
      const optIn = BENCHES[name]!.optIn;
      if (optIn) {
        await writeMarkedSection(path.join(REPO_ROOT, optIn.file), optIn.fileTitle, name, result.markdown);
        written.add(path.join(REPO_ROOT, optIn.file));
        continue;
      }
      sections.set(name, result.markdown);
      written.add(OUT);
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
  process.stderr.write(
    `all done in ${((performance.now() - started) / 1000).toFixed(1)} s; ${written.size > 0 ? [...written].join(", ") : "nothing"} written\n`,
  );
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

/** Replace the `<!-- id -->` … `<!-- /id -->` section of `file` (created with just `title` if missing), or append it; the rest of the file is kept. */
async function writeMarkedSection(file: string, title: string, id: string, body: string): Promise<void> {
  const text = await fs.readFile(file, "utf8").catch(() => `${title}\n`);
  const block = `<!-- ${id} -->\n${body.trim()}\n<!-- /${id} -->`;
  const marked = new RegExp(`<!-- ${id} -->\\n[\\s\\S]*?<!-- /${id} -->`);
  await fs.writeFile(file, marked.test(text) ? text.replace(marked, () => block) : `${text.trimEnd()}\n\n${block}\n`);
}

function haproxyLeft(): string {
  try {
    return execFileSync("pgrep", ["-a", "haproxy"], { encoding: "utf8" }).trim();
  } catch {
    return ""; // pgrep exits 1 when nothing matches
  }
}

process.exitCode = await main();
