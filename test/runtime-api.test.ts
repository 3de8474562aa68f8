/**
 * Registration through HAProxy's runtime API: real HAProxy (master-worker, admin socket),
 * real `autoscaler master`, real agents over a real sshd, hosts.d written as an operator would.
 * A change that only adds or removes servers is applied with `add server` / `del server` and no
 * reload; whatever the runtime API cannot express, or a socket that answers wrongly, takes the
 * reload path, and the file and HAProxy agree at the end either way.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { createHostsStore } from "@autoscaler/shared";
import { afterEach, describe, expect, test } from "vitest";
import { getThrough, startDaemon, startNode, startProxy, startWebApp } from "./helpers/cluster.js";
import { canConnect, makeInstallation, serverLines, showProc, startHaproxy, type Installation } from "./helpers/haproxy.js";
import { forgedHello, probeMaster } from "./helpers/hostile.js";
import { freePort, runProcess, Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Send one command to the installation's admin socket, as an operator's socat would. */
function admin(inst: Installation, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: path.join(inst.dir, "admin.sock") });
    s.setTimeout(3000, () => s.destroy(new Error(`no answer to "${command}"`)));
    s.on("connect", () => s.end(command + "\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => {
      if (!hadError) resolve(answer);
    });
  });
}

/**
 * What the running HAProxy has for each server of the backend, read independently of the
 * product: from `show servers state` every field but the live ones (ids, which a reload
 * renumbers, op state, check results, time since the last change), and from `show stat` the
 * check's rise and fall (which only inherited default-server options give).
 */
async function servers(inst: Installation): Promise<Record<string, Record<string, string>>> {
  const state = (await admin(inst, "show servers state autoscaler")).split("\n");
  const columns = state[1]!.replace(/^# /, "").split(" ");
  const out: Record<string, Record<string, string>> = {};
  for (const line of state.slice(2).filter((l) => l.trim() !== "")) {
    const row = Object.fromEntries(line.split(" ").map((v, i) => [columns[i]!, v]));
    const keep = [
      "srv_addr",
      "srv_admin_state",
      "srv_uweight",
      "srv_iweight",
      "srv_check_state",
      "srv_agent_state",
      "srv_fqdn",
      "srv_port",
      "srv_use_ssl",
      "srv_check_port",
      "srv_check_addr",
    ];
    out[row.srv_name!] = Object.fromEntries(keep.map((k) => [k, row[k]!]));
  }
  const stat = (await admin(inst, "show stat")).split("\n");
  const head = stat[0]!.replace(/^# /, "").split(",");
  for (const line of stat.slice(1)) {
    const row = Object.fromEntries(line.split(",").map((v, i) => [head[i]!, v]));
    if (row.pxname !== "autoscaler" || !out[row.svname!]) continue;
    out[row.svname!]!.check_rise = row.check_rise!;
    out[row.svname!]!.check_fall = row.check_fall!;
  }
  return out;
}

/** A proxy whose master applies through the runtime socket, with the installation's backends added by hand in hosts.d. */
async function runtimeProxy(settings: string[] = []) {
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${await freePort()}`,
    `master.metrics_listen=127.0.0.1:${await freePort()}`,
    "haproxy.runtime_socket=admin.sock",
    ...settings,
  ]);
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(gen.stderr);
  await startHaproxy(scope, inst);
  const master = startDaemon(scope, ["master", "--config", inst.ini, "--log-level", "debug"]);
  await master.waitForLog(/master started/);
  // The start apply: the generated file was never reloaded by the master, so it reloads once.
  await waitFor("the start apply", async () => (await status(inst)).haproxy.applies >= 1);
  return { inst, master, store: createHostsStore(path.join(inst.dir, "hosts.d")) };
}

const hostEntry = (name: string, port: number) => ({ name, address: "127.0.0.1", port, source: "manual" as const, addedAt: new Date().toISOString() });

/** Wait until HAProxy runs exactly `names` in the backend. */
async function untilRunning(inst: Installation, names: string[]): Promise<void> {
  const want = [...names].sort().join(",");
  await waitFor(
    `HAProxy running ${want || "no server"}`,
    async () =>
      Object.keys(await servers(inst))
        .sort()
        .join(",") === want,
    10_000,
    10,
  );
}

describe("the runtime path", () => {
  test("a node that registers is served without a reload: HAProxy's reload count and the master's stay the same, the file has its line", async () => {
    const proxy = await startProxy(scope, { settings: ["haproxy.runtime_socket=admin.sock"] });
    await waitFor("the start apply", async () => (await proxy.status()).haproxy.applies >= 1);
    const before = await showProc(proxy.inst);
    const reloadsBefore = (await proxy.status()).haproxy.reloads;

    await startNode(scope, [proxy], { name: "web-a" });
    await waitFor("web-a served through HAProxy", async () => (await getThrough(proxy.inst.frontendPort)) === "web-a", 15_000, 10);

    // Served as soon as the runtime commands ran; the apply ends after the file is checked and in place.
    await waitFor("the runtime apply recorded", async () => (await proxy.status()).haproxy.runtime_applies >= 1);
    const after = await showProc(proxy.inst);
    expect(after.master.reloads).toBe(before.master.reloads);
    expect(after.workers.map((w) => w.pid)).toEqual(before.workers.map((w) => w.pid));
    const s = await proxy.status();
    expect(s.haproxy.reloads).toBe(reloadsBefore);
    expect(s.haproxy.runtime_fallbacks).toBe(0);
    // The file is the truth for restarts: it has the same server.
    expect(serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"))).toEqual([expect.stringMatching(/^server web-a 127\.0\.0\.1:\d+ check$/)]);
    expect(proxy.master.log()).toMatch(/"path":"runtime"/);
  }, 60_000);

  test("equivalence: after 40 random adds, removes, drains and weights, a reload from the file gives the same servers, options and states", async () => {
    const { inst, master, store } = await runtimeProxy();
    const reloadsBefore = (await status(inst)).haproxy.reloads;
    const procBefore = await showProc(inst);
    let seed = 20261205;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const live = new Map<string, number>();
    let next = 0;
    const ports = [await freePort(), await freePort(), await freePort()];
    const counts = { add: 0, remove: 0, drain: 0, weight: 0 };
    for (let step = 0; step < 40; step++) {
      const names = [...live.keys()];
      const roll = random(10);
      if (names.length === 0 || roll < 5) {
        const name = `n-${next++}`;
        live.set(name, ports[random(ports.length)]!);
        await store.put(hostEntry(name, live.get(name)!));
        counts.add++;
      } else if (roll < 8) {
        const name = names[random(names.length)]!;
        live.delete(name);
        await store.remove(name);
        counts.remove++;
      } else if (roll < 9) {
        expect((await admin(inst, `set server autoscaler/${names[random(names.length)]} state drain`)).trim()).toBe("");
        counts.drain++;
      } else {
        expect((await admin(inst, `set server autoscaler/${names[random(names.length)]} weight ${1 + random(50)}`)).trim()).toBe("");
        counts.weight++;
      }
      await untilRunning(inst, [...live.keys()]);
    }
    expect(counts.add).toBeGreaterThanOrEqual(10);
    expect(counts.remove).toBeGreaterThanOrEqual(5);
    expect(counts.drain + counts.weight).toBeGreaterThanOrEqual(2);
    await waitFor("the file in step", async () => serverLines(await fs.readFile(inst.haproxyConfig, "utf8")).length === live.size);
    const s = await status(inst);
    expect(s.haproxy.reloads).toBe(reloadsBefore); // every step went through the runtime API
    expect((await showProc(inst)).master.reloads).toBe(procBefore.master.reloads);
    expect(s.haproxy.runtime_applies).toBeGreaterThanOrEqual(counts.add);

    const runtimeView = await servers(inst);
    // Inherited default-server options are spelled on add server: fall 2 rise 2, not HAProxy's 3/2.
    for (const v of Object.values(runtimeView)) expect([v.check_fall, v.check_rise]).toEqual(["2", "2"]);
    // A template edit cannot be expressed at runtime: the master reloads, saving server states first.
    const template = path.join(inst.dir, "haproxy.cfg.tmpl");
    await fs.appendFile(template, "# edited\n");
    await waitFor("a reload", async () => (await showProc(inst)).master.reloads > procBefore.master.reloads, 10_000);
    await waitFor("the master's reload", async () => (await status(inst)).haproxy.reloads > reloadsBefore);
    expect(await servers(inst)).toEqual(runtimeView);
    expect(master.log()).toMatch(/"reload_because":"the template, server_line or HAProxy's servers differ/);
    console.info(`equivalence: ${JSON.stringify(counts)}; ${live.size} servers after the steps, identical after the reload`);
  }, 90_000);

  test("a file HAProxy's check refuses undoes the runtime add: HAProxy and the live file keep what they had", async () => {
    const { inst, store } = await runtimeProxy([`haproxy.check_command=! grep -q refused-node "$CONFIG" && haproxy -c -q -f "$CONFIG"`]);
    const port = await freePort();
    await store.put(hostEntry("ok-node", port));
    await untilRunning(inst, ["ok-node"]);
    await waitFor("ok-node in the file", async () => serverLines(await fs.readFile(inst.haproxyConfig, "utf8")).length === 1);
    const fileBefore = await fs.readFile(inst.haproxyConfig, "utf8");
    await store.put(hostEntry("refused-node", port));
    await waitFor("the check failure", async () => (await status(inst)).haproxy.check_failures >= 1);
    expect(Object.keys(await servers(inst))).toEqual(["ok-node"]);
    // Retries (the watcher's second read, the 5 s retry) check first: the refused server never serves again meanwhile.
    const seen = new Set<string>();
    await waitFor(
      "a retry refused too",
      async () => {
        for (const name of Object.keys(await servers(inst))) seen.add(name);
        return (await status(inst)).haproxy.check_failures >= 2;
      },
      10_000,
      5,
    );
    expect([...seen]).toEqual(["ok-node"]);
    expect(await fs.readFile(inst.haproxyConfig, "utf8")).toBe(fileBefore);
    expect((await status(inst)).haproxy.last_error?.code).toBe("AUTOSCALER_HAPROXY_CHECK_FAILED");
  }, 60_000);
});

describe("a registration whose hosts.d entry cannot be written", () => {
  // The master serves a registering node at once (its in-memory copy) while the entry is written;
  // a write that fails must take it out of service again and refuse the agent.
  test("hosts.d on a full file system: the agent is refused, and HAProxy, haproxy.cfg and hosts.d are left without the node", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test mounts a tmpfs as hosts.d, which needs root; run the suite as root (CI does: bash .ci/run)");
    const masterPort = await freePort();
    const token = "full-hosts-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    const inst = await makeInstallation(scope, [
      `master.listen=127.0.0.1:${masterPort}`,
      `master.metrics_listen=127.0.0.1:${await freePort()}`,
      `master.token=${token}`,
      "haproxy.runtime_socket=admin.sock",
    ]);
    const hostsDir = path.join(inst.dir, "hosts.d");
    await fs.mkdir(hostsDir, { recursive: true });
    const mounted = await runProcess("mount", ["-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", hostsDir]);
    expect(mounted.code, `mount -t tmpfs failed (the test needs root with CAP_SYS_ADMIN, as .ci/run gives): ${mounted.stderr}`).toBe(0);
    let master: ReturnType<typeof startDaemon> | undefined;
    scope.onCleanup(async () => {
      // The master watches hosts.d: stop it first, or the unmount is refused as busy.
      if (master && master.child.exitCode === null && master.child.signalCode === null) {
        const gone = new Promise((r) => master!.child.once("exit", r));
        master.child.kill("SIGTERM");
        await gone;
      }
      const umount = await runProcess("umount", [hostsDir]);
      if (umount.code !== 0) {
        const lazy = await runProcess("umount", ["-l", hostsDir]);
        if (lazy.code !== 0) throw new Error(`cannot unmount the tmpfs at ${hostsDir}: ${umount.stderr} ${lazy.stderr}`);
      }
    });
    // Fill it (bounded: 16 KiB in 1 KiB writes) with a dot file, which the hosts store skips.
    const handle = await fs.open(path.join(hostsDir, ".filler"), "w");
    let full = false;
    for (let i = 0; i < 64 && !full; i++)
      await handle.write(Buffer.alloc(1024, 0x66)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOSPC") throw err;
        full = true;
      });
    await handle.close();
    expect(full).toBe(true);
    expect((await inst.cli("generate")).code).toBe(0);
    await startHaproxy(scope, inst);
    master = startDaemon(scope, ["master", "--config", inst.ini, "--log-level", "debug"]);
    await master.waitForLog(/master started/);
    await waitFor("the start apply", async () => (await status(inst)).haproxy.applies >= 1);
    const webPort = await freePort();
    await startWebApp(scope, "full-1", "127.0.0.1", webPort, await scope.tempDir("autoscaler-full-web-"));

    const probe = await probeMaster(masterPort, forgedHello({ token, name: "full-1", port: webPort, instance_id: "i-full-1" }), {
      waitForClose: true,
      timeoutMs: 10_000,
    });
    expect(probe.closedByMaster, probe.received).toBe(true);
    expect(probe.received).not.toMatch(/"welcome"/);
    await master.waitForLog(/registration failed: .*ENOSPC/, 10_000);
    await waitFor("the node out of HAProxy again", async () => (await servers(inst))["full-1"] === undefined, 10_000, 50);
    await waitFor("the apply that took it out", async () => !(await fs.readFile(inst.haproxyConfig, "utf8")).includes("full-1"), 10_000, 50);
    expect((await fs.readdir(hostsDir)).filter((f) => f.endsWith(".json"))).toEqual([]);
    // Still so a moment later (an apply started for the registration must not have left it in).
    await new Promise((r) => setTimeout(r, 500));
    expect((await servers(inst))["full-1"]).toBeUndefined();
  }, 60_000);
});

describe("falling back to the reload path", () => {
  /** A socket at `file` that answers every command as `mode` says: an error text, a closed connection, or nothing at all. */
  async function wrongSocket(file: string) {
    let mode: "error" | "close" | "silent" = "error";
    const held: net.Socket[] = [];
    // allowHalfOpen: a silent HAProxy keeps its side open after the command, as a stuck one would.
    const server = net.createServer({ allowHalfOpen: true }, (c) => {
      held.push(c);
      c.on("error", () => undefined);
      c.once("data", () => {
        if (mode === "error") c.end("Unknown command. Please enter one of the following commands only :\n");
        else if (mode === "close") c.destroy();
        // silent: hold the connection; the master's 2 s timeout ends it.
      });
    });
    scope.trackServer(server);
    scope.onCleanup(() => held.forEach((c) => c.destroy()));
    await new Promise<void>((r) => server.listen(file, r));
    return { set: (m: typeof mode) => (mode = m) };
  }

  test("a runtime socket that answers an error, closes, or says nothing: logged with its words, applied by a reload, counted; HAProxy and the file agree", async () => {
    const dir = await scope.tempDir("autoscaler-wrong-sock-");
    const sock = path.join(dir, "wrong.sock");
    const wrong = await wrongSocket(sock);
    const { inst, master, store } = await runtimeProxy([`haproxy.runtime_socket=${sock}`]);
    const web = await freePort();
    await startWebApp(scope, "fallback-web", "127.0.0.1", web, dir);
    const expected = [
      ["error", /Unknown command\. Please enter one of the following commands only/],
      ["close", /show servers state autoscaler/],
      ["silent", /no answer from .*wrong\.sock within 2000 ms/],
    ] as const;
    for (const [i, [mode, words]] of expected.entries()) {
      wrong.set(mode);
      const name = `fb-${i}`;
      await store.put(hostEntry(name, web));
      await untilRunning(
        inst,
        expected.slice(0, i + 1).map((_, j) => `fb-${j}`),
      );
      await waitFor(`fallback ${i + 1} counted`, async () => (await status(inst)).haproxy.runtime_fallbacks === i + 1);
      expect(serverLines(await fs.readFile(inst.haproxyConfig, "utf8")).map((l) => l.split(" ")[1])).toEqual(expected.slice(0, i + 1).map((_, j) => `fb-${j}`));
      const warning = master
        .log()
        .split("\n")
        .filter((l) => l.includes("did not take the change"))
        .at(-1);
      expect(warning).toMatch(words);
    }
    expect(await getThrough(inst.frontendPort)).toBe("fallback-web");
  }, 60_000);

  test("a runtime socket that does not exist is a warning at start naming the key, and changes are reloads", async () => {
    const { inst, master, store } = await runtimeProxy(["haproxy.runtime_socket=missing.sock"]);
    expect(master.log()).toMatch(/\[haproxy\] runtime_socket \S*missing\.sock does not exist; registrations and removals are applied with a reload/);
    expect(master.log()).toMatch(/"key":"haproxy\.runtime_socket"/);
    const reloads = (await status(inst)).haproxy.reloads;
    await store.put(hostEntry("by-reload", await freePort()));
    await untilRunning(inst, ["by-reload"]);
    await waitFor("the reload", async () => (await status(inst)).haproxy.reloads === reloads + 1);
    expect((await status(inst)).haproxy.runtime_applies).toBe(0);
    expect(await canConnect(inst.frontendPort)).toBe(true);
  }, 60_000);
});
