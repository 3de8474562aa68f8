/**
 * `node-credential` and `trust`: the operator's word about nodes. A node credential lets one
 * node speak for its own name only; `trust` vouches for a node's instance id, so a scale-down
 * may terminate it.
 */
import { AutoscalerError, checkName, nodeCredential } from "@autoscaler/shared";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

const usageError = (message: string) => new AutoscalerError("AUTOSCALER_INPUT_INVALID", message, { exitCode: 2 });
const INSTANCE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Arguments of `node-credential`. */
export interface NodeCredentialArgs extends GlobalArgs {
  name: string;
}

/** Print the credential that speaks for one node name, made from this proxy's [master] token. */
export async function runNodeCredential(io: Io, args: NodeCredentialArgs): Promise<number> {
  const name = String(args.name);
  const problem = checkName(name);
  if (problem) throw usageError(`the node name ${JSON.stringify(name.slice(0, 80))} ${problem}`);
  const { config } = await loadContext(io, args);
  if (config.master.token === "") {
    throw new AutoscalerError(
      "AUTOSCALER_CONFIG_INVALID",
      `[master] token is empty in ${config.file}: a node credential is made from it; set it (autoscaler init writes one), the same on every proxy`,
      { exitCode: 2 },
    );
  }
  const credential = nodeCredential(config.master.token, name);
  if (args.json) io.stdout.write(JSON.stringify({ name, credential }) + "\n");
  else {
    io.stdout.write(credential + "\n");
    io.stderr.write(
      `This credential speaks for ${name} only. On that node, set it in the ini (mode 0600): [agent] credential = <it>, with [agent] name = ${name}.\n`,
    );
  }
  return 0;
}

/** Arguments of `trust`. */
export interface TrustArgs extends GlobalArgs {
  name: string;
  instanceId?: string;
}

/** Vouch for a node's instance id (its own report, or the one given), so its scale-down may terminate it. */
export async function runTrust(io: Io, args: TrustArgs): Promise<number> {
  const name = String(args.name);
  if (checkName(name)) throw usageError(`${JSON.stringify(name.slice(0, 80))} is not a backend name; expected a name from "autoscaler hosts"`);
  const given = args.instanceId === undefined ? undefined : String(args.instanceId);
  if (given !== undefined && !INSTANCE_ID.test(given))
    throw usageError(`the instance id ${JSON.stringify(given.slice(0, 80))} is not valid; expected 1-128 characters of letters, digits, '.', '_', ':' and '-'`);
  const ctx = await loadContext(io, args);
  const entry = await ctx.store.get(name);
  if (!entry) throw new AutoscalerError("AUTOSCALER_NOT_FOUND", `no backend named ${JSON.stringify(name)} in ${ctx.store.dir}; "autoscaler hosts" lists them`);
  if (entry.source === "manual") {
    throw new AutoscalerError("AUTOSCALER_INPUT_INVALID", `${name} is a hand-added backend: the autoscaler never terminates it (remove it with remove-host)`, {
      exitCode: 2,
    });
  }
  const instanceId = given ?? entry.instanceId;
  if (instanceId === undefined) throw usageError(`${name} reported no instance id; give it: autoscaler trust ${name} <instance-id>`);
  await ctx.store.put({ ...entry, instanceId, instanceIdFrom: "operator" });
  io.stdout.write(`${name}: instance id ${instanceId} is trusted; a scale-down of ${name} runs scale_down_command with INSTANCE_ID=${instanceId}\n`);
  return 0;
}
