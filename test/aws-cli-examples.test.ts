/**
 * The AWS CLI's own documented `aws ec2 run-instances` output (issue 17, point 12), read as the
 * master reads a launch command's output: the examples that Debian's awscli package ships
 * (awscli/examples/ec2/run-instances.rst) give their instance ids and private addresses, and the
 * same response as `--output text`, `table` or `yaml` prints it gets the one warning instead. Those
 * three forms come from the CLI's own formatter (awscli.formatter, the code behind `--output`),
 * run on the documented response: nothing is sent anywhere.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { parseRunInstancesOutput, runInstancesOutputWarning } from "../packages/master/src/actuator.js";
import { runProcess } from "./helpers/process.js";

/** Debian's python3 first (its awscli is the one .ci/run installs), then whatever python3 is on PATH. */
const PYTHONS = ["/usr/bin/python3", "python3"];
const EXAMPLE = path.join("examples", "ec2", "run-instances.rst");

/** An AWS CLI installation that ships its examples: the python that imports it, and its package folder. */
interface AwsCli {
  python: string;
  packageDir: string;
}

/**
 * Where `import awscli` finds the CLI (the python path: dist-packages on Debian), for the first
 * python whose awscli ships the run-instances examples. Never skips: without them, it says how
 * to install them.
 */
async function findAwsCli(): Promise<AwsCli> {
  const tried: string[] = [];
  for (const python of PYTHONS) {
    const r = await runProcess(python, ["-c", "import awscli, os; print(os.path.dirname(awscli.__file__))"], { timeoutMs: 10_000 }).catch((err: Error) => ({
      code: null,
      stdout: "",
      stderr: err.message,
    }));
    const packageDir = r.stdout.trim();
    if (r.code === 0 && existsSync(path.join(packageDir, EXAMPLE))) return { python, packageDir };
    const lastLine = r.stderr.trim().split("\n").pop();
    tried.push(r.code === 0 ? `${python}: ${packageDir} has no ${EXAMPLE}` : `${python}: ${lastLine ? lastLine : `exit code ${r.code}`}`);
  }
  throw new Error(
    `the AWS CLI's examples are not installed (${tried.join("; ")}). ` +
      "Install Debian's awscli package (apt-get install awscli; .ci/run does), which ships them in the python path's dist-packages/awscli/examples/.",
  );
}

/** The literal blocks of an .rst file (the indented text after a paragraph that ends with "::"), dedented. */
function literalBlocks(rst: string): string[] {
  const lines = rst.split("\n");
  const blocks: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.trimEnd().endsWith("::")) continue;
    let j = i + 1;
    while (j < lines.length && lines[j]!.trim() === "") j++;
    const body: string[] = [];
    for (; j < lines.length && (lines[j]!.trim() === "" || /^\s/.test(lines[j]!)); j++) body.push(lines[j]!);
    const indent = Math.min(...body.filter((l) => l.trim() !== "").map((l) => l.length - l.trimStart().length));
    if (body.length > 0)
      blocks.push(
        body
          .map((l) => l.slice(indent))
          .join("\n")
          .trim(),
      );
    i = j - 1;
  }
  return blocks;
}

/** A documented RunInstances response: the JSON the example prints, as written in the .rst, and as each `--output` format prints it. */
interface DocumentedOutput {
  text: string;
  instances: { InstanceId: string; PrivateIpAddress: string }[];
  /** json, text, table and (CLI version 2) yaml. */
  forms: Record<string, string>;
}

function documentedResponses(blocks: string[]): Omit<DocumentedOutput, "forms">[] {
  return blocks.flatMap((text) => {
    try {
      const value = JSON.parse(text) as { Instances?: DocumentedOutput["instances"] };
      return Array.isArray(value.Instances) ? [{ text, instances: value.Instances }] : [];
    } catch {
      return []; // a command, or another file's contents
    }
  });
}

/** The response as `aws ... --output FORMAT` prints it, for each format this CLI has (version 1 has no yaml): its formatter, fed the documented response. */
async function formatted(cli: AwsCli, response: string, formats: string[]): Promise<Record<string, string>> {
  const script = [
    "import io, json, sys",
    "from argparse import Namespace",
    "from awscli import formatter",
    "response = json.load(sys.stdin)",
    "out = {}",
    "for name in sys.argv[1:]:",
    "    try:",
    '        format = formatter.get_formatter(name, Namespace(query=None, color="off"))',
    "    except ValueError:",
    "        continue",
    "    stream = io.StringIO()",
    // A copy each time: a formatter may change the response it is given.
    '    format("RunInstances", json.loads(json.dumps(response)), stream)',
    "    out[name] = stream.getvalue()",
    "json.dump(out, sys.stdout)",
  ].join("\n");
  const r = await runProcess(cli.python, ["-c", script, ...formats], { input: response, env: { PYTHONPATH: path.dirname(cli.packageDir) }, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`the AWS CLI's formatter failed (exit code ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

describe("the AWS CLI's documented run-instances output", () => {
  let cli: AwsCli;
  let commands: string[];
  let outputs: DocumentedOutput[];
  beforeAll(async () => {
    cli = await findAwsCli();
    const blocks = literalBlocks(readFileSync(path.join(cli.packageDir, EXAMPLE), "utf8"));
    commands = blocks.filter((b) => b.startsWith("aws ec2 run-instances"));
    outputs = await Promise.all(
      documentedResponses(blocks).map(async (o) => ({ ...o, forms: await formatted(cli, o.text, ["json", "text", "table", "yaml"]) })),
    );
  });

  test("Debian's awscli ships run-instances examples: commands, and at least one output with instances", () => {
    expect(commands.length).toBeGreaterThan(0);
    expect(outputs.length).toBeGreaterThan(0);
    for (const o of outputs) expect(o.instances.length).toBeGreaterThan(0);
  });

  test("as printed (JSON), and as the CLI's own JSON formatter prints it, each gives every instance's id and private address, and no warning", () => {
    for (const o of outputs) {
      const expected = o.instances.map((i) => ({ instanceId: i.InstanceId, privateAddress: i.PrivateIpAddress }));
      for (const stdout of [o.text, o.forms.json!]) {
        const instances = parseRunInstancesOutput(stdout);
        expect(instances).toEqual(expected);
        for (const command of commands) expect(runInstancesOutputWarning(command, stdout, instances)).toBeUndefined();
      }
    }
  });

  test("as --output text, table or yaml prints it, it gives no instances and one warning that names the output format and the fix", () => {
    for (const o of outputs) {
      const { json: _json, ...forms } = o.forms;
      // Version 1 of the CLI has no yaml; text and table every version has.
      expect(Object.keys(forms)).toEqual(expect.arrayContaining(["text", "table"]));
      for (const [format, stdout] of Object.entries(forms)) {
        // The form really is that of the documented response: its instance id is in it.
        expect(stdout, format).toContain(o.instances[0]!.InstanceId);
        const instances = parseRunInstancesOutput(stdout);
        expect(instances, format).toEqual([]);
        for (const command of commands) {
          const warning = runInstancesOutputWarning(command, stdout, instances);
          expect(warning, `${format} output of: ${command}`).toMatch(/what it printed is not the JSON the master reads instance ids from/);
          expect(warning).toMatch(/AWS_DEFAULT_OUTPUT, text, table or yaml/);
          expect(warning).toMatch(/Add --output json to the command/);
        }
      }
    }
  });

  test("the CLI's text, table or yaml printed by a wrapper script gets the warning too, saying the fix goes in the script", () => {
    for (const o of outputs) {
      const { json: _json, ...forms } = o.forms;
      for (const [format, stdout] of Object.entries(forms)) {
        // A script that logs a line before the CLI's output, as launch scripts do.
        const printed = `launching in eu-west-1a\n${stdout}`;
        const warning = runInstancesOutputWarning("/etc/autoscaler/launch.sh", printed, parseRunInstancesOutput(printed));
        expect(warning, format).toMatch(/^scale_up_command printed aws ec2 run-instances output, but what it printed is not the JSON/);
        expect(warning, format).toMatch(/Add --output json to the command in the script$/);
      }
    }
  });

  test.each([
    ["a global option before ec2", "aws --output text ec2 run-instances --launch-template LaunchTemplateId=lt-1 --count 1:$COUNT"],
    ["a profile and a region", "aws --profile web --region eu-west-1 ec2 run-instances --count 1"],
    ["an option between ec2 and its command", "aws ec2 --no-cli-pager run-instances --count 1"],
  ])("a command that runs run-instances with %s is recognised", (_what, command) => {
    for (const o of outputs) expect(runInstancesOutputWarning(command, o.forms.table!, [])).toMatch(/^scale_up_command runs aws ec2 run-instances, but/);
  });

  test.each([
    ["a wrapper script", "/etc/autoscaler/launch.sh"],
    ["another AWS CLI command", "aws ec2 describe-instances --output text"],
    ["another cloud's CLI", "gcloud compute instances create web-1"],
  ])("other text from %s gets no warning (it is not the CLI's run-instances response)", (_what, command) => {
    const stdout = "Created [https://compute.example/projects/p/zones/z/instances/web-1].\nNAME   ZONE  STATUS\nweb-1  z     RUNNING\n";
    expect(runInstancesOutputWarning(command, stdout, parseRunInstancesOutput(stdout))).toBeUndefined();
  });
});
