/** `autoscaler install-service agent|master`: write the shipped systemd unit, or print it with --dry-run. */
import { promises as fs } from "node:fs";
import path from "node:path";
import { AutoscalerError, errnoCode, readIfExists, resolveConfigPath, writeFileAtomic } from "@autoscaler/shared";
import { findAsset } from "../assets.js";
import type { GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

/** The daemons that have a unit. */
export const SERVICE_ROLES = ["agent", "master"] as const;
export type ServiceRole = (typeof SERVICE_ROLES)[number];

/** Where systemd looks for units an administrator installs. */
export const DEFAULT_UNIT_DIR = "/etc/systemd/system";

/** The ini the shipped units read (their `Environment=AUTOSCALER_CONFIG=`). */
const UNIT_CONFIG = "/etc/autoscaler/autoscaler.ini";

/** Arguments of `install-service`. */
export interface InstallServiceArgs extends GlobalArgs {
  role: ServiceRole;
  dryRun?: boolean;
  unitDir?: string;
  force?: boolean;
}

/** What to do once the unit is in place. */
function nextSteps(role: ServiceRole, unitName: string, configNote: string | undefined): string[] {
  const service = unitName.replace(/\.service$/, "");
  const steps =
    role === "agent"
      ? [
          "  1. The agent runs as the user autoscaler, which must exist and own the files it reads:",
          "       useradd --system --no-create-home --shell /usr/sbin/nologin autoscaler",
          "  2. The node's private SSH key goes where -i in [haproxy] ssh_command points (default",
          "     /etc/autoscaler/node_key), the proxies' host keys in [haproxy] known_hosts (default",
          "     /etc/autoscaler/known_hosts); the ini and the key stay mode 0600, owned by that user:",
          `       chown autoscaler: ${UNIT_CONFIG} /etc/autoscaler/node_key`,
          "  3. Load and start it:",
          "       systemctl daemon-reload",
          `       systemctl enable --now ${service}`,
          `  4. Follow its log: journalctl -u ${service} -f`,
        ]
      : [
          "  1. Load and start it (HAProxy first: the master reloads it at start):",
          "       systemctl daemon-reload",
          `       systemctl enable --now ${service}`,
          `  2. Follow its log: journalctl -u ${service} -f`,
          "  3. Check it: autoscaler status",
        ];
  return [
    ...(configNote ? [configNote, ""] : []),
    "Next steps:",
    ...steps,
    "",
    `Local changes go in a drop-in (systemctl edit ${service}), so a new version of this file never overwrites them.`,
  ];
}

/** Run `install-service`. */
export async function runInstallService(io: Io, args: InstallServiceArgs): Promise<number> {
  const unitName = `autoscaler-${args.role}.service`;
  const unit = await fs.readFile(findAsset(`systemd/${unitName}`));
  if (args.dryRun) {
    io.stdout.write(unit.toString("utf8"));
    return 0;
  }

  const dir = path.resolve(io.cwd, args.unitDir ?? DEFAULT_UNIT_DIR);
  const target = path.join(dir, unitName);
  const existing = await readIfExists(target).catch((err: Error) => {
    throw new AutoscalerError("AUTOSCALER_IO", `cannot read ${target}: ${err.message}`);
  });
  let done: string;
  if (existing?.equals(unit)) {
    done = `${target} is already the shipped unit; nothing was written`;
  } else {
    if (existing && !args.force) {
      throw new AutoscalerError(
        "AUTOSCALER_EXISTS",
        `${target} exists and differs from the shipped unit; it was left as it was. Put local changes in a drop-in (systemctl edit autoscaler-${args.role}), or pass --force to replace the file.`,
      );
    }
    try {
      await fs.access(dir);
    } catch {
      throw new AutoscalerError(
        "AUTOSCALER_IO",
        `${dir} does not exist (is this a systemd machine?); nothing was written. Pass --unit-dir DIR to write the unit elsewhere, or --dry-run to print it.`,
      );
    }
    try {
      await writeFileAtomic(target, unit, { mode: 0o644, forceMode: true });
    } catch (err) {
      const hint = ["EACCES", "EPERM", "EROFS"].includes(errnoCode(err) ?? "") ? " (run it as root)" : "";
      throw new AutoscalerError("AUTOSCALER_IO", `cannot write ${target}: ${(err as Error).message}${hint}; nothing was written`);
    }
    done = `wrote ${target} (mode 0644)${existing ? ", replacing a different file" : ""}`;
  }

  // The unit reads the default ini; say so when this command was pointed at another one.
  const config = resolveConfigPath(args.config, io.env, io.cwd);
  const configNote =
    config === UNIT_CONFIG
      ? undefined
      : `Note: the unit reads ${UNIT_CONFIG}, not ${config}. To change that, add to its drop-in:\n  [Service]\n  Environment=AUTOSCALER_CONFIG=${config}`;
  io.stdout.write([done, "", ...nextSteps(args.role, unitName, configNote), ""].join("\n"));
  return 0;
}
