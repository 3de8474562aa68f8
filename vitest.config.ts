import { defineConfig } from "vitest/config";

/**
 * Files that take the whole machine: they run alone, one at a time, after every other file has
 * finished (sequence.groupOrder), so tests that read a CPU burn are never starved by them (a
 * burst of 100 agents; fifty leader kills with a 1 s lease, where starved masters would also
 * lose their leases for the wrong reason).
 */
const ALONE = ["test/faults-burst.test.ts", "test/failover-kills.test.ts"];
/**
 * Files that mostly wait on the wall clock and use little CPU (a real cron schedule waits for the
 * next whole minute): they run beside the suite's two workers rather than holding one of them.
 */
const WAITING = ["test/schedules-realtime.test.ts"];

const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: "forks" as const,
  // An agent without [agent] instance_id asks the EC2 metadata service, and waits up to 20 s for
  // one that does not answer. Test agents that leave it empty ask a loopback port where nothing
  // listens instead (refused: no id, at once), whatever 169.254.169.254 does on this machine;
  // test/agents.test.ts points it at its own metadata service.
  env: { AUTOSCALER_METADATA_URL: "http://127.0.0.1:9" },
};

export default defineConfig({
  test: {
    reporters: ["default"],
    projects: [
      {
        test: {
          ...shared,
          name: "suite",
          include: ["packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
          exclude: ["**/node_modules/**", ...ALONE, ...WAITING],
          // Two cores: integration files spawn HAProxy and CLIs; two at a time keeps timings honest.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: "waiting",
          include: WAITING,
          maxWorkers: 1,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: "alone",
          include: ALONE,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
