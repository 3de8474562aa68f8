/** Render haproxy.cfg from the files on disk: the template and hosts.d. */
import { promises as fs } from "node:fs";
import type { Config } from "../config/load.js";
import { AutoscalerError, EXIT_CONFIG, errnoCode } from "../errors.js";
import type { HostEntry, HostsStore } from "../hosts-store.js";
import { renderHaproxyConfig, templateHasServers } from "./render.js";

/** Read the template; a missing or unusable template is a config problem (exit 78). */
export async function readTemplate(config: Config): Promise<string> {
  const file = config.haproxy.template;
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const why = errnoCode(err) === "ENOENT" ? "not found" : `unreadable (${(err as Error).message})`;
    throw new AutoscalerError(
      "AUTOSCALER_TEMPLATE_INVALID",
      `haproxy.template: ${file} is ${why}; run "autoscaler init" to write the default, or point [haproxy] template at your template`,
      { exitCode: EXIT_CONFIG },
    );
  }
  if (!templateHasServers(text)) {
    throw new AutoscalerError(
      "AUTOSCALER_TEMPLATE_INVALID",
      `haproxy.template: ${file} has no $SERVERS; expected $SERVERS where the server lines go, inside the backend`,
      { exitCode: EXIT_CONFIG },
    );
  }
  return text;
}

/** Every backend in hosts.d; a file that cannot be used stops the render (the live config stays). */
export async function readHosts(store: HostsStore): Promise<HostEntry[]> {
  const { hosts, problems } = await store.list();
  if (problems.length > 0) {
    throw new AutoscalerError(
      "AUTOSCALER_HOSTS_INVALID",
      `${problems.length} file${problems.length === 1 ? "" : "s"} in ${store.dir} cannot be used; fix or remove ${problems.length === 1 ? "it" : "them"} (nothing was changed):`,
      { details: problems.map((p) => `${p.file}: ${p.message}`) },
    );
  }
  return hosts;
}

/** Render from the template and hosts.d as they are on disk now. */
export async function renderFromFiles(config: Config, store: HostsStore, exclude: ReadonlySet<string> = new Set()): Promise<string> {
  const [template, hosts] = await Promise.all([readTemplate(config), readHosts(store)]);
  return renderHaproxyConfig(template, exclude.size > 0 ? hosts.filter((h) => !exclude.has(h.name)) : hosts, config.haproxy.server_line);
}
