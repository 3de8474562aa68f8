import ssh2 from "ssh2";
import { expect, test } from "vitest";
import { ed25519KeyPair } from "./keygen.js";

test("every generated pair parses, though ssh2's own generator makes about one bad pair in 256", () => {
  let bad = 0;
  for (let i = 0; i < 2_000; i++) {
    const pair = ed25519KeyPair();
    const priv = ssh2.utils.parseKey(pair.private);
    const pub = ssh2.utils.parseKey(pair.public);
    if (priv instanceof Error || pub instanceof Error) bad++;
  }
  expect(bad).toBe(0);
});
