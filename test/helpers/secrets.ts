/**
 * The suite-wide secrets check (SPEC: AWS keys and the token are "never logged, redacted in
 * status"). Every installation the helpers make carries the KNOWN fake AWS keys below unless a
 * test sets its own, every token the helpers generate or read is registered here, and every
 * output the suite sees (daemon logs, `runCli` and `runProcess` results) is recorded. Each
 * `Scope.cleanup()` then looks for every registered secret in the outputs recorded since the last
 * check and fails the test with where it leaked. Only references are kept and each output is
 * scanned once, so the overhead is a few `includes` per output.
 */

/** The fake AWS access key every test installation carries (shaped like a real one, so redaction is tested on a realistic value). */
export const KNOWN_AWS_ACCESS_KEY = "AKIAKNOWNTESTKEY7Q2Z";
/** The fake AWS secret key every test installation carries. */
export const KNOWN_AWS_SECRET_KEY = "kn0wnTestSecret/q8Zr+Yv3Lp0aXw1EXAMPLEKEY";
/** The fake AWS session token every test installation carries (temporary credentials). */
export const KNOWN_AWS_SESSION_TOKEN = "FwoGZXIvYXdzKnownTestSessionToken9x2EXAMPLE";
/** The `--set` settings that put the known keys in an ini; a test's own later `--set` wins. */
export const KNOWN_AWS_SETTINGS = [
  `aws.aws_access_key=${KNOWN_AWS_ACCESS_KEY}`,
  `aws.aws_secret_key=${KNOWN_AWS_SECRET_KEY}`,
  `aws.session_token=${KNOWN_AWS_SESSION_TOKEN}`,
];

/** One output the suite saw: where it came from, and its text (a function for a daemon's log that is still growing). */
interface RecordedOutput {
  where: string;
  text: () => string;
  /** The scope that owns it (a daemon it tracks), or undefined for one-shot outputs (any cleanup checks those). */
  owner: object | undefined;
}

const secrets = new Map<string, string>([
  [KNOWN_AWS_ACCESS_KEY, "the known AWS access key"],
  [KNOWN_AWS_SECRET_KEY, "the known AWS secret key"],
  [KNOWN_AWS_SESSION_TOKEN, "the known AWS session token"],
]);
let outputs: RecordedOutput[] = [];
const optedOut = new WeakSet<object>();

/** Register a value that no output may contain, with a label for the failure message (a token, say). Values under 8 characters are ignored. */
export function registerSecret(value: string, label: string): void {
  if (value.length >= 8 && !secrets.has(value)) secrets.set(value, label);
}

/** Record an output to check at the next cleanup: a string (one-shot) or a function (a daemon's growing log, owned by `owner`). */
export function recordOutput(where: string, text: string | (() => string), owner?: object): void {
  outputs.push({ where, text: typeof text === "string" ? () => text : text, owner });
}

/** Let this scope's outputs, and the one-shot outputs checked at its cleanup, contain secrets: for a test that shows one on purpose (there should be none). */
export function allowSecretsInOutput(owner: object): void {
  optedOut.add(owner);
}

/** Where each registered secret appears in `text`, as "label" strings. */
export function secretsIn(text: string): string[] {
  const found: string[] = [];
  for (const [value, label] of secrets) {
    if (text.includes(value) || text.includes(JSON.stringify(value).slice(1, -1))) found.push(label);
  }
  return found;
}

/** `text` with every registered secret replaced by `<label>`, so a failure message does not spread the value further. */
function mask(text: string): string {
  let out = text;
  for (const [value, label] of secrets) out = out.split(value).join(`<${label}>`);
  return out;
}

/**
 * Check the outputs owned by `owner` and every one-shot output recorded so far, then forget them.
 * Returns one line per leak: which secret, where, and the line it is on.
 */
export function checkRecordedOutputs(owner: object): string[] {
  const mine = outputs.filter((o) => o.owner === owner || o.owner === undefined);
  outputs = outputs.filter((o) => !mine.includes(o));
  if (optedOut.has(owner)) return [];
  const leaks: string[] = [];
  for (const o of mine) {
    const text = o.text();
    for (const label of secretsIn(text)) {
      const line = text.split("\n").find((l) => secretsIn(l).includes(label)) ?? "";
      leaks.push(`${label} appears in ${mask(o.where)}: ${mask(line).slice(0, 400)}`);
    }
  }
  return leaks;
}
