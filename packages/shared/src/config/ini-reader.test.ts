import { describe, expect, test } from "vitest";
import { readIni, setIniValue } from "./ini-reader.js";

/** The value of section.key as read, or undefined. */
function valueOf(text: string, section: string, key: string): string | undefined {
  return readIni(text).doc.get(section)?.get(key)?.value;
}

describe("readIni", () => {
  test.each([
    ["keeps ; and # inside a value (no inline comments)", "[machine]\ncmd = a; b # c\n", "machine", "cmd", "a; b # c"],
    ["reads key: value", "[haproxy]\nserver_line: server $NAME $IP:$PORT\n", "haproxy", "server_line", "server $NAME $IP:$PORT"],
    ["splits at the first = or :", "[agent]\ncpu_source = pid:/run/app.pid\n", "agent", "cpu_source", "pid:/run/app.pid"],
    ["keeps = inside a value given with :", "[agent]\nhealth_url: http://x/?a=b\n", "agent", "health_url", "http://x/?a=b"],
    ["trims blanks around key and value", "[s]\n  key   =   value  \n", "s", "key", "value"],
    ["lower-cases keys", "[aws]\nAWS_Secret_Key = X\n", "aws", "aws_secret_key", "X"],
    ["keeps the case of values", "[aws]\nregion = EU-West-1\n", "aws", "region", "EU-West-1"],
    ["reads an empty value", "[machine]\nscale_down_command =\n", "machine", "scale_down_command", ""],
    ["skips a whole-line # comment", "[s]\n# key = commented\nkey = real\n", "s", "key", "real"],
    ["skips a whole-line ; comment", "[s]\n; key = commented\nkey = real\n", "s", "key", "real"],
    ["skips an indented comment line instead of continuing a value", "[s]\nkey = a\n  # note\n", "s", "key", "a"],
    ["joins an indented continuation line with a newline", "[s]\nkey = first\n  second\n", "s", "key", "first\nsecond"],
    ["does not continue a value across a blank line", "[s]\nkey = first\n\nother = x\n", "s", "key", "first"],
    ["strips a byte-order mark", "\uFEFF[aws]\nregion = x\n", "aws", "region", "x"],
    ["reads CRLF line ends", "[aws]\r\nregion = x\r\n", "aws", "region", "x"],
    ["lets the last duplicate key win", "[s]\nkey = 1\nkey = 2\n", "s", "key", "2"],
    ["merges a section given twice", "[s]\na = 1\n[t]\n[s]\nb = 2\n", "s", "a", "1"],
    ["trims blanks inside a section header", "[ master ]\nlisten = x\n", "master", "listen", "x"],
    ['puts a key before any section into the section ""', "key = x\n[s]\n", "", "key", "x"],
  ])("%s", (_what, text, section, key, expected) => {
    const { errors } = readIni(text);
    expect(errors).toEqual([]);
    expect(valueOf(text, section, key)).toBe(expected);
  });

  test("records the line each key came from", () => {
    const { doc } = readIni("; header\n[s]\n\na = 1\nb = 2\n");
    expect(doc.get("s")?.get("a")?.line).toBe(4);
    expect(doc.get("s")?.get("b")?.line).toBe(5);
  });

  test.each([
    ["a line without = or :", "[s]\na = 1\njust some words\n", 3],
    ["a line that starts with =", "[s]\n= value\n", 2],
    ["a section header without its closing bracket", "[s]\n[broken\n", 2],
  ])("reports %s with its line number", (_what, text, line) => {
    const { errors } = readIni(text);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.line).toBe(line);
    expect(errors[0]?.message).toContain(`line ${line}`);
  });

  test("never throws and keeps reading after a bad line", () => {
    const { doc, errors } = readIni("[s]\nbad line\nkey = after\n");
    expect(errors).toHaveLength(1);
    expect(doc.get("s")?.get("key")?.value).toBe("after");
  });
});

describe("setIniValue", () => {
  const base = [
    "# autoscaler config",
    "[aws]",
    "region = us-east-1",
    "",
    "[master]",
    "listen = 127.0.0.1:7300",
    "; token = put a secret here",
    "",
    "[scaling]",
    "min_nodes = 1",
    "",
  ].join("\n");

  test.each([
    ["replaces an existing key in place", base, ["aws", "region", "eu-west-1"], base.replace("region = us-east-1", "region = eu-west-1")],
    ["replaces a key written with : and other case", "[aws]\nRegion: us-east-1\n", ["aws", "region", "eu-west-1"], "[aws]\nregion = eu-west-1\n"],
    ["uncomments a commented `; key =` line of the section", base, ["master", "token", "T0K3N"], base.replace("; token = put a secret here", "token = T0K3N")],
    ["uncomments a commented `# key =` line of the section", "[master]\n# token =\n", ["master", "token", "T"], "[master]\ntoken = T\n"],
    [
      "appends after the last key of a section that has keys",
      base,
      ["scaling", "max_nodes", "5"],
      base.replace("min_nodes = 1\n", "min_nodes = 1\nmax_nodes = 5\n"),
    ],
    [
      "appends to an empty section without repeating its header",
      "[master]\n\n[scaling]\nmin_nodes = 1\n",
      ["master", "token", "T"],
      "[master]\ntoken = T\n\n[scaling]\nmin_nodes = 1\n",
    ],
    ["appends to an empty last section", "[aws]\nregion = x\n\n[master]\n", ["master", "token", "T"], "[aws]\nregion = x\n\n[master]\ntoken = T\n"],
    ["creates a missing section at the end", base, ["agent", "port", "8080"], `${base}\n[agent]\nport = 8080\n`],
    ["creates a section in a file without a final newline", "[aws]\nregion = x", ["agent", "port", "8080"], "[aws]\nregion = x\n\n[agent]\nport = 8080\n"],
    ["leaves a same-named key of another section alone", "[a]\nport = 1\n[b]\nport = 2\n", ["b", "port", "3"], "[a]\nport = 1\n[b]\nport = 3\n"],
    [
      "does not uncomment a commented key of another section",
      "[aws]\n; token = x\n[master]\nlisten = y\n",
      ["master", "token", "T"],
      "[aws]\n; token = x\n[master]\nlisten = y\ntoken = T\n",
    ],
  ])("%s", (_what, text, [section, key, value], expected) => {
    expect(setIniValue(text, section!, key!, value!)).toBe(expected);
  });

  test("writes a value that readIni reads back, keeping ; and # in it", () => {
    const out = setIniValue(base, "machine", "scale_up_command", "aws ec2 run-instances; echo done # really");
    expect(valueOf(out, "machine", "scale_up_command")).toBe("aws ec2 run-instances; echo done # really");
    expect(out.startsWith("# autoscaler config\n")).toBe(true);
  });
});
