/**
 * Node facts for `hello`, read once at start from what node and the OS already offer: the
 * logical CPU count and total memory (os.cpus(), os.totalmem(): /proc/cpuinfo and /proc/meminfo,
 * where systeminformation, used here before, read them too) and the OS's name from os-release.
 * systeminformation cost the agent about 2.6 MiB of RSS for as long as it ran (BENCHMARKS.md
 * "Agent footprint"), and started `lscpu` and `cat` to read the same values.
 */
import { promises as fs } from "node:fs";
import os from "node:os";

/** Cores, memory and OS, as the hello carries them. */
export interface NodeFacts {
  cores: number;
  memory_bytes: number;
  os?: string;
}

/** The OS's name from os-release(5) text: PRETTY_NAME, else NAME and VERSION_ID; undefined when it has neither. */
export function osNameFromRelease(text: string): string | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!.trim();
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) value = value.slice(1, -1);
    fields.set(m[1]!, quote === "'" ? value : value.replace(/\\(.)/g, "$1"));
  }
  const name = fields.get("PRETTY_NAME") || [fields.get("NAME"), fields.get("VERSION_ID")].filter(Boolean).join(" ");
  const clean = name.replace(/\p{Cc}/gu, " ").trim();
  return clean === "" ? undefined : clean.slice(0, 128);
}

/** Read the node's facts once at start. */
export async function readFacts(): Promise<NodeFacts> {
  let release = "";
  for (const file of ["/etc/os-release", "/usr/lib/os-release"]) {
    release = await fs.readFile(file, "utf8").catch(() => "");
    if (release !== "") break;
  }
  const osName = osNameFromRelease(release);
  return { cores: Math.max(1, os.cpus().length), memory_bytes: Math.max(0, os.totalmem()), ...(osName ? { os: osName } : {}) };
}
