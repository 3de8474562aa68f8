/** `autoscaler authorize-key`: the authorized_keys line that lets a node key open only the master's port. */
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

/** Print the restricted authorized_keys line for a node's public key. */
export async function runAuthorizeKey(io: Io, args: GlobalArgs & { pubkeyFile: string }): Promise<number> {
  const ctx = await loadContext(io, args);
  let text: string;
  try {
    text = await fs.readFile(args.pubkeyFile, "utf8");
  } catch (err) {
    throw new AutoscalerError("AUTOSCALER_INPUT_INVALID", `cannot read ${args.pubkeyFile}: ${(err as Error).message}`, { exitCode: 2 });
  }
  const key = parsePublicKey(text, args.pubkeyFile);
  const port = ctx.config.master.listen!.port;
  io.stdout.write(
    `restrict,port-forwarding,permitopen="127.0.0.1:${port}",command="/bin/false" ${key.type} ${key.base64}${key.comment ? " " + key.comment : ""}\n`,
  );
  return 0;
}
