import { describe, expect, test } from "vitest";
import { formatTable } from "./table.js";

describe("formatTable", () => {
  test.each([
    [
      "pads every column but the last to its widest cell",
      ["NAME", "PORT", "SOURCE"],
      [
        ["web-1", "80", "manual"],
        ["a-much-longer-name", "8080", "agent"],
      ],
      "NAME                PORT  SOURCE\nweb-1               80    manual\na-much-longer-name  8080  agent\n",
    ],
    ["prints only the header when there are no rows", ["NAME", "PORT"], [], "NAME  PORT\n"],
    ["widens a column for a long header", ["ADDRESS", "X"], [["1", "2"]], "ADDRESS  X\n1        2\n"],
    ["trims trailing blanks when the last cell is empty", ["A", "B"], [["x", ""]], "A  B\nx\n"],
    ["treats a missing cell as empty", ["A", "B", "C"], [["x"]], "A  B  C\nx\n"],
    [
      "escapes control characters in a cell (a node's bytes never reach the terminal raw)",
      ["A", "B"],
      [["x\x1b[2J", "y\nz"]],
      "A           B\nx\\u001b[2J  y\\u000az\n",
    ],
  ])("%s", (_what, header, rows, expected) => {
    expect(formatTable(header, rows)).toBe(expected);
  });

  test("lines up the columns of every row", () => {
    const out = formatTable(
      ["N", "ADDRESS", "PORT"],
      [
        ["a", "2001:db8::1", "80"],
        ["bbbbbb", "10.0.0.1", "65535"],
      ],
    );
    const lines = out.trimEnd().split("\n");
    const starts = lines.map((l) => l.indexOf(l.split(/\s{2,}/)[2]!));
    expect(new Set(starts).size).toBe(1);
  });
});
