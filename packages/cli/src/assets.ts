import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Find a shipped file under `etc/` (the default ini, the template, the systemd units). It sits
 * at the package root: three folders up in the repository, four when installed with bundled
 * workspaces; walking up finds it in both layouts.
 */
export function findAsset(relative: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, "etc", relative);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`shipped file etc/${relative} not found above ${fileURLToPath(import.meta.url)}; the installation is incomplete`);
}

/**
 * How a person runs this CLI: `npx autoscaler` from a clone of the repository (its package root
 * holds `.git`, and `autoscaler` is not on the PATH there), `autoscaler` once installed. Used in
 * the commands a command prints for the next step.
 */
export function invokedAs(): string {
  const root = path.dirname(path.dirname(findAsset("autoscaler.ini")));
  return existsSync(path.join(root, ".git")) ? "npx autoscaler" : "autoscaler";
}
