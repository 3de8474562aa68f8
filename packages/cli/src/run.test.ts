import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { Io } from "./io.js";
import { run } from "./run.js";

const CLI_PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../package.json");

/** A stream that keeps what is written to it. */
function sink() {
  const chunks: string[] = [];
  return { write: (s: string) => chunks.push(s), text: () => chunks.join("") };
}

describe("run", () => {
  let dir: string;
  let config: string;
  let stdout: ReturnType<typeof sink>;
  let stderr: ReturnType<typeof sink>;
  let io: Io;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-run-"));
    config = path.join(dir, "autoscaler.ini");
    stdout = sink();
    stderr = sink();
    // A clean environment: no AUTOSCALER_CONFIG from the outside, HOME inside the temp folder.
    io = { stdout, stderr, env: { HOME: dir, PATH: process.env.PATH }, cwd: dir };
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test.each([
    ["no proxies in haproxy.servers", [], /haproxy\.servers is empty/],
    [
      "a key file that does not exist",
      ["haproxy.servers=127.0.0.1", "haproxy.ssh_command=ssh -i missing_key autoscaler@$HOST"],
      /cannot read the SSH key .*missing_key/,
    ],
  ])("agent with %s exits 78 before connecting anywhere, naming the setting", async (_what, settings, message) => {
    expect(await run(["init", "--config", config, "--set", "master.state_dir=state", ...settings.flatMap((x) => ["--set", x])], io)).toBe(0);
    expect(await run(["agent", "--config", config], io)).toBe(78);
    expect(stderr.text()).toMatch(message);
  });

  test("--help prints the commands on stdout and exits 0", async () => {
    expect(await run(["--help"], io)).toBe(0);
    expect(stdout.text()).toMatch(/autoscaler <command>/);
    for (const command of ["init", "add-host", "remove-host", "hosts", "generate", "check-config"]) expect(stdout.text()).toContain(command);
    expect(stderr.text()).toBe("");
  });

  test("add-host --help describes its arguments and exits 0", async () => {
    expect(await run(["add-host", "--help"], io)).toBe(0);
    expect(stdout.text()).toMatch(/--name/);
    expect(stdout.text()).toMatch(/--no-reload|--reload/);
  });

  test("--version prints the package version and exits 0", async () => {
    const { version } = JSON.parse(await fs.readFile(CLI_PACKAGE, "utf8")) as { version: string };
    expect(await run(["--version"], io)).toBe(0);
    expect(stdout.text().trim()).toBe(version);
  });

  test.each([
    ["an unknown command", ["frobnicate"]],
    ["no command", []],
    ["an unknown option", ["hosts", "--bogus", "--config", "autoscaler.ini"]],
    ["add-host without its port", ["add-host", "10.0.0.5", "--config", "autoscaler.ini"]],
  ])("%s is bad usage: exit 2, a message on stderr, nothing on stdout", async (_what, argv) => {
    expect(await run(argv, io)).toBe(2);
    expect(stderr.text()).not.toBe("");
    expect(stdout.text()).toBe("");
  });

  test.each([
    ["a port above 65535", ["add-host", "10.0.0.5", "99999"], /port "99999" is outside 1-65535/],
    ["a port that is a word", ["add-host", "10.0.0.5", "http"], /port "http" is not a port number/],
    ["a host with a space", ["add-host", "bad host", "80"], /host "bad host" contains white space/],
    ["a name with a slash", ["add-host", "10.0.0.5", "80", "--name", "a/b"], /--name "a\/b" is not a valid name/],
  ])("add-host with %s exits 2, names the value and writes nothing", async (_what, argv, message) => {
    expect(await run([...argv, "--config", config], io)).toBe(2);
    expect(stderr.text()).toMatch(message);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  test.each([
    [
      "a missing argument",
      ["add-host"],
      /^error: Not enough non-option arguments: got 0, need at least 2\nusage: autoscaler add-host <host> <port>\nsee: autoscaler add-host --help\n$/,
    ],
    [
      "a mistyped command",
      ["stauts"],
      /^error: Unknown argument: stauts\nusage: autoscaler <command> \[options\]\nDid you mean status\?\nsee: autoscaler --help\n$/,
    ],
    ["no command", [], /^error: name a command; see --help\n/],
  ])("%s: exit 2 with the error and the usage line, not the whole help", async (_what, argv, expected) => {
    expect(await run(argv, io)).toBe(2);
    expect(stderr.text()).toMatch(expected);
    expect(stderr.text().split("\n").length).toBeLessThanOrEqual(6);
    expect(stdout.text()).toBe("");
  });

  test("a missing config file exits 78 and names it", async () => {
    expect(await run(["hosts", "--config", config], io)).toBe(78);
    expect(stderr.text()).toContain(config);
    expect(stderr.text()).toMatch(/autoscaler init/);
  });

  test("a bad config exits 78 with one line per problem", async () => {
    await fs.writeFile(config, "[scaling]\nmin_nodes = 5\nmax_nodes = 2\n", { mode: 0o600 });
    expect(await run(["hosts", "--config", config], io)).toBe(78);
    expect(stderr.text()).toMatch(/scaling\.min_nodes: 5 is greater than scaling\.max_nodes \(2\)/);
  });

  test("AUTOSCALER_CONFIG names the config when --config is absent", async () => {
    io.env.AUTOSCALER_CONFIG = "elsewhere.ini";
    expect(await run(["hosts"], io)).toBe(78);
    expect(stderr.text()).toContain(path.join(dir, "elsewhere.ini"));
  });

  describe("in an installation made by init", () => {
    const initArgs = () => [
      "init",
      "--config",
      config,
      "--set",
      "haproxy.config=haproxy.cfg",
      "--set",
      'haproxy.check_command=test -s "$CONFIG"',
      "--set",
      "master.state_dir=state",
    ];

    test("init writes the ini with mode 0600, hosts.d and the template", async () => {
      expect(await run(initArgs(), io)).toBe(0);
      expect((await fs.stat(config)).mode & 0o777).toBe(0o600);
      expect((await fs.stat(path.join(dir, "hosts.d"))).isDirectory()).toBe(true);
      expect(await fs.readFile(path.join(dir, "haproxy.cfg.tmpl"), "utf8")).toContain("$SERVERS");
      const ini = await fs.readFile(config, "utf8");
      expect(ini).toMatch(/^config = haproxy\.cfg$/m);
      expect(ini).toMatch(/^token = [A-Za-z0-9_-]{40,}$/m);
      expect(stdout.text()).toMatch(/Next steps/);
    });

    test("init refuses to overwrite without --force and leaves the ini byte-identical", async () => {
      expect(await run(initArgs(), io)).toBe(0);
      const before = await fs.readFile(config);
      expect(await run(initArgs(), io)).toBe(1);
      expect(stderr.text()).toMatch(/already exists.*--force/);
      expect(await fs.readFile(config)).toEqual(before);
    });

    test("init with an unknown --set exits 2 and writes nothing", async () => {
      expect(await run(["init", "--config", config, "--set", "haproxy.nonsense=1"], io)).toBe(2);
      expect(stderr.text()).toMatch(/haproxy\.nonsense: no such setting/);
      expect(await fs.readdir(dir)).toEqual([]);
    });

    test("remove-host of an IPv6 host:port written without brackets exits 1 and says how to write it", async () => {
      expect(await run(initArgs(), io)).toBe(0);
      expect(await run(["add-host", "2001:db8::6", "80", "--no-reload", "--config", config], io)).toBe(0);
      expect(await run(["remove-host", "2001:db8::6:80", "--no-reload", "--config", config], io)).toBe(1);
      expect(stderr.text()).toMatch(
        /no backend named or at "2001:db8::6:80" .* \(for an IPv6 host and port, write \[host\]:port, such as \[2001:db8::6\]:80\)/,
      );
      expect(await run(["remove-host", "[2001:db8::6]:80", "--no-reload", "--config", config], io)).toBe(0);
    });

    test("init with settings that break a rule exits 78 and writes nothing", async () => {
      expect(await run(["init", "--config", config, "--set", "master.listen=0.0.0.0:7300"], io)).toBe(78);
      expect(stderr.text()).toMatch(/master\.listen/);
      expect(await fs.readdir(dir)).toEqual([]);
    });

    test("add-host writes an entry and the checked config; hosts says its server line is in haproxy.cfg, and not yet for an entry written by hand", async () => {
      expect(await run(initArgs(), io)).toBe(0);
      expect(await run(["add-host", "127.0.0.1", "8080", "--name", "web-1", "--no-reload", "--config", config], io)).toBe(0);
      expect(JSON.parse(await fs.readFile(path.join(dir, "hosts.d", "web-1.json"), "utf8"))).toMatchObject({
        name: "web-1",
        address: "127.0.0.1",
        port: 8080,
        source: "manual",
      });
      expect(await fs.readFile(path.join(dir, "haproxy.cfg"), "utf8")).toMatch(/^ {4}server web-1 127\.0\.0\.1:8080 check$/m);

      const listed = sink();
      expect(await run(["hosts", "--json", "--config", config], { ...io, stdout: listed })).toBe(0);
      const { hosts } = JSON.parse(listed.text()) as { hosts: { name: string; in_config: boolean; source: string }[] };
      expect(hosts).toEqual([expect.objectContaining({ name: "web-1", in_config: true, source: "manual" })]);

      // An entry written straight into hosts.d: not in haproxy.cfg until a generate (or the master) renders it.
      await fs.writeFile(path.join(dir, "hosts.d", "web-2.json"), JSON.stringify({ address: "127.0.0.2", port: 8080 }));
      const text = sink();
      expect(await run(["hosts", "--config", config], { ...io, stdout: text })).toBe(0);
      expect(text.text()).toMatch(/^NAME\s+ADDRESS\s+PORT\s+SOURCE\s+IN HAPROXY\.CFG\s+ADDED$/m);
      expect(text.text()).toMatch(/^web-1\s+127\.0\.0\.1\s+8080\s+manual\s+yes\s/m);
      expect(text.text()).toMatch(/^web-2\s+127\.0\.0\.2\s+8080\s+manual\s+not yet\s/m);
    });

    test("add-host of an address already present exits 1 and changes nothing", async () => {
      expect(await run(initArgs(), io)).toBe(0);
      expect(await run(["add-host", "127.0.0.1", "8080", "--name", "web-1", "--no-reload", "--config", config], io)).toBe(0);
      expect(await run(["add-host", "127.0.0.1", "8080", "--name", "web-2", "--no-reload", "--config", config], io)).toBe(1);
      expect(stderr.text()).toMatch(/127\.0\.0\.1:8080 is already in hosts\.d as "web-1"/);
      expect(await fs.readdir(path.join(dir, "hosts.d"))).toEqual(["web-1.json"]);
    });
  });
});
