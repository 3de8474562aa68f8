import { spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { createLogger } from "@autoscaler/shared";
import { recoverApplyLeftovers } from "./apply-lock.js";

let dir: string;
let target: string;
let lines: string[];
const logger = () => createLogger({ write: (s: string) => lines.push(s) }, { json: true });
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "apply-lock-test-"));
  target = path.join(dir, "haproxy.cfg");
  lines = [];
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

/** The pid of a process that has exited (and been reaped). */
const deadPid = () => spawnSync(process.execPath, ["-e", "0"]).pid!;
const lock = () => `${target}.lock`;
const note = () => path.join(dir, ".haproxy.cfg.lock-owner");
const exists = (p: string) =>
  fs.stat(p).then(
    () => true,
    () => false,
  );
const writeNote = (n: Record<string, unknown>) => fs.writeFile(note(), JSON.stringify(n));

test("the lock a dead master noted as its own is removed, with the note", async () => {
  await fs.mkdir(lock());
  const s = await fs.stat(lock());
  await writeNote({ pid: deadPid(), at: Date.now(), busy: false, held: { ino: s.ino, birth: s.birthtimeMs } });
  await recoverApplyLeftovers(target, logger());
  expect(await exists(lock())).toBe(false);
  expect(await exists(note())).toBe(false);
  expect(lines.join("")).toMatch(/removed the HAProxy apply lock/);
});

test("a dead master killed before it noted the lock: a lock born after it began, with nobody else holding one then, is its own", async () => {
  await writeNote({ pid: deadPid(), at: Date.now(), busy: false });
  await fs.mkdir(lock());
  await recoverApplyLeftovers(target, logger());
  expect(await exists(lock())).toBe(false);
});

test.each([
  ["a live process", async () => ({ pid: process.ppid, at: Date.now(), busy: false })],
  [
    "a dead master that noted another folder (a later add-host holds this one)",
    async () => ({ pid: deadPid(), at: Date.now(), busy: false, held: { ino: 1, birth: 1 } }),
  ],
  ["a dead master that was waiting for a lock another process held", async () => ({ pid: deadPid(), at: Date.now() - 10_000, busy: true })],
  ["a dead master that began after this lock was made", async () => ({ pid: deadPid(), at: Date.now() + 60_000, busy: false })],
])("a lock is kept when the note names %s", async (_, make) => {
  await fs.mkdir(lock());
  await writeNote(await make());
  await recoverApplyLeftovers(target, logger());
  expect(await exists(lock())).toBe(true);
});

test("without a note the lock is kept (it goes stale on its own)", async () => {
  await fs.mkdir(lock());
  await recoverApplyLeftovers(target, logger());
  expect(await exists(lock())).toBe(true);
});

test("staged and temp files of dead processes are removed; a live process's, and other files, are kept", async () => {
  const dead = deadPid();
  const files = [
    `.haproxy.cfg.staged-${dead}-0a1b2c3d`,
    `.haproxy.cfg.tmp-${dead}-0a1b2c3d`,
    // The owner note's own temporary file (written, then renamed over the note).
    `.haproxy.cfg.tmp-${dead}-6e6f7465`,
    `.haproxy.cfg.staged-${process.pid}-00ff00ff`,
    `.haproxy.cfg.staged-${process.ppid}-00ff00ff`,
    "haproxy.cfg",
    ".other.cfg.staged-1-00",
  ];
  for (const f of files) await fs.writeFile(path.join(dir, f), "x");
  await recoverApplyLeftovers(target, logger());
  expect((await fs.readdir(dir)).sort()).toEqual(
    [`.haproxy.cfg.staged-${process.pid}-00ff00ff`, `.haproxy.cfg.staged-${process.ppid}-00ff00ff`, ".other.cfg.staged-1-00", "haproxy.cfg"].sort(),
  );
});
