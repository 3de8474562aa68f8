/**
 * The status page's routes on `metrics_listen`: `/` (the HTML), `/page/app.js` and
 * `/page/app.css` (built by packages/master/scripts/build-ui.mjs into dist/ui, uPlot bundled in),
 * and `/page/data` (the JSON the page polls). Nothing on the page comes from elsewhere.
 */
import { promises as fs } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import type { PageData } from "./page-data.js";
import { parseRange, type Range } from "./page-data.js";

/** Where the built page lives: dist/ui beside this module's compiled file. */
export const UI_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "ui");

/** An answer: status, content type and body. */
export interface Reply {
  status: number;
  type: string;
  body: string | Buffer;
}

const ASSETS: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/page/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/page/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
};

/** The page's routes: undefined for a path that is not the page's. */
export function createPageRoutes(data: (range: Range, node: string | undefined) => PageData, dir = UI_DIR) {
  const cache = new Map<string, Buffer>();
  const asset = async (file: string): Promise<Buffer | undefined> => {
    const hit = cache.get(file);
    if (hit) return hit;
    const body = await fs.readFile(path.join(dir, file)).catch(() => undefined);
    if (body) cache.set(file, body);
    return body;
  };
  return async (pathname: string, query: URLSearchParams): Promise<Reply | undefined> => {
    if (pathname === "/page/data") {
      const node = query.get("node") ?? undefined;
      return { status: 200, type: "application/json", body: JSON.stringify(data(parseRange(query.get("range")), node)) };
    }
    const a = ASSETS[pathname];
    if (!a) return undefined;
    const body = await asset(a.file);
    if (!body)
      return { status: 503, type: "text/plain; charset=utf-8", body: `the status page is not built (${a.file} missing in ${dir}): run npm run build\n` };
    return { status: 200, type: a.type, body };
  };
}
