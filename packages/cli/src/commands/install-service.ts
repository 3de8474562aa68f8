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

/** Folders the units' ProtectHome=yes hides: an ini there cannot be read by the service. */
const HIDDEN_BY_PROTECT_HOME = ["/home/", "/root/", "/run/user/"];

/**
 * The unit for the ini at `config`: the shipped bytes when it is the default one; otherwise the
 * same unit with `AUTOSCALER_CONFIG` set to it and, for the master, its hosts.d writable (the
 * units run with ProtectSystem=strict). A path systemd would read differently (a space, `%`, a
 * quote) or one ProtectHome hides is refused.
 */
export function unitFor(role: ServiceRole, shipped: string, config: string): string {
  if (config === UNIT_CONFIG) return shipped;
  if (!/^\/[A-Za-z0-9/._+@-]+$/.test(config)) {
    throw new AutoscalerError(
      "AUTOSCALER_USAGE",
      `--config ${JSON.stringify(config)} cannot go into a systemd unit as it is; expected an absolute path of letters, digits and / . _ + @ - (no space, %, quote or backslash). Nothing was written`,
      { exitCode: 2 },
    );
  }
  if (HIDDEN_BY_PROTECT_HOME.some((d) => config.startsWith(d))) {
    throw new AutoscalerError(
      "AUTOSCALER_USAGE",
      `--config ${config} is under ${HIDDEN_BY_PROTECT_HOME.find((d) => config.startsWith(d))}, which the unit hides from the service (ProtectHome=yes); expected an ini outside /home, /root and /run/user, such as ${UNIT_CONFIG}. Nothing was written`,
      { exitCode: 2 },
    );
  }
  const withConfig = shipped.replace(`Environment=AUTOSCALER_CONFIG=${UNIT_CONFIG}`, `Environment=AUTOSCALER_CONFIG=${config}`);
  if (role !== "master") return withConfig;
  return withConfig.replace(/^ReadWritePaths=-\/etc\/autoscaler\/hosts\.d /m, `ReadWritePaths=-${path.join(path.dirname(config), "hosts.d")} `);
}

/** What to do once the unit is in place. */
function nextSteps(role: ServiceRole, unitName: string, config: string): string[] {
  const service = unitName.replace(/\.service$/, "");
  const steps =
    role === "agent"
      ? [
          "  1. The agent runs as the user autoscaler, which must exist and own the files it reads:",
          "       useradd --system --no-create-home --shell /usr/sbin/nologin autoscaler",
          "  2. The node's private SSH key goes where -i in [haproxy] ssh_command points (default",
          "     /etc/autoscaler/node_key), the proxies' host keys in [haproxy] known_hosts (default",
          "     /etc/autoscaler/known_hosts); the ini and the key stay mode 0600, owned by that user:",
          `       chown autoscaler: ${config} /etc/autoscaler/node_key`,
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
    ...(config === UNIT_CONFIG ? [] : [`The unit reads ${config} (Environment=AUTOSCALER_CONFIG=${config}).`, ""]),
    "Next steps:",
    ...steps,
    "",
    `Local changes go in a drop-in (systemctl edit ${service}), so a new version of this file never overwrites them.`,
  ];
}

/** Run `install-service`. */
export async function runInstallService(io: Io, args: InstallServiceArgs): Promise<number> {
  const unitName = `autoscaler-${args.role}.service`;
  // The ini this command was pointed at (--config, else AUTOSCALER_CONFIG, else the default) is the one the unit reads.
  const config = resolveConfigPath(args.config, io.env, io.cwd);
  const unit = Buffer.from(unitFor(args.role, await fs.readFile(findAsset(`systemd/${unitName}`), "utf8"), config), "utf8");
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
    done = `${target} is already this unit; nothing was written`;
  } else {
    if (existing && !args.force) {
      throw new AutoscalerError(
        "AUTOSCALER_EXISTS",
        `${target} exists and differs from the unit this would write; it was left as it was. Put local changes in a drop-in (systemctl edit autoscaler-${args.role}), or pass --force to replace the file.`,
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

  io.stdout.write([done, "", ...nextSteps(args.role, unitName, config), ""].join("\n"));
  return 0;
}
