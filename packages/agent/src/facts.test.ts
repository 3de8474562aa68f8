import os from "node:os";
import { describe, expect, test } from "vitest";
import { osNameFromRelease, readFacts } from "./facts.js";

describe("osNameFromRelease", () => {
  test.each([
    ["PRETTY_NAME, quoted", 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', "Debian GNU/Linux 12 (bookworm)"],
    ["NAME and VERSION_ID without PRETTY_NAME", "NAME=Alpine\nVERSION_ID=3.20.1\n", "Alpine 3.20.1"],
    ["single quotes keep backslashes", "PRETTY_NAME='A\\B'\n", "A\\B"],
    ["double quotes unescape", 'PRETTY_NAME="say \\"hi\\" \\$HOME"\n', 'say "hi" $HOME'],
    ["comments and blank lines skipped", "# PRETTY_NAME=nope\n\nNAME=Fedora Linux\n", "Fedora Linux"],
    ["control characters made spaces", 'PRETTY_NAME="a\tb"\n', "a b"],
  ])("%s", (_what, text, expected) => {
    expect(osNameFromRelease(text)).toBe(expected);
  });

  test("nothing to name: undefined (the fact is optional)", () => {
    expect(osNameFromRelease("")).toBeUndefined();
    expect(osNameFromRelease('ID=x\nPRETTY_NAME=""\n')).toBeUndefined();
  });

  test("at most 128 characters, as the master accepts", () => {
    expect(osNameFromRelease(`PRETTY_NAME=${"x".repeat(300)}`)).toHaveLength(128);
  });
});

test("readFacts: this machine's logical CPUs and total memory", async () => {
  const facts = await readFacts();
  expect(facts.cores).toBe(Math.max(1, os.cpus().length));
  expect(facts.memory_bytes).toBe(os.totalmem());
  if (facts.os !== undefined) expect(facts.os.length).toBeLessThanOrEqual(128);
});
