/** Log levels in order of importance: what `--log-level` accepts. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured fields that travel with a log line. */
export type LogFields = Record<string, unknown>;

/** The narrow logging capability every module takes. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Options for {@link createLogger}. `json` picks JSON lines (for journald and files) over readable lines. */
export interface LoggerOptions {
  level?: LogLevel;
  json?: boolean;
  now?: () => Date;
  /** Values that must never be printed; each is replaced by `[redacted]`. */
  secrets?: string[];
}

/**
 * Replace every occurrence of each secret in `text`, also in its JSON-escaped spelling (log lines
 * quote values, so a secret with `"` or `\` would otherwise slip through). Secrets shorter than 4
 * characters are ignored (they would mangle text).
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length < 4) continue;
    for (const form of new Set([s, JSON.stringify(s).slice(1, -1)])) out = out.split(form).join("[redacted]");
  }
  return out;
}

/** A logger that writes one line per call to `stream`. */
/**
 * Control characters (C0, DEL, C1) written as `\uXXXX`, so text that came from a node or a file
 * can neither forge a log line (a newline) nor drive the terminal (an escape sequence).
 */
export function escapeControl(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function createLogger(stream: { write(s: string): unknown }, options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? "info"];
  const now = options.now ?? (() => new Date());
  const secrets = options.secrets ?? [];
  const emit = (level: LogLevel, message: string, fields: LogFields = {}) => {
    if (LEVELS[level] < min) return;
    let line: string;
    if (options.json) {
      line = JSON.stringify({ time: now().toISOString(), level, msg: message, ...fields });
    } else {
      const extra = Object.entries(fields)
        // JSON.stringify escapes control characters; a plain value has none.
        .map(([k, v]) => `${k}=${typeof v === "string" ? (/[\s\p{Cc}]/u.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
        .join(" ");
      line = `${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${escapeControl(message)}${extra ? " " + extra : ""}`;
    }
    stream.write(redact(line, secrets) + "\n");
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
