import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import type { Logger } from "@autoscaler/shared";
import { loadNameBook } from "./name-book.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
});
const warnings: string[] = [];
const logger: Logger = { debug() {}, info() {}, warn: (m) => void warnings.push(m), error() {} };

test("names and each launch's count survive a reload from names.json (0600); a known name keeps its first record", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-names-"));
  dirs.push(dir);
  const book = await loadNameBook(dir, logger);
  await book.remember("c-1", { kind: "launch", launch: "launch-1", at: 1 });
  await book.remember("c-2", { kind: "launch", launch: "launch-1", at: 2 });
  await book.remember("c-1", { kind: "shared", at: 3 });
  expect((await fs.stat(path.join(dir, "names.json"))).mode & 0o777).toBe(0o600);
  const again = await loadNameBook(dir, logger);
  expect(again.get("c-1")).toEqual({ kind: "launch", launch: "launch-1", at: 1 });
  expect(again.launchNames("launch-1")).toBe(2);
  expect(again.launchNames("launch-2")).toBe(0);
});

test("an unreadable names.json is set aside with a warning and the book starts empty", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-names-"));
  dirs.push(dir);
  await fs.writeFile(path.join(dir, "names.json"), "{not json");
  const book = await loadNameBook(dir, logger);
  expect(book.get("anything")).toBeUndefined();
  expect(warnings.at(-1)).toMatch(/set aside/);
  expect((await fs.readdir(dir)).some((f) => f.startsWith("names.json.unreadable-"))).toBe(true);
});
