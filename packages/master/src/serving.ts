/**
 * What "active" means wherever the master counts or lists backends (status's capacity, `instances`,
 * the inventory, the page, /metrics): a backend HAProxy serves, as far as the master knows. That is
 * a node whose agent reports (live), or a backend an operator added by hand, which has no agent to
 * hear from. A node whose agent went silent keeps its server line, but is "unreachable", not
 * active. (`autoscaler hosts`, which reads only files, says "in haproxy.cfg" instead.)
 */
export function isActive(live: boolean, handAdded: boolean): boolean {
  return live || handAdded;
}
