import { AutoscalerError, EXIT_FAILURE } from "@autoscaler/shared/core";
import type { Io } from "./io.js";

/** Print an error the way every command does: the message, then its detail lines; returns the exit code. */
export function printError(io: Io, err: unknown): number {
  if (err instanceof AutoscalerError) {
    io.stderr.write(`error: ${err.message}\n`);
    for (const d of err.details) io.stderr.write(`  ${d}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  io.stderr.write(`error: ${e?.message ?? String(err)}\n`);
  if (io.env.AUTOSCALER_DEBUG && e?.stack) io.stderr.write(e.stack + "\n");
  return EXIT_FAILURE;
}
