/** Cross-field rules: each a small function that adds errors or warnings. Single-key checks live in the schema. */
import { isLoopbackHost } from "../validate.js";
import type { Config, ConfigProblem } from "./load.js";

type Check = (config: Config, errors: ConfigProblem[], warnings: ConfigProblem[]) => void;

/** A cross-field rule and the `section.key`s it reads: it runs only when all of them parsed. */
export interface Rule {
  keys: readonly string[];
  check: Check;
}

const minNotAboveMax: Check = (c, errors) => {
  const { min_nodes, max_nodes } = c.scaling;
  if (min_nodes > max_nodes) {
    errors.push({ subject: "scaling.min_nodes", message: `${min_nodes} is greater than scaling.max_nodes (${max_nodes}); expected min_nodes <= max_nodes` });
  }
};

const thresholdsOrdered: Check = (c, errors) => {
  const { scale_down_threshold: down, scale_up_threshold: up } = c.scaling;
  if (down >= up) {
    errors.push({
      subject: "scaling.scale_down_threshold",
      message: `${down} is not below scaling.scale_up_threshold (${up}); expected scale_down_threshold < scale_up_threshold`,
    });
  }
};

const serverLineHasPlaceholders: Check = (c, errors) => {
  const line = c.haproxy.server_line;
  const hasName = /\$\{?(NAME|SERVER)\b/.test(line);
  const hasAddress = /\$\{?(IP|HOST)\b/.test(line);
  if (!hasName || !hasAddress) {
    errors.push({
      subject: "haproxy.server_line",
      message: `${JSON.stringify(line)} is not valid; expected a line with $NAME (or $SERVER) and $IP (or $HOST), such as "server $NAME $IP:$PORT check"`,
    });
  }
};

const tokenSet: Check = (c, _errors, warnings) => {
  if (c.master.token === "" && c.agent.credential === "") {
    warnings.push({ subject: "master.token", message: "is empty: the master refuses every agent until it is set (autoscaler init writes a random one)" });
  } else if (c.master.token.length < 16) {
    warnings.push({ subject: "master.token", message: "is shorter than 16 characters; use a long random secret (autoscaler init writes one)" });
  }
};

const listenPortsDistinct: Check = (c, errors) => {
  const a = c.master.listen;
  const b = c.master.metrics_listen;
  if (a && b && a.port === b.port && a.host === b.host) {
    errors.push({ subject: "master.metrics_listen", message: `uses the same address as master.listen (${a.host}:${a.port}); expected another port` });
  }
};

const webhookListen: Check = (c, errors, warnings) => {
  const w = c.master.webhook_listen;
  if (!w) return;
  for (const [key, other] of [
    ["master.listen", c.master.listen],
    ["master.metrics_listen", c.master.metrics_listen],
  ] as const) {
    if (other && other.port === w.port && (other.host === w.host || !isLoopbackHost(w.host)))
      errors.push({ subject: "master.webhook_listen", message: `uses the same port as ${key} (${other.host}:${other.port}); expected another port` });
  }
  if (!isLoopbackHost(w.host))
    warnings.push({
      subject: "master.webhook_listen",
      message: `${w.host}:${w.port} serves plain HTTP beyond this machine, and a webhook's URL is its secret; put HAProxy's TLS frontend in front and listen on 127.0.0.1 (README: "Policies, webhooks and schedules")`,
    });
};

const clusterPairs: Check = (c, errors) => {
  const { cert, key, user, password, ca, etcd } = c.cluster;
  if ((cert === "") !== (key === "")) {
    errors.push({
      subject: cert === "" ? "cluster.cert" : "cluster.key",
      message: "is set without its pair; expected both cluster.cert and cluster.key, or neither",
    });
  }
  if ((user === "") !== (password === "")) {
    errors.push({
      subject: user === "" ? "cluster.user" : "cluster.password",
      message: "is set without its pair; expected both cluster.user and cluster.password, or neither",
    });
  }
  const tls = ca !== "" || cert !== "";
  const schemes = new Set(etcd.map((e) => e.slice(0, e.indexOf(":"))));
  if (tls && schemes.has("http")) {
    errors.push({
      subject: "cluster.etcd",
      message: "mixes TLS settings (cluster.ca, cluster.cert) with http:// endpoints; expected https:// endpoints with TLS",
    });
  } else if (schemes.size > 1) {
    errors.push({ subject: "cluster.etcd", message: "mixes http:// and https:// endpoints; expected one scheme for every endpoint" });
  }
};

const resourcesNeedMinimum: Check = (c, _errors, warnings) => {
  if (c.scaling.mode === "resources" && c.scaling.min_available === 0)
    warnings.push({
      subject: "scaling.min_available",
      message: "is 0 in resources mode: nothing has to stay free, so the cluster only keeps min_nodes; set the resource units to keep free",
    });
};

/** Every cross-field rule, in the order their messages print. */
/** The AWS keys come as a pair (a session token only with both): one alone would fail at the first launch, billed or not. */
const awsKeysPaired: Check = (c, errors) => {
  const { aws_access_key: id, aws_secret_key: secret, session_token: token } = c.aws;
  if ((id === "") !== (secret === "")) {
    const [set, missing] = id ? ["aws.aws_access_key", "aws.aws_secret_key"] : ["aws.aws_secret_key", "aws.aws_access_key"];
    errors.push({
      subject: missing,
      message: `is empty while ${set} is set; expected both keys, or neither (then the proxy's instance role, AWS_PROFILE or a credential_process applies)`,
    });
  }
  if (token !== "" && (id === "" || secret === "")) {
    errors.push({
      subject: "aws.session_token",
      message: "is set without aws.aws_access_key and aws.aws_secret_key; expected it with both keys of the temporary credentials it belongs to",
    });
  }
};

export const CROSS_FIELD_RULES: readonly Rule[] = [
  { keys: ["aws.aws_access_key", "aws.aws_secret_key", "aws.session_token"], check: awsKeysPaired },
  { keys: ["scaling.min_nodes", "scaling.max_nodes"], check: minNotAboveMax },
  { keys: ["scaling.scale_down_threshold", "scaling.scale_up_threshold"], check: thresholdsOrdered },
  { keys: ["haproxy.server_line"], check: serverLineHasPlaceholders },
  { keys: ["master.token", "agent.credential"], check: tokenSet },
  { keys: ["master.listen", "master.metrics_listen"], check: listenPortsDistinct },
  { keys: ["master.webhook_listen", "master.listen", "master.metrics_listen"], check: webhookListen },
  { keys: ["cluster.etcd", "cluster.ca", "cluster.cert", "cluster.key", "cluster.user", "cluster.password"], check: clusterPairs },
  { keys: ["scaling.mode", "scaling.min_available"], check: resourcesNeedMinimum },
];
