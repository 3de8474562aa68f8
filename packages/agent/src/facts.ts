/** Node facts for `hello`: the agent's only use of systeminformation. */
import si from "systeminformation";

/** Cores, memory and OS, as the hello carries them. */
export interface NodeFacts {
  cores: number;
  memory_bytes: number;
  os?: string;
}

/** Read the node's facts once at start. */
export async function readFacts(): Promise<NodeFacts> {
  const [cpu, mem, osInfo] = await Promise.all([si.cpu(), si.mem(), si.osInfo()]);
  const os = `${osInfo.distro} ${osInfo.release}`.trim().slice(0, 128);
  return { cores: Math.max(1, cpu.cores || 1), memory_bytes: Math.max(0, Math.round(mem.total)), ...(os ? { os } : {}) };
}
