/**
 * The actuator's pure parts (SPEC "Settings", behaviour 4): the environment a scale command
 * runs with, what `aws ec2 run-instances` printed, and the output kept in the event log.
 * Values from nodes reach a command only through the environment, never spliced into it.
 */
import { redact, type Config } from "@autoscaler/shared";

/** What a scale-up or scale-down is about. */
export type ScaleAction =
  { kind: "scale_up"; count: number; joinCredential?: string | undefined } | { kind: "scale_down"; instanceId: string; nodeName: string; nodeAddress: string };

/**
 * The variables a scale command gets on top of the master's environment: COUNT for a
 * scale-up; INSTANCE_ID, NODE_NAME and NODE_ADDRESS for a scale-down; the AWS variables only
 * when they are set in the ini, where they override the master's own environment (otherwise the
 * instance role or the operator's own setup applies).
 */
export function commandEnvironment(config: Pick<Config, "aws" | "awsRegion">, action: ScaleAction): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.aws.aws_access_key) env.AWS_ACCESS_KEY_ID = config.aws.aws_access_key;
  if (config.aws.aws_secret_key) env.AWS_SECRET_ACCESS_KEY = config.aws.aws_secret_key;
  if (config.aws.session_token) env.AWS_SESSION_TOKEN = config.aws.session_token;
  // Both names: the AWS CLI v2 prefers AWS_REGION, the SDKs (and scripts built on them) read only it.
  if (config.awsRegion) {
    env.AWS_REGION = config.awsRegion;
    env.AWS_DEFAULT_REGION = config.awsRegion;
  }
  if (action.kind === "scale_up") {
    env.COUNT = String(action.count);
    if (action.joinCredential) env.AUTOSCALER_JOIN_CREDENTIAL = action.joinCredential;
  } else {
    env.INSTANCE_ID = action.instanceId;
    env.NODE_NAME = action.nodeName;
    env.NODE_ADDRESS = action.nodeAddress;
  }
  return env;
}

/** An instance a launch command reported, to match the node that registers later. */
export interface LaunchedInstance {
  instanceId: string;
  privateAddress: string | undefined;
}

const INSTANCE_ID = /^i-[0-9a-f]{8,32}$/;

/**
 * Read `aws ec2 run-instances` JSON output: `{"Instances": [{"InstanceId", "PrivateIpAddress"}]}`.
 * Anything else (plain text, another tool's output, a shape that does not fit) gives an empty
 * list: the launch is then matched by "any new node" instead. Only well-formed ids and IPv4
 * addresses are kept, since they end up in hosts.d and in later commands' environment.
 */
export function parseRunInstancesOutput(stdout: string): LaunchedInstance[] {
  const parsed = findJsonObject(stdout);
  const instances = (parsed as { Instances?: unknown } | undefined)?.Instances;
  if (!Array.isArray(instances)) return [];
  const out: LaunchedInstance[] = [];
  for (const i of instances) {
    const id = (i as { InstanceId?: unknown })?.InstanceId;
    const ip = (i as { PrivateIpAddress?: unknown })?.PrivateIpAddress;
    if (typeof id !== "string" || !INSTANCE_ID.test(id)) continue;
    const address = typeof ip === "string" && /^(\d{1,3})(\.\d{1,3}){3}$/.test(ip) && ip.split(".").every((p) => Number(p) <= 255) ? ip : undefined;
    out.push({ instanceId: id, privateAddress: address });
  }
  return out;
}

/** `aws ec2 run-instances`, global options before `ec2` included (`aws --profile p --output text ec2 run-instances`). */
const RUN_INSTANCES_COMMAND = /\baws\s(?:.*\s)?ec2\s(?:.*\s)?run-instances\b/;

/**
 * The AWS CLI's RunInstances response as `--output text`, `table` or `yaml` prints it (an
 * INSTANCES row; the table's title; yaml's top-level list), from whatever command printed it.
 */
const RUN_INSTANCES_OTHER_FORMAT = [/^INSTANCES\t/m, /^\|\s+RunInstances\s+\|\s*$/m, /^Instances:\s*$/m];

/**
 * Said once when a launch printed no instance ids although it ran `aws ec2 run-instances`, or
 * printed that command's response in another format (a wrapper script): the profile's `output`,
 * or AWS_DEFAULT_OUTPUT, is text, table or yaml. The launch then waits for "any new node"
 * instead of its instance ids, and nothing else would say why.
 */
export function runInstancesOutputWarning(command: string, stdout: string, instances: readonly LaunchedInstance[]): string | undefined {
  if (instances.length > 0 || stdout.trim() === "") return undefined;
  const runs = RUN_INSTANCES_COMMAND.test(command);
  if (!runs && !RUN_INSTANCES_OTHER_FORMAT.some((p) => p.test(stdout))) return undefined;
  return (
    `scale_up_command ${runs ? "runs aws ec2 run-instances" : "printed aws ec2 run-instances output"}, but what it printed is not the JSON the master reads instance ids from ` +
    "(is the profile's output, or AWS_DEFAULT_OUTPUT, text, table or yaml?): its nodes are matched as any new node instead. " +
    `Add --output json to the command${runs ? "" : " in the script"}`
  );
}

/**
 * The JSON object a command printed among other lines: a wrapper script may log before or
 * after it. Tried from each line that starts with `{` to each line that ends with `}`, the
 * first that parses and has `Instances` wins.
 */
function findJsonObject(text: string): unknown {
  const lines = text.split("\n");
  const starts = lines.flatMap((l, i) => (l.trimStart().startsWith("{") ? [i] : []));
  const ends = lines.flatMap((l, i) => (l.trimEnd().endsWith("}") ? [i] : [])).reverse();
  for (const a of starts.slice(0, 20)) {
    for (const b of ends.slice(0, 20)) {
      if (b < a) continue;
      try {
        const value = JSON.parse(lines.slice(a, b + 1).join("\n")) as unknown;
        if (value && typeof value === "object" && "Instances" in value) return value;
      } catch {
        // not this span
      }
    }
  }
  return undefined;
}

/** A command's output as the event log keeps it: secrets redacted, at most `maxChars` from the end, one string. */
export function summariseOutput(stdout: string, stderr: string, secrets: readonly string[], maxChars = 2000): string {
  const joined = [stdout.trim(), stderr.trim() ? `stderr: ${stderr.trim()}` : ""].filter(Boolean).join("\n");
  const clean = redact(joined, secrets);
  return clean.length > maxChars ? `…${clean.slice(clean.length - maxChars)}` : clean;
}
