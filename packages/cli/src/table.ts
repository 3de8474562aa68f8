import { escapeControl } from "@autoscaler/shared";

/**
 * Format rows as a plain text table with a header, columns padded to their widest cell. Control
 * characters in a cell (text that came from a node or a file) are escaped, never printed raw.
 */
export function formatTable(header: string[], rows: string[][]): string {
  const safe = rows.map((r) => r.map(escapeControl));
  const widths = header.map((h, i) => Math.max(h.length, ...safe.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...safe.map(line)].join("\n") + "\n";
}

/**
 * A node's instance id as `status` and `instances` show it: "(own word)" when only the node
 * reported it (a scale-down never terminates on it), "none" when there is none at all (nor does
 * it then), and "-" for a hand-added backend, which is never terminated (remove-host is its way out).
 */
export function instanceCell(n: { instance_id: string | null; instance_id_trusted: boolean; source: string }): string {
  if (n.instance_id === null) return n.source === "manual" ? "-" : "none";
  return `${n.instance_id}${n.instance_id_trusted ? "" : " (own word)"}`;
}
