/**
 * `autoscaler demo-web` (hidden; used by the demo): a web app that answers every request with
 * its node's name after `workMs` of CPU work, so traffic through HAProxy shows as CPU on the
 * node (the agent measures this process with `cpu_source = pid:`). Writes its pid file once
 * it listens; exits when its folder disappears (the demo cleaned up) or on SIGTERM.
 */
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";

/** Options of one web app. */
export interface DemoWebOptions {
  name: string;
  address: string;
  port: number;
  pidFile: string;
  workMs: number;
}

/** Busy for `ms` of wall time: CPU work that shows in the process's own counters. */
function work(ms: number): void {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
}

/** Run the web app until SIGTERM; resolves when it has stopped. */
export async function runDemoWeb(options: DemoWebOptions): Promise<void> {
  const server = http.createServer((req, res) => {
    if (req.url !== "/health") work(options.workMs);
    res.writeHead(200, { "content-type": "text/plain" }).end(options.name);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.address, () => resolve());
  });
  writeFileSync(options.pidFile, `${process.pid}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      clearInterval(watch);
      server.closeAllConnections();
      server.close(() => resolve());
    };
    // A web app whose demo folder is gone has outlived its demo.
    const watch = setInterval(() => {
      if (!existsSync(options.pidFile)) stop();
    }, 1000);
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}
