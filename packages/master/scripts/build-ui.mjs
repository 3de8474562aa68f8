// Builds the status page into dist/ui: ui/app.ts with uPlot bundled in (esbuild), uPlot's
// stylesheet followed by ui/app.css, and ui/index.html. The master serves these files itself.
import { build } from "esbuild";
import { promises as fs } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "dist", "ui");
const require = createRequire(import.meta.url);

await fs.mkdir(out, { recursive: true });
await build({
  entryPoints: [path.join(root, "ui", "app.ts")],
  outfile: path.join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
});
const uplotCss = await fs.readFile(require.resolve("uplot/dist/uPlot.min.css"), "utf8");
await fs.writeFile(path.join(out, "app.css"), `${uplotCss}\n${await fs.readFile(path.join(root, "ui", "app.css"), "utf8")}`);
await fs.copyFile(path.join(root, "ui", "index.html"), path.join(out, "index.html"));
