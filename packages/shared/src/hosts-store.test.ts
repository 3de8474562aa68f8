import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { AutoscalerError } from "./errors.js";
import { checkHostEntry, createHostsStore, entryAddress, MAX_HOST_FILE_BYTES, parseHostFile, type HostEntry } from "./hosts-store.js";

/** The built package, for tests that need real separate processes. */
const DIST_INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/index.js");

const MTIME = new Date("2024-05-06T07:08:09.000Z");

describe("parseHostFile", () => {
  test.each([
    [
      "a minimal hand-written file: name from the file name, source manual, time from mtime",
      "web-7.json",
      '{"address":"10.0.0.7","port":80}',
      { name: "web-7", address: "10.0.0.7", port: 80, source: "manual", addedAt: MTIME.toISOString() },
    ],
    [
      "a full file as the store writes it",
      "node-1.json",
      JSON.stringify({ name: "node-1", address: "10.0.1.1", port: 8080, source: "agent", added_at: "2024-01-02T03:04:05.000Z", instance_id: "i-0abc123" }),
      { name: "node-1", address: "10.0.1.1", port: 8080, source: "agent", addedAt: "2024-01-02T03:04:05.000Z", instanceId: "i-0abc123" },
    ],
    [
      "host as another word for address, and a port written as a string",
      "web-8.json",
      '{"host":"web8.example.com","port":"8080"}',
      { name: "web-8", address: "web8.example.com", port: 8080, source: "manual", addedAt: MTIME.toISOString() },
    ],
    [
      "a bracketed IPv6 address, stored without brackets",
      "v6.json",
      '{"address":"[2001:db8::7]","port":443,"source":"launched"}',
      { name: "v6", address: "2001:db8::7", port: 443, source: "launched", addedAt: MTIME.toISOString() },
    ],
    [
      "an unreadable added_at, replaced by the file's time",
      "web-9.json",
      '{"address":"10.0.0.9","port":80,"added_at":"yesterday"}',
      { name: "web-9", address: "10.0.0.9", port: 80, source: "manual", addedAt: MTIME.toISOString() },
    ],
  ])("reads %s", (_what, file, text, expected) => {
    expect(parseHostFile(file, text, MTIME)).toEqual(expected);
  });

  test.each([
    ["a name that disagrees with the file name", "web-1.json", '{"name":"web-2","address":"10.0.0.1","port":80}', /names "web-2" but the file is web-1\.json/],
    ["bad JSON", "web-1.json", '{"address": "10.0.0.1", port: 80}', /is not valid JSON/],
    ["an empty file", "web-1.json", "", /is not valid JSON/],
    ["a JSON array", "web-1.json", '["10.0.0.1", 80]', /is not a JSON object/],
    ["JSON null", "web-1.json", "null", /is not a JSON object/],
    ["a bad address", "web-1.json", '{"address":"999.1.1.1","port":80}', /host "999\.1\.1\.1" is not a valid IPv4/],
    ["an address with a newline", "web-1.json", '{"address":"10.0.0.1\\nserver x 1.2.3.4:80","port":80}', /host ".*" contains white space/],
    ["no address", "web-1.json", '{"port":80}', /host "" is empty/],
    ["port 0", "web-1.json", '{"address":"10.0.0.1","port":0}', /port "0" is outside 1-65535/],
    ["port 70000", "web-1.json", '{"address":"10.0.0.1","port":70000}', /port "70000" is outside 1-65535/],
    ["a port that is a word", "web-1.json", '{"address":"10.0.0.1","port":"http"}', /port "http" is not a port number/],
    ["a fractional port", "web-1.json", '{"address":"10.0.0.1","port":80.5}', /port "80\.5" is not a port number/],
    ["no port", "web-1.json", '{"address":"10.0.0.1"}', /port "" is not a port number/],
    [
      "an unknown source",
      "web-1.json",
      '{"address":"10.0.0.1","port":80,"source":"cloud"}',
      /source "cloud" is not valid; expected one of manual, agent, launched/,
    ],
    ["an instance id with a path in it", "web-1.json", '{"address":"10.0.0.1","port":80,"instance_id":"i-1/../x"}', /instance id "i-1\/\.\.\/x" is not valid/],
    ["an instance id with a space", "web-1.json", '{"address":"10.0.0.1","port":80,"instance_id":"i 1"}', /instance id "i 1" is not valid/],
    ["a file name that is not a valid name", "web 1.json", '{"address":"10.0.0.1","port":80}', /name "web 1" is not a valid name/],
    ["a file name that starts with a dot", ".hidden.json", '{"address":"10.0.0.1","port":80}', /name ".hidden" is not a valid name: it starts with '\.'/],
  ])("refuses %s", (_what, file, text, message) => {
    const result = parseHostFile(file, text, MTIME);
    expect(result).toEqual({ file, message: expect.stringMatching(message) });
  });

  test.each([
    ["text that is not JSON at all", "root:$6$SECRET-HASH:19000:0:99999:7:::", 'is not valid JSON; expected {"address": "...", "port": 80}'],
    ["JSON cut short", '{"address":"SECRET-HASH', 'is not valid JSON (error at character 23); expected {"address": "...", "port": 80}'],
    [
      "an unquoted key after a secret value",
      '{"SECRET-HASH": 1, port: 80}',
      'is not valid JSON (error at character 19); expected {"address": "...", "port": 80}',
    ],
  ])("says only where invalid JSON breaks, never its bytes: %s", (_what, text, expected) => {
    const result = parseHostFile("web-1.json", text, MTIME);
    expect(result).toEqual({ file: "web-1.json", message: expected });
    expect(JSON.stringify(result)).not.toContain("SECRET");
  });

  test("names every problem of one file in its message", () => {
    const result = parseHostFile("web-1.json", '{"address":"bad host","port":0,"source":"x"}', MTIME);
    const message = "message" in result ? result.message : "";
    expect(message).toMatch(/host "bad host" contains white space/);
    expect(message).toMatch(/port "0" is outside 1-65535/);
    expect(message).toMatch(/source "x" is not valid/);
  });
});

describe("checkHostEntry and entryAddress", () => {
  test("a valid entry has no problems", () => {
    expect(checkHostEntry({ name: "web-1", address: "10.0.0.1", port: 80, source: "agent", instanceId: "i-1" })).toEqual([]);
  });

  test.each([
    [{ name: "web-1", address: "10.0.0.1", port: 80 }, "10.0.0.1:80"],
    [{ name: "v6", address: "2001:db8::1", port: 443 }, "[2001:db8::1]:443"],
  ])("entryAddress of %j is %s", (entry, expected) => {
    expect(entryAddress({ ...entry, source: "manual", addedAt: MTIME.toISOString() })).toBe(expected);
  });
});

describe("createHostsStore", () => {
  let dir: string;
  let hostsDir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-hosts-"));
    hostsDir = path.join(dir, "hosts.d");
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const entry = (name: string, address: string, port = 80, extra: Partial<HostEntry> = {}): HostEntry => ({
    name,
    address,
    port,
    source: "manual",
    addedAt: "2024-05-06T07:08:09.000Z",
    ...extra,
  });

  test("add then list gives the same entries back, sorted by name", async () => {
    const store = createHostsStore(hostsDir);
    const added = [
      entry("web-b", "10.0.0.2", 8080),
      entry("node-1", "2001:db8::1", 80, { source: "agent", instanceId: "i-0abc" }),
      entry("web-a", "web-a.example.com", 443, { source: "launched" }),
    ];
    for (const e of added) await store.add(e);
    const { hosts, problems } = await store.list();
    expect(problems).toEqual([]);
    expect(hosts).toEqual([added[1], added[2], added[0]]);
  });

  test("add creates the folder and writes a readable 0644 file", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    const file = path.join(hostsDir, "web-1.json");
    expect((await fs.stat(file)).mode & 0o777).toBe(0o644);
    expect(JSON.parse(await fs.readFile(file, "utf8"))).toEqual({
      name: "web-1",
      address: "10.0.0.1",
      port: 80,
      source: "manual",
      added_at: "2024-05-06T07:08:09.000Z",
    });
  });

  test("add of a name that exists fails with AUTOSCALER_EXISTS and leaves the first file byte-identical", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    const file = path.join(hostsDir, "web-1.json");
    const before = await fs.readFile(file);
    const err = await store.add(entry("web-1", "10.0.0.99", 9999)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AutoscalerError);
    expect(err).toMatchObject({ code: "AUTOSCALER_EXISTS" });
    expect((err as Error).message).toContain('"web-1"');
    expect(await fs.readFile(file)).toEqual(before);
    expect(await fs.readdir(hostsDir)).toEqual(["web-1.json"]);
  });

  test.each([["../escape"], ["a/b"], [""], [".."], ["web 1"], [".hidden"], [".x"]])("add refuses the name %j and writes nothing", async (name) => {
    const store = createHostsStore(hostsDir);
    await expect(store.add(entry(name, "10.0.0.1"))).rejects.toMatchObject({ code: "AUTOSCALER_INPUT_INVALID" });
    expect(await fs.readdir(dir)).toEqual(existsSync(hostsDir) ? ["hosts.d"] : []);
    if (existsSync(hostsDir)) expect(await fs.readdir(hostsDir)).toEqual([]);
  });

  test("put replaces an entry of the same name", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    await store.put(entry("web-1", "10.0.0.2", 8080));
    expect((await store.list()).hosts).toEqual([entry("web-1", "10.0.0.2", 8080)]);
  });

  test("remove deletes an entry once, then returns false", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    expect(await store.remove("web-1")).toBe(true);
    expect(await store.remove("web-1")).toBe(false);
    expect((await store.list()).hosts).toEqual([]);
  });

  test("remove of a name that was never there returns false", async () => {
    await fs.mkdir(hostsDir);
    expect(await createHostsStore(hostsDir).remove("nobody")).toBe(false);
  });

  test("list skips dot-files and files that are not .json", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    const good = '{"address":"10.0.0.2","port":80}';
    await fs.writeFile(path.join(hostsDir, ".hidden.json"), good);
    await fs.writeFile(path.join(hostsDir, ".web-1.json.tmp-1-abcd"), good);
    await fs.writeFile(path.join(hostsDir, "web-2.json.bak"), good);
    await fs.writeFile(path.join(hostsDir, "README"), "not a host");
    await fs.writeFile(path.join(hostsDir, "web-3.json~"), good);
    const { hosts, problems } = await store.list();
    expect(problems).toEqual([]);
    expect(hosts.map((h) => h.name)).toEqual(["web-1"]);
  });

  test("list reports a bad file as a problem and still returns the good ones", async () => {
    const store = createHostsStore(hostsDir);
    await store.add(entry("web-1", "10.0.0.1"));
    await fs.writeFile(path.join(hostsDir, "broken.json"), "{not json");
    const { hosts, problems } = await store.list();
    expect(hosts.map((h) => h.name)).toEqual(["web-1"]);
    expect(problems).toEqual([{ file: "broken.json", message: expect.stringMatching(/not valid JSON/) }]);
  });

  test("list of a folder that does not exist is empty", async () => {
    expect(await createHostsStore(path.join(dir, "missing")).list()).toEqual({ hosts: [], problems: [] });
  });
});

describe("createHostsStore reads only small regular files", () => {
  const SECRET = "root:$6$SECRET-HASH-do-not-print:19000:0:99999:7:::\n";
  let dir: string;
  let hostsDir: string;
  let outside: string;
  let cleanups: (() => void)[] = [];
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-special-"));
    hostsDir = path.join(dir, "hosts.d");
    outside = path.join(dir, "outside");
    await fs.mkdir(hostsDir);
    await fs.mkdir(outside);
    await fs.writeFile(path.join(hostsDir, "web-1.json"), '{"address":"10.0.0.1","port":80}');
  });
  afterEach(async () => {
    for (const c of cleanups) c();
    cleanups = [];
    await fs.rm(dir, { recursive: true, force: true });
  });

  const x = () => path.join(hostsDir, "x.json");
  /** A valid entry padded with spaces to `size` bytes. */
  const padded = (size: number) => {
    const body = '{"address":"10.0.0.9","port":80}';
    return body + " ".repeat(size - body.length);
  };

  test.each<[string, () => Promise<unknown>, RegExp]>([
    [
      "a symlink to a secret file outside the folder",
      async () => {
        await fs.writeFile(path.join(outside, "shadow"), SECRET);
        await fs.symlink(path.join(outside, "shadow"), x());
      },
      /^is a symbolic link; expected a regular file$/,
    ],
    [
      "a symlink to a valid entry outside the folder",
      async () => {
        await fs.writeFile(path.join(outside, "entry.json"), '{"address":"10.0.0.9","port":80}');
        await fs.symlink(path.join(outside, "entry.json"), x());
      },
      /^is a symbolic link; expected a regular file$/,
    ],
    ["a FIFO", async () => execFileSync("mkfifo", [x()]), /^is a FIFO \(named pipe\); expected a regular file$/],
    ["a folder named x.json", () => fs.mkdir(x()), /^is a folder; expected a regular file$/],
    [
      "a Unix socket",
      async () => {
        const server = net.createServer();
        await new Promise<void>((resolve) => server.listen(x(), resolve));
        cleanups.push(() => server.close());
      },
      /^is a socket/,
    ],
    ["a valid entry of 64 KiB and one byte", () => fs.writeFile(x(), padded(MAX_HOST_FILE_BYTES + 1)), /^is larger than 64 KiB; expected a small JSON file/],
    ["a file of invalid JSON holding a secret", () => fs.writeFile(x(), SECRET), /^is not valid JSON; expected \{"address"/],
  ])("refuses %s by name, in list() and read(), without its contents in the message", async (_what, make, reason) => {
    await make();
    const store = createHostsStore(hostsDir);
    const listed = await rescueFifo(x(), () => store.list());
    expect(listed).toEqual({
      hosts: [expect.objectContaining({ name: "web-1" })],
      problems: [{ file: "x.json", message: expect.stringMatching(reason) }],
    });
    const read = await rescueFifo(x(), () => store.read("x"));
    expect(read).toEqual({ file: "x.json", message: expect.stringMatching(reason) });
    expect(await rescueFifo(x(), () => store.get("x"))).toBeUndefined();
    for (const text of [JSON.stringify(listed), JSON.stringify(read)]) {
      expect(text).not.toContain("SECRET");
      expect(text).not.toContain("root:");
    }
  });

  test("accepts a regular file of exactly 64 KiB", async () => {
    await fs.writeFile(x(), padded(MAX_HOST_FILE_BYTES));
    const store = createHostsStore(hostsDir);
    expect((await store.list()).problems).toEqual([]);
    expect(await store.get("x")).toMatchObject({ name: "x", address: "10.0.0.9", port: 80 });
  });

  /**
   * Call `fn`; if `file` is a FIFO, a helper process writes `{}` into it after 2 s, so a reader
   * that blocks on the FIFO (as before this check) is freed and the test fails instead of hanging.
   */
  async function rescueFifo<T>(file: string, fn: () => Promise<T>): Promise<T> {
    if (!(await fs.lstat(file)).isFIFO()) return fn();
    const rescuer = spawn(process.execPath, ["-e", "setTimeout(() => require('fs').writeFileSync(process.argv[1], '{}'), 2000)", file], { stdio: "ignore" });
    const started = Date.now();
    try {
      const result = await fn();
      expect(Date.now() - started).toBeLessThan(1500);
      return result;
    } finally {
      if (rescuer.exitCode === null && rescuer.signalCode === null) rescuer.kill("SIGKILL");
    }
  }
});

describe("createHostsStore across real processes", () => {
  let dir: string;
  let children: ChildProcess[] = [];

  beforeEach(async () => {
    if (!existsSync(DIST_INDEX)) throw new Error(`${DIST_INDEX} is missing: run "npx tsc -b" before the tests`);
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-race-"));
  });
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    children = [];
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Each child imports the built store, says "ready", waits for "go" on stdin, adds its entries at once and prints each outcome. */
  const CHILD = `
    const { createHostsStore } = await import(process.env.STORE_MODULE);
    const store = createHostsStore(process.env.HOSTS_DIR);
    const entries = JSON.parse(process.env.ENTRIES);
    process.stdout.write("ready\\n");
    await new Promise((resolve) => process.stdin.once("data", resolve));
    const results = await Promise.allSettled(entries.map((e) => store.add({ ...e, source: "manual", addedAt: new Date().toISOString() })));
    process.stdout.write(JSON.stringify(results.map((r) => (r.status === "fulfilled" ? "ok" : r.reason.code ?? String(r.reason)))) + "\\n");
  `;

  interface Racer {
    ready: Promise<void>;
    done: Promise<{ code: number | null; outcomes: string[]; stderr: string }>;
    go(): void;
  }

  function startRacer(hostsDir: string, entries: { name: string; address: string; port: number }[]): Racer {
    const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD], {
      env: { ...process.env, STORE_MODULE: pathToFileURL(DIST_INDEX).href, HOSTS_DIR: hostsDir, ENTRIES: JSON.stringify(entries) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    children.push(child);
    let stdout = "";
    let stderr = "";
    let markReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    child.stdout!.on("data", (b: Buffer) => {
      stdout += b.toString();
      if (stdout.startsWith("ready\n")) markReady();
    });
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const done = new Promise<{ code: number | null; outcomes: string[]; stderr: string }>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code) => {
        markReady(); // a child that died early must not keep the others waiting
        const last = stdout.trim().split("\n").pop() ?? "";
        resolve({ code, outcomes: last.startsWith("[") ? (JSON.parse(last) as string[]) : [], stderr });
      });
    });
    return { ready, done, go: () => child.stdin!.end("go\n") };
  }

  /** Start every racer, wait until all have loaded the module, then release them together. */
  async function race(racers: Racer[]) {
    await Promise.all(racers.map((r) => r.ready));
    for (const r of racers) r.go();
    return Promise.all(racers.map((r) => r.done));
  }

  test("two processes adding 20 different hosts each at the same moment lose none of the 40", async () => {
    const hostsDir = path.join(dir, "hosts.d");
    const racers = [0, 1].map((p) =>
      startRacer(
        hostsDir,
        Array.from({ length: 20 }, (_, i) => ({ name: `p${p}-web-${String(i).padStart(2, "0")}`, address: `10.0.${p}.${i + 1}`, port: 8000 + i })),
      ),
    );
    const results = await race(racers);
    for (const r of results) {
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.outcomes).toEqual(Array(20).fill("ok"));
    }
    const { hosts, problems } = await createHostsStore(hostsDir).list();
    expect(problems).toEqual([]);
    expect(hosts).toHaveLength(40);
    expect(new Set(hosts.map((h) => `${h.address}:${h.port}`)).size).toBe(40);
    // No temp file is left behind either.
    expect((await fs.readdir(hostsDir)).filter((f) => !f.endsWith(".json"))).toEqual([]);
  });

  test("eight processes adding the same name at the same moment: exactly one wins", async () => {
    const hostsDir = path.join(dir, "hosts.d");
    const racers = Array.from({ length: 8 }, (_, i) => startRacer(hostsDir, [{ name: "same", address: `10.9.0.${i + 1}`, port: 80 }]));
    const results = await race(racers);
    const outcomes = results.map((r) => r.outcomes[0]);
    expect(outcomes.filter((o) => o === "ok")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "AUTOSCALER_EXISTS")).toHaveLength(7);
    const winner = outcomes.indexOf("ok");
    const { hosts } = await createHostsStore(hostsDir).list();
    expect(hosts.map((h) => [h.name, h.address])).toEqual([["same", `10.9.0.${winner + 1}`]]);
    expect(await fs.readdir(hostsDir)).toEqual(["same.json"]);
  });
});
