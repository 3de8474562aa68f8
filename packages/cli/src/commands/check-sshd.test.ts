import { describe, expect, test } from "vitest";
import { sshdMatchBlock } from "./authorize-key.js";
import { blockSettings, compareSshdSettings, formatSshdChecks, parseSshdT } from "./check-sshd.js";

const block = sshdMatchBlock("autoscaler", 7300);

/** What OpenSSH 9.2's `sshd -T -C user=autoscaler,…` prints for these settings with the block in force (among its ~90 other lines). */
const GOOD = [
  "port 22",
  "x11forwarding no",
  "permittty no",
  "allowtcpforwarding local",
  "allowagentforwarding no",
  "allowstreamlocalforwarding no",
  "forcecommand /bin/false",
  "hostkey /etc/ssh/ssh_host_rsa_key",
  "hostkey /etc/ssh/ssh_host_ed25519_key",
  "permitopen 127.0.0.1:7300",
  "permitlisten none",
  "",
].join("\n");

/** The same with nothing for the node user: sshd's defaults. */
const DEFAULTS = GOOD.replace("permittty no", "permittty yes")
  .replace("allowtcpforwarding local", "allowtcpforwarding yes")
  .replace("allowagentforwarding no", "allowagentforwarding yes")
  .replace("allowstreamlocalforwarding no", "allowstreamlocalforwarding yes")
  .replace("forcecommand /bin/false", "forcecommand none")
  .replace("permitopen 127.0.0.1:7300", "permitopen any")
  .replace("permitlisten none", "permitlisten any");

const wrongOf = (output: string) =>
  compareSshdSettings(block, output)
    .filter((c) => !c.ok)
    .map((c) => c.setting);

describe("the expected settings", () => {
  test("are every line of the block authorize-key prints, keys lower-cased as sshd -T prints them, the Match line left out", () => {
    expect(blockSettings(block)).toEqual([
      { key: "allowtcpforwarding", value: "local" },
      { key: "permitopen", value: "127.0.0.1:7300" },
      { key: "permitlisten", value: "none" },
      { key: "allowstreamlocalforwarding", value: "no" },
      { key: "x11forwarding", value: "no" },
      { key: "allowagentforwarding", value: "no" },
      { key: "permittty", value: "no" },
      { key: "forcecommand", value: "/bin/false" },
    ]);
  });
});

describe("compareSshdSettings", () => {
  test("sshd applying the block: every setting ok, each with the value sshd printed", () => {
    const checks = compareSshdSettings(block, GOOD);
    expect(checks).toHaveLength(8);
    expect(checks.every((c) => c.ok)).toBe(true);
    expect(checks.find((c) => c.setting === "permitopen")).toEqual({
      setting: "permitopen",
      expected: "127.0.0.1:7300",
      effective: "127.0.0.1:7300",
      ok: true,
    });
  });

  test("sshd's defaults: every setting but x11forwarding (off by default) is wrong", () => {
    expect(wrongOf(DEFAULTS)).toEqual([
      "allowtcpforwarding",
      "permitopen",
      "permitlisten",
      "allowstreamlocalforwarding",
      "allowagentforwarding",
      "permittty",
      "forcecommand",
    ]);
    expect(compareSshdSettings(block, DEFAULTS).find((c) => c.setting === "permitlisten")).toMatchObject({ expected: "none", effective: "any", ok: false });
  });

  test("one setting off is the only one named", () => {
    expect(wrongOf(GOOD.replace("permitlisten none", "permitlisten any"))).toEqual(["permitlisten"]);
    expect(wrongOf(GOOD.replace("allowtcpforwarding local", "allowtcpforwarding yes"))).toEqual(["allowtcpforwarding"]);
  });

  test("PermitOpen with another target besides the master's port is wrong; the same target twice or in another order is not", () => {
    expect(wrongOf(GOOD.replace("permitopen 127.0.0.1:7300", "permitopen 127.0.0.1:7300 localhost:7300"))).toEqual(["permitopen"]);
    expect(wrongOf(GOOD.replace("permitopen 127.0.0.1:7300", "permitopen 127.0.0.1:7301"))).toEqual(["permitopen"]);
    expect(wrongOf(GOOD.replace("permitopen 127.0.0.1:7300", "permitopen 127.0.0.1:7300 127.0.0.1:7300"))).toEqual([]);
  });

  test("keys and keyword values in any case, a quoted ForceCommand and extra spaces match; ForceCommand's case counts", () => {
    const shouty = GOOD.replace("allowtcpforwarding local", "AllowTcpForwarding LOCAL").replace("forcecommand /bin/false", 'forcecommand  "/bin/false" ');
    expect(wrongOf(shouty)).toEqual([]);
    expect(wrongOf(GOOD.replace("forcecommand /bin/false", "forcecommand '/bin/false'"))).toEqual([]);
    expect(wrongOf(GOOD.replace("forcecommand /bin/false", "forcecommand /bin/False"))).toEqual(["forcecommand"]);
    expect(wrongOf(GOOD.replace("forcecommand /bin/false", 'forcecommand "/bin/false" arg'))).toEqual(["forcecommand"]);
  });

  test("a setting sshd -T does not print is wrong, with no effective value", () => {
    const checks = compareSshdSettings(block, GOOD.replace("permitlisten none\n", ""));
    expect(checks.find((c) => c.setting === "permitlisten")).toEqual({ setting: "permitlisten", expected: "none", effective: null, ok: false });
    expect(checks.filter((c) => !c.ok)).toHaveLength(1);
  });

  test("the block for another port or user is what is compared", () => {
    expect(
      compareSshdSettings(sshdMatchBlock("node", 8000), GOOD)
        .filter((c) => !c.ok)
        .map((c) => c.setting),
    ).toEqual(["permitopen"]);
  });
});

test("parseSshdT joins a key printed on several lines", () => {
  const m = parseSshdT(GOOD);
  expect(m.get("hostkey")).toBe("/etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_ed25519_key");
  expect(m.get("permitlisten")).toBe("none");
});

test("formatSshdChecks prints one aligned line per setting with ok or WRONG, the expected and sshd's value", () => {
  const lines = formatSshdChecks(compareSshdSettings(block, GOOD.replace("permitlisten none", "permitlisten any"))).split("\n");
  expect(lines).toHaveLength(8);
  expect(lines[0]).toMatch(/^ok {5}allowtcpforwarding {10}expected local {11}sshd: local$/);
  expect(lines[2]).toMatch(/^WRONG +permitlisten +expected none +sshd: any$/);
  expect(new Set(lines.map((l) => l.indexOf("expected"))).size).toBe(1);
});
