import { describe, expect, test } from "vitest";
import { parseAmount } from "./control.js";

describe("parseAmount: scale-up / scale-down N or N%", () => {
  test.each([
    [undefined, undefined],
    ["3", { count: 3 }],
    ["1000", { count: 1000 }],
    ["50%", { percent: 50 }],
    ["12.5%", { percent: 12.5 }],
    ["200%", { percent: 200 }],
  ])("%s → %j", (raw, expected) => {
    expect(parseAmount(raw)).toEqual(expected);
  });

  test.each(["0", "1001", "0%", "1001%", "-5%", "5 %", "%", "x%", "50%%"])("refuses %s with exit code 2", (raw) => {
    expect(() => parseAmount(raw)).toThrow(expect.objectContaining({ exitCode: 2 }) as Error);
  });
});
