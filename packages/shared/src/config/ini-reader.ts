/**
 * A reader for the ini dialect of Python's ConfigParser, which the original tool used:
 * `[section]`, `key = value` or `key: value`, whole-line `#`/`;` comments, indented
 * continuation lines, keys lower-cased. Values are taken literally: no inline comments
 * (the `ini` package would cut `cmd1; cmd2` at the `;`) and no `%` interpolation.
 */

/** One key as read, with the line it came from (for messages). */
export interface IniEntry {
  value: string;
  line: number;
}

/** Sections of entries. Keys before any section go to the section "" (an error for the caller to report). */
export type IniDocument = Map<string, Map<string, IniEntry>>;

/** A line that could not be read, with its number. */
export interface IniSyntaxError {
  line: number;
  message: string;
}

/** Parse ini text; never throws. Duplicate keys: the last one wins, as in ConfigParser(strict=False). */
export function readIni(text: string): { doc: IniDocument; errors: IniSyntaxError[] } {
  const doc: IniDocument = new Map();
  const errors: IniSyntaxError[] = [];
  let section: Map<string, IniEntry> | undefined;
  let last: IniEntry | undefined;
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    if (/^\s*$/.test(raw)) {
      last = undefined;
      return;
    }
    if (/^\s*[#;]/.test(raw)) return;
    if (/^\s/.test(raw) && last) {
      // Continuation line: ConfigParser joins it with a newline. Our values reject newlines later
      // with a clear message; keeping the newline here makes that message accurate.
      last.value += "\n" + raw.trim();
      return;
    }
    const header = /^\s*\[([^\]]*)\]\s*$/.exec(raw);
    if (header) {
      const name = (header[1] ?? "").trim();
      section = doc.get(name) ?? new Map();
      doc.set(name, section);
      last = undefined;
      return;
    }
    // Keys are single words: "aws_secret_key abc:def" (a lost "=") is malformed, not a key "aws_secret_key abc".
    const kv = /^\s*([^=:\s]+)\s*[=:]\s?(.*)$/.exec(raw);
    if (!kv) {
      // The line itself is not shown: it may be a secret that lost its "=".
      errors.push({ line: lineNo, message: `line ${lineNo} is neither "[section]" nor "key = value" (nor a # or ; comment)` });
      last = undefined;
      return;
    }
    if (!section) {
      section = new Map();
      doc.set("", section);
    }
    last = { value: (kv[2] ?? "").trim(), line: lineNo };
    section.set((kv[1] ?? "").toLowerCase(), last);
  });
  return { doc, errors };
}

/**
 * Set `section.key = value` in ini text, keeping every comment and other line: replaces the
 * key's line, else uncomments a commented `;key =` / `# key =` line of that section, else
 * appends to the section (creating it at the end when missing).
 */
export function setIniValue(text: string, section: string, key: string, value: string): string {
  const lines = text.split("\n");
  let current = "";
  let sectionEnd = -1;
  let commented = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const header = /^\s*\[([^\]]*)\]\s*$/.exec(line);
    if (header) {
      current = (header[1] ?? "").trim();
      if (current === section) sectionEnd = i;
      continue;
    }
    if (current !== section) continue;
    if (!/^\s*$/.test(line)) sectionEnd = i;
    const active = /^\s*([^=:#;\s][^=:]*?)\s*[=:]/.exec(line);
    if (active && (active[1] ?? "").toLowerCase() === key) {
      lines[i] = `${key} = ${value}`;
      return lines.join("\n");
    }
    const inactive = /^\s*[#;]\s*([A-Za-z0-9_]+)\s*[=:]/.exec(line);
    if (inactive && (inactive[1] ?? "").toLowerCase() === key && commented < 0) commented = i;
  }
  if (commented >= 0) {
    lines[commented] = `${key} = ${value}`;
    return lines.join("\n");
  }
  if (sectionEnd >= 0) {
    lines.splice(sectionEnd + 1, 0, `${key} = ${value}`);
    return lines.join("\n");
  }
  const body = text.endsWith("\n") || text === "" ? text : text + "\n";
  return `${body}\n[${section}]\n${key} = ${value}\n`;
}
