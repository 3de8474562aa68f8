/**
 * Why the config reader is our own rather than the npm `ini` package (which the design asked
 * for): `ini` takes `;` and `#` as the start of an inline comment, so a shell command loses all
 * after its first `;`. Python's ConfigParser, which the original tool's ini was written for, has
 * inline comments off by default and keeps the whole value; so does readIni.
 */
import ini from "ini";
import { expect, test } from "vitest";
import { readIni } from "./ini-reader.js";

const COMMAND = "aws ec2 run-instances --count 1; logger launched # note";
const TEXT = `[machine]\nscale_up_command = ${COMMAND}\n`;

test("the ini package cuts a scale_up_command at its ';' and loses the rest", () => {
  expect(ini.parse(TEXT)).toEqual({ machine: { scale_up_command: "aws ec2 run-instances --count 1" } });
});

test("readIni keeps the whole scale_up_command, ';' and '#' included, as ConfigParser does", () => {
  const { doc, errors } = readIni(TEXT);
  expect(errors).toEqual([]);
  expect(doc.get("machine")?.get("scale_up_command")?.value).toBe(COMMAND);
});
