/**
 * `autoscaler authorize-key`: the authorized_keys line that lets a node key open only the master's
 * port, then the sshd_config `Match User` block for the node user (`--line-only`: the line alone).
 */
import { promises as fs } from "node:fs";
import { AutoscalerError } from "@autoscaler/shared";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/;

/** Parse one OpenSSH public key line; refuses anything else (private keys, several keys, options). */
export function parsePublicKey(text: string, file: string): { type: string; base64: string; comment: string } {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const bad = (why: string) =>
    new AutoscalerError(
      "AUTOSCALER_INPUT_INVALID",
      `${file} ${why}; expected one OpenSSH public key line such as "ssh-ed25519 AAAA… node@web-1" (the .pub file)`,
      { exitCode: 2 },
    );
  // A private key (the file without .pub) would otherwise read as "holds 7 lines"; and it should not travel at all.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text))
    throw new AutoscalerError(
      "AUTOSCALER_INPUT_INVALID",
      `${file} is a private key; expected the node's public key (the .pub file beside it, such as ${/\.pub$/.test(file) ? file : `${file}.pub`}). The private key stays on the node`,
      { exitCode: 2 },
    );
  if (lines.length !== 1)
    return (() => {
      throw bad(lines.length === 0 ? "holds no key" : `holds ${lines.length} lines`);
    })();
  const [type, b64, ...rest] = lines[0]!.split(/\s+/);
  if (!type || !KEY_TYPES.test(type)) throw bad(`does not start with a public key type (found ${JSON.stringify((type ?? "").slice(0, 40))})`);
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw bad("has no base64 key after the type");
  const blob = Buffer.from(b64, "base64");
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  if (blob.subarray(4, 4 + len).toString("latin1") !== type) throw bad(`has a key whose contents are not a ${type} key`);
  const comment = rest
    .join(" ")
    .replace(/[^A-Za-z0-9@._:-]/g, "")
    .slice(0, 64);
  return { type, base64: b64, comment };
}

/** User names this command prints into sshd_config: no spaces, quotes, patterns (`*`, `?`, `!`, `,`) or newlines. */
const SAFE_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

/** The sshd_config `Match User` block that keeps a node key to one channel to 127.0.0.1:<port>. */
export function sshdMatchBlock(user: string, port: number): string {
  if (!SAFE_USER.test(user))
    throw new AutoscalerError(
      "AUTOSCALER_INPUT_INVALID",
      `the node user ${JSON.stringify(user.slice(0, 40))} (from haproxy.ssh_command or ssh_user) is not safe to print into sshd_config; expected a name matching [a-z_][a-z0-9_-]{0,31}, such as "autoscaler"`,
      { exitCode: 2 },
    );
  return [
    `Match User ${user}`,
    "    AllowTcpForwarding local",
    `    PermitOpen 127.0.0.1:${port}`,
    "    PermitListen none",
    "    AllowStreamLocalForwarding no",
    "    X11Forwarding no",
    "    AllowAgentForwarding no",
    "    PermitTTY no",
    "    ForceCommand /bin/false",
    "",
  ].join("\n");
}

/** The comment line that separates the authorized_keys line from the sshd_config block. */
export const SSHD_CONFIG_HEADER = "# sshd_config (append once; then: sshd -t && systemctl reload ssh):";

/**
 * Print the restricted authorized_keys line for a node's public key and, unless `lineOnly`, the
 * sshd_config block for the node user of `[haproxy] ssh_command` (or `ssh_user`).
 */
export async function runAuthorizeKey(io: Io, args: GlobalArgs & { pubkeyFile: string; lineOnly?: boolean }): Promise<number> {
  const ctx = await loadContext(io, args);
  let text: string;
  try {
    text = await fs.readFile(args.pubkeyFile, "utf8");
  } catch (err) {
    throw new AutoscalerError("AUTOSCALER_INPUT_INVALID", `cannot read ${args.pubkeyFile}: ${(err as Error).message}`, { exitCode: 2 });
  }
  const key = parsePublicKey(text, args.pubkeyFile);
  const port = ctx.config.master.listen!.port;
  let block = "";
  if (!args.lineOnly) {
    const user = ctx.config.ssh.user;
    if (!user)
      throw new AutoscalerError(
        "AUTOSCALER_INPUT_INVALID",
        'no node user for the sshd_config block; expected haproxy.ssh_command "ssh -i KEY USER@$HOST" (or haproxy.ssh_user) in the ini, or --line-only for the authorized_keys line alone',
        { exitCode: 2 },
      );
    block = `\n${SSHD_CONFIG_HEADER}\n${sshdMatchBlock(user, port)}`;
  }
  io.stdout.write(
    `restrict,port-forwarding,permitopen="127.0.0.1:${port}",command="/bin/false" ${key.type} ${key.base64}${key.comment ? " " + key.comment : ""}\n` + block,
  );
  return 0;
}
