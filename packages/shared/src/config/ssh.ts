/** How the agent reaches a proxy's sshd, read from `ssh_command` or from `ssh_user` + `ssh_params`. */
import path from "node:path";

/** User, key and port for the agent's SSH connections. Unset fields fall back to the agent's defaults. */
export interface SshSettings {
  user: string | undefined;
  identityFile: string | undefined;
  port: number | undefined;
}

/** Split a command line into words the way sh would for plain quoting (no expansion). */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * Read user, identity file and port from ssh arguments (`-i KEY -p PORT -l USER -o Port=… USER@$HOST`).
 * Returns the reason when the arguments are not understood. Options the agent cannot honour are ignored.
 */
export function parseSshArgs(
  args: string[],
  dir: string,
  home: string,
): { ok: true; value: SshSettings; target: string | undefined } | { ok: false; expected: string } {
  const out: SshSettings = { user: undefined, identityFile: undefined, port: undefined };
  let target: string | undefined;
  const resolve = (p: string) => path.resolve(dir, p === "~" || p.startsWith("~/") ? path.join(home, p.slice(1)) : p);
  const setPort = (v: string | undefined) => {
    const n = Number(v);
    if (!v || !/^\d+$/.test(v) || n < 1 || n > 65535) return false;
    out.port = n;
    return true;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-i") out.identityFile = args[++i] === undefined ? undefined : resolve(args[i]!);
    else if (a.startsWith("-i") && a.length > 2) out.identityFile = resolve(a.slice(2));
    else if (a === "-p") {
      if (!setPort(args[++i])) return { ok: false, expected: `a port from 1 to 65535 after -p` };
    } else if (a.startsWith("-p") && a.length > 2) {
      if (!setPort(a.slice(2))) return { ok: false, expected: `a port from 1 to 65535 after -p` };
    } else if (a === "-l") out.user = args[++i];
    else if (a === "-o") {
      const opt = args[++i] ?? "";
      const m = /^(\w+)\s*[= ]\s*(.+)$/.exec(opt);
      if (m) {
        const key = m[1]!.toLowerCase();
        if (key === "port" && !setPort(m[2])) return { ok: false, expected: "a port from 1 to 65535 in -o Port=" };
        if (key === "user") out.user = m[2];
        if (key === "identityfile") out.identityFile = resolve(m[2]!);
      }
    } else if (/^-[46AaCfGgKkMNnqsTtVvXxYy]+$/.test(a)) {
      // flags without an argument: irrelevant to the agent
    } else if (/^-[BbcDEeFIJLmOQRSWw]$/.test(a)) {
      i++; // options with an argument the agent does not use
    } else if (!a.startsWith("-") && target === undefined) {
      target = a;
    } else if (!a.startsWith("-")) {
      // a remote command after the target (the original tool ran commands this way): not the agent's concern
    } else {
      return { ok: false, expected: `ssh options the agent understands (-i, -p, -l, -o); ${JSON.stringify(a)} is not one` };
    }
  }
  if (target !== undefined) {
    const at = target.lastIndexOf("@");
    if (at > 0) out.user = target.slice(0, at);
  }
  return { ok: true, value: out, target };
}
