import { describe, expect, test } from "vitest";
import { AutoscalerError } from "@autoscaler/shared";
import { parseSetting } from "./init.js";

describe("parseSetting", () => {
  test.each([
    ["a plain setting", "haproxy.config=haproxy.cfg", { section: "haproxy", key: "config", value: "haproxy.cfg" }],
    [
      "a value with = and spaces in it",
      "machine.scale_up_command=aws ec2 run-instances --filters Name=x",
      { section: "machine", key: "scale_up_command", value: "aws ec2 run-instances --filters Name=x" },
    ],
    ["a value with ; and #", "machine.scale_down_command=a; b # c", { section: "machine", key: "scale_down_command", value: "a; b # c" }],
    ["an empty value", "machine.scale_down_command=", { section: "machine", key: "scale_down_command", value: "" }],
    ["a key with digits", "scaling.max_nodes=5", { section: "scaling", key: "max_nodes", value: "5" }],
    ["a named policy's key", "policy:morning.change=+2", { section: "policy:morning", key: "change", value: "+2" }],
    ["a schedule's key", "schedule:week-day.cron=0 8 * * 1-5", { section: "schedule:week-day", key: "cron", value: "0 8 * * 1-5" }],
  ])("reads %s", (_what, text, expected) => {
    expect(parseSetting(text)).toEqual(expected);
  });

  test.each([
    ["an unknown key", "haproxy.nonsense=1", /haproxy\.nonsense: no such setting/],
    ["an unknown section", "cluster.size=3", /cluster\.size: no such setting/],
    ["a value with a newline", "haproxy.config=a\nb", /the value has a line break/],
    ["a value with a carriage return", "master.token=abc\rdef", /the value has a line break/],
    ["no = at all", "haproxy.config", /is not valid; expected section\.key=value/],
    ["no section", "config=x", /is not valid; expected section\.key=value/],
    ["an upper-case key", "HAPROXY.CONFIG=x", /is not valid; expected section\.key=value/],
    ["a key a policy does not have", "policy:morning.cron=* * * * *", /policy:morning\.cron: no such setting/],
    ["a section family that does not exist", "rule:x.change=+1", /rule:x\.change: no such setting/],
  ])("refuses %s with exit code 2", (_what, text, message) => {
    let thrown: unknown;
    try {
      parseSetting(text);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(AutoscalerError);
    expect(thrown).toMatchObject({ code: "AUTOSCALER_USAGE", exitCode: 2 });
    expect((thrown as Error).message).toMatch(message);
  });
});
