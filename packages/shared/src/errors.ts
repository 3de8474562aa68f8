/** Exit codes of every command: success, failed operation, bad usage, bad config (sysexits EX_CONFIG). */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONFIG = 78;

/** Stable error codes; messages may change, codes do not. */
export type ErrorCode =
  | "AUTOSCALER_CONFIG_INVALID"
  | "AUTOSCALER_CONFIG_NOT_FOUND"
  | "AUTOSCALER_USAGE"
  | "AUTOSCALER_INPUT_INVALID"
  | "AUTOSCALER_BAD_TRACE"
  | "AUTOSCALER_EXISTS"
  | "AUTOSCALER_NOT_FOUND"
  | "AUTOSCALER_HOSTS_INVALID"
  | "AUTOSCALER_TEMPLATE_INVALID"
  | "AUTOSCALER_HAPROXY_CHECK_FAILED"
  | "AUTOSCALER_HAPROXY_RELOAD_FAILED"
  | "AUTOSCALER_IO";

/**
 * The one error type the CLI maps to an exit code. `details` are extra lines (for example
 * HAProxy's own error lines) printed under the message.
 */
export class AutoscalerError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly details: string[];

  constructor(code: ErrorCode, message: string, options: { exitCode?: number; details?: string[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AutoscalerError";
    this.code = code;
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
    this.details = options.details ?? [];
  }
}

/** A bad value given by the user on the command line or in a file: exit 1, nothing written. */
export function inputError(message: string, details: string[] = []): AutoscalerError {
  return new AutoscalerError("AUTOSCALER_INPUT_INVALID", message, { details });
}

/** Narrow an unknown thrown value to a Node system error code such as ENOENT. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof (err as { code: unknown }).code === "string"
    ? (err as { code: string }).code
    : undefined;
}
