/**
 * What the agent needs from this package (import from "@autoscaler/shared/core"): errors, the
 * config loader, the logger and atomic writes. The same modules the index exports, without
 * HAProxy's, hosts.d's and the credentials' (nor proper-lockfile): the agent loads less code.
 */
export * from "./errors.js";
export * from "./logger.js";
export * from "./atomic-write.js";
export * from "./config/load.js";
export * from "./config/schema.js";
