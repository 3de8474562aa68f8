import { createRequire } from "node:module";

/** This package's version: what `--version` prints and what the daemons report. */
export const version = (createRequire(import.meta.url)("../package.json") as { version: string }).version;
