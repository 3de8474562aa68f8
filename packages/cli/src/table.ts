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
