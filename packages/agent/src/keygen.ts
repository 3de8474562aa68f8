/**
 * An ed25519 key pair in OpenSSH format, made by ssh2. ssh2's generator strips every leading
 * zero byte of the public key, so about one pair in 256 comes out malformed and ssh2 itself
 * refuses to parse it (mscdex/ssh2 issues #1390 and #1513). A pair is kept only when both
 * halves parse; a retry draws a fresh key, so the loop ends after one or two draws.
 */
import { createRequire } from "node:module";
import type ssh2Module from "ssh2";

/** An ed25519 key pair whose private key and public line both parse. */
export function ed25519KeyPair(): { private: string; public: string } {
  // Required here, not at the top: the agent's index exports this, and a running agent only needs ssh2's client (tunnel.ts).
  const ssh2 = createRequire(import.meta.url)("ssh2") as typeof ssh2Module;
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519");
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair;
  }
}
