import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createShellRunner, parseConfig } from "@autoscaler/shared";
import { commandEnvironment, parseRunInstancesOutput, runInstancesOutputWarning, summariseOutput } from "./actuator.js";

const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const withAws = parseConfig(
  `[aws]\naws_access_key = AKIAEXAMPLE000001\naws_secret_key = ${SECRET}\naws_default_region = eu-west-1\n[master]\ntoken = ${"t".repeat(32)}\n`,
  "/x/a.ini",
  { home: "/root" },
).config!;
const withoutAws = parseConfig(`[master]\ntoken = ${"t".repeat(32)}\n`, "/x/a.ini", { home: "/root" }).config!;

describe("commandEnvironment", () => {
  test("a scale-up gets COUNT and the AWS variables from the ini (the original tool's region name too)", () => {
    expect(commandEnvironment(withAws, { kind: "scale_up", count: 2 })).toEqual({
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLE000001",
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_REGION: "eu-west-1",
      AWS_DEFAULT_REGION: "eu-west-1",
      COUNT: "2",
    });
  });
  test("what a real command receives: the ini's keys, session token and region (under both names) over the master's own environment", async () => {
    const temporary = parseConfig(
      `[aws]
aws_access_key = ASIAEXAMPLE000002
aws_secret_key = ${SECRET}
session_token = FwoGZXIvYXdzEXAMPLETOKEN
region = us-east-2
[master]
token = ${"t".repeat(32)}
`,
      "/x/a.ini",
      { home: "/root" },
    ).config!;
    const masterEnv = { PATH: process.env.PATH, AWS_REGION: "eu-central-1", AWS_DEFAULT_REGION: "eu-central-1", AWS_SESSION_TOKEN: "old", AWS_PROFILE: "ops" };
    const print = 'printf "%s|%s|%s|%s|%s|%s" "$AWS_ACCESS_KEY_ID" "$AWS_SESSION_TOKEN" "$AWS_REGION" "$AWS_DEFAULT_REGION" "$AWS_PROFILE" "$COUNT"';
    const withKeys = await createShellRunner(masterEnv).run(print, {
      env: commandEnvironment(temporary, { kind: "scale_up", count: 3 }),
      cwd: os.tmpdir(),
      timeoutMs: 5000,
    });
    expect(withKeys.stdout).toBe("ASIAEXAMPLE000002|FwoGZXIvYXdzEXAMPLETOKEN|us-east-2|us-east-2|ops|3");
    // Nothing in the ini: the master's own setup (a profile, its region) reaches the command unchanged.
    const without = await createShellRunner(masterEnv).run(print, {
      env: commandEnvironment(withoutAws, { kind: "scale_up", count: 1 }),
      cwd: os.tmpdir(),
      timeoutMs: 5000,
    });
    expect(without.stdout).toBe("|old|eu-central-1|eu-central-1|ops|1");
  });
  test("without AWS keys in the ini, no AWS variable is set (an instance role applies)", () => {
    expect(commandEnvironment(withoutAws, { kind: "scale_up", count: 1 })).toEqual({ COUNT: "1" });
  });
  test("a scale-down gets the node's values, and no COUNT", () => {
    expect(commandEnvironment(withoutAws, { kind: "scale_down", instanceId: "i-0abc12345", nodeName: "web-3", nodeAddress: "10.0.1.13" })).toEqual({
      INSTANCE_ID: "i-0abc12345",
      NODE_NAME: "web-3",
      NODE_ADDRESS: "10.0.1.13",
    });
  });
});

describe("values from nodes never become shell code", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "actuator-test-"));
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  test("a node name full of shell syntax reaches the real /bin/sh command as a plain value", async () => {
    const marker = path.join(dir, "pwned");
    const hostile = `web-1; touch ${marker} $(touch ${marker}) \`touch ${marker}\``;
    const env = commandEnvironment(withoutAws, { kind: "scale_down", instanceId: "i-0abc12345", nodeName: hostile, nodeAddress: "10.0.1.13" });
    const result = await createShellRunner().run('printf "%s|%s" "$NODE_NAME" "$INSTANCE_ID"', { env, cwd: dir, timeoutMs: 5000 });
    expect(result.stdout).toBe(`${hostile}|i-0abc12345`);
    await expect(fs.access(marker)).rejects.toThrow();
  });
});

describe("parseRunInstancesOutput", () => {
  const sample = JSON.stringify(
    {
      Groups: [],
      Instances: [
        { InstanceId: "i-0123456789abcdef0", PrivateIpAddress: "10.0.1.21", State: { Name: "pending" } },
        { InstanceId: "i-0fedcba9876543210", PrivateIpAddress: "10.0.1.22" },
      ],
      OwnerId: "123456789012",
      ReservationId: "r-0123456789abcdef0",
    },
    null,
    4,
  );

  test("reads every instance id and private address of real run-instances JSON", () => {
    expect(parseRunInstancesOutput(sample)).toEqual([
      { instanceId: "i-0123456789abcdef0", privateAddress: "10.0.1.21" },
      { instanceId: "i-0fedcba9876543210", privateAddress: "10.0.1.22" },
    ]);
  });
  test("text printed before the JSON (a wrapper script's own line) is skipped", () => {
    expect(parseRunInstancesOutput(`launching 2 nodes\n${sample}`)).toHaveLength(2);
    // A wrapper that logs a brace before and a line after the JSON, and pretty-printed JSON.
    expect(parseRunInstancesOutput(`log {step 1}\n${JSON.stringify(JSON.parse(sample), null, 2)}\ndone in 3 s\n`)).toHaveLength(2);
  });
  test.each([
    ["plain text", "started node web-7"],
    ["empty output", ""],
    ["JSON of another shape", JSON.stringify({ id: "droplet-1" })],
    ["broken JSON", '{"Instances": [{"InstanceId": "i-0123'],
  ])("%s gives no instances (the launch is then matched by any new node)", (_what, out) => {
    expect(parseRunInstancesOutput(out)).toEqual([]);
  });
  test("an id or address that is not well formed is dropped, never passed on", () => {
    const hostile = JSON.stringify({
      Instances: [
        { InstanceId: "i-1; reboot", PrivateIpAddress: "10.0.0.1" },
        { InstanceId: "i-0123456789abcdef0", PrivateIpAddress: "10.0.0.1\nserver evil 1.2.3.4:80" },
        { InstanceId: "i-0123456789abcdef1", PrivateIpAddress: "999.1.1.1" },
      ],
    });
    expect(parseRunInstancesOutput(hostile)).toEqual([
      { instanceId: "i-0123456789abcdef0", privateAddress: undefined },
      { instanceId: "i-0123456789abcdef1", privateAddress: undefined },
    ]);
  });
});

describe("summariseOutput", () => {
  test("secrets are redacted and stderr is marked", () => {
    expect(summariseOutput(`using key ${SECRET}`, "warning: slow", [SECRET])).toBe("using key [redacted]\nstderr: warning: slow");
  });
  test("long output keeps its end, where errors usually are", () => {
    const out = summariseOutput("x".repeat(5000) + "THE ERROR", "", [], 100);
    expect(out.length).toBe(101);
    expect(out.endsWith("THE ERROR")).toBe(true);
    expect(out.startsWith("…")).toBe(true);
  });
});

describe("runInstancesOutputWarning", () => {
  // `aws ec2 run-instances --output text` prints tab-separated rows such as these (AWS CLI v2).
  const text = [
    "123456789012\tr-0123456789abcdef0",
    "INSTANCES\t0\tx86_64\t\tFalse\tTrue\txen\tami-0abcdef1234567890\ti-0123456789abcdef0\tt3.micro\tweb\t2026-12-05T08:00:00+00:00\tip-10-0-1-21.ec2.internal\t10.0.1.21",
    "STATE\t0\tpending",
  ].join("\n");
  const command = 'aws ec2 run-instances --launch-template LaunchTemplateName=web --count "1:$COUNT"';
  test.each([
    ["text output of aws ec2 run-instances", command, text, true],
    ["table output", command, "-----------------\n|  RunInstances  |\n+----------------+\n", true],
    [
      "the JSON it reads",
      command + " --output json",
      JSON.stringify({ Instances: [{ InstanceId: "i-0123456789abcdef0", PrivateIpAddress: "10.0.1.21" }] }),
      false,
    ],
    ["nothing printed", command, "", false],
    ["the CLI's text printed by a wrapper script", "/etc/autoscaler/launch.sh", text, true],
    ["a wrapper script's own text", "/etc/autoscaler/launch.sh", "launched 1 node in eu-west-1a\n", false],
  ])("%s: warned %s", (_what, cmd, stdout, warned) => {
    const message = runInstancesOutputWarning(cmd, stdout, parseRunInstancesOutput(stdout));
    expect(message !== undefined).toBe(warned);
    if (message) expect(message).toMatch(/Add --output json to the command/);
  });
});
