import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { tempPathFor, writeFileAtomic } from "./atomic-write.js";

describe("writeFileAtomic", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-atomic-"));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const modeOf = async (file: string) => (await fs.stat(file)).mode & 0o7777;

  test("writes a new file with the bytes given", async () => {
    const file = path.join(dir, "new.cfg");
    await writeFileAtomic(file, "hello\n");
    expect(await fs.readFile(file, "utf8")).toBe("hello\n");
    expect(await fs.readdir(dir)).toEqual(["new.cfg"]);
  });

  test("writes a Buffer as it is", async () => {
    const file = path.join(dir, "bin");
    const bytes = Buffer.from([0, 1, 2, 255, 10]);
    await writeFileAtomic(file, bytes);
    expect(await fs.readFile(file)).toEqual(bytes);
  });

  test.each([
    ["0600", 0o600],
    ["0640", 0o640],
    ["0755", 0o755],
  ])("gives a new file the mode asked for (%s), whatever the umask", async (_name, mode) => {
    const file = path.join(dir, "new");
    await writeFileAtomic(file, "x", { mode });
    expect(await modeOf(file)).toBe(mode);
  });

  test.each([
    ["0600", 0o600],
    ["0640", 0o640],
    ["0604", 0o604],
  ])("keeps an existing file's mode %s when replacing it", async (_name, mode) => {
    const file = path.join(dir, "autoscaler.ini");
    await fs.writeFile(file, "old");
    await fs.chmod(file, mode);
    await writeFileAtomic(file, "new", { mode: 0o644 });
    expect(await fs.readFile(file, "utf8")).toBe("new");
    expect(await modeOf(file)).toBe(mode);
  });

  test("forceMode changes an existing file's mode", async () => {
    const file = path.join(dir, "autoscaler.ini");
    await fs.writeFile(file, "old");
    await fs.chmod(file, 0o644);
    await writeFileAtomic(file, "new", { mode: 0o600, forceMode: true });
    expect(await fs.readFile(file, "utf8")).toBe("new");
    expect(await modeOf(file)).toBe(0o600);
  });

  test("replaces the file by rename: a reader holding the old file keeps the old bytes", async () => {
    const file = path.join(dir, "haproxy.cfg");
    await fs.writeFile(file, "old bytes");
    const before = await fs.stat(file);
    const handle = await fs.open(file, "r");
    try {
      await writeFileAtomic(file, "new bytes");
      expect((await handle.readFile()).toString()).toBe("old bytes");
      expect((await fs.stat(file)).ino).not.toBe(before.ino);
    } finally {
      await handle.close();
    }
  });

  test("exclusive writes a file that is not there yet", async () => {
    const file = path.join(dir, "web-1.json");
    await writeFileAtomic(file, "{}", { exclusive: true, mode: 0o644 });
    expect(await fs.readFile(file, "utf8")).toBe("{}");
    expect(await modeOf(file)).toBe(0o644);
    expect(await fs.readdir(dir)).toEqual(["web-1.json"]);
  });

  test("exclusive refuses an existing file with EEXIST, keeps it and leaves no temp file", async () => {
    const file = path.join(dir, "web-1.json");
    await fs.writeFile(file, "first");
    await expect(writeFileAtomic(file, "second", { exclusive: true })).rejects.toMatchObject({ code: "EEXIST" });
    expect(await fs.readFile(file, "utf8")).toBe("first");
    expect(await fs.readdir(dir)).toEqual(["web-1.json"]);
  });

  test("leaves no temp file after many writes", async () => {
    const file = path.join(dir, "state.json");
    for (let i = 0; i < 10; i++) await writeFileAtomic(file, String(i));
    expect(await fs.readFile(file, "utf8")).toBe("9");
    expect(await fs.readdir(dir)).toEqual(["state.json"]);
  });

  test("fails when the target's folder is missing and leaves nothing behind", async () => {
    const file = path.join(dir, "missing", "haproxy.cfg");
    await expect(writeFileAtomic(file, "x")).rejects.toMatchObject({ code: "ENOENT" });
    expect(await fs.readdir(dir)).toEqual([]);
  });

  test("fails when the target is a folder, and leaves the folder and no temp file", async () => {
    const target = path.join(dir, "taken");
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, "inside"), "kept");
    await expect(writeFileAtomic(target, "x")).rejects.toThrow();
    expect(await fs.readdir(dir)).toEqual(["taken"]);
    expect(await fs.readFile(path.join(target, "inside"), "utf8")).toBe("kept");
  });
});

describe("tempPathFor", () => {
  test("is a dot-file in the target's folder, different each time", () => {
    const a = tempPathFor("/srv/x/haproxy.cfg");
    const b = tempPathFor("/srv/x/haproxy.cfg");
    expect(path.dirname(a)).toBe("/srv/x");
    expect(path.basename(a)).toMatch(/^\.haproxy\.cfg\.tmp-\d+-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });

  test("does not end in .json, so the hosts store never lists it", () => {
    expect(tempPathFor("/srv/hosts.d/web-1.json").endsWith(".json")).toBe(false);
  });
});
