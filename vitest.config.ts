import path from "node:path";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

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

/**
 * The slowest files of the suite, slowest first (a CI run's durations: 160 s down to 30 s). They
 * start first, so that no long file is left running alone at the end while the other worker
 * idles; on a fresh clone vitest has no durations of its own and would start the largest files.
 */
const SLOW_FIRST = [
  "test/faults-master.test.ts",
  "test/faults-network.test.ts",
  "test/scaling.test.ts",
  "test/failover.test.ts",
  "test/crash-safety.test.ts",
  "test/demo.test.ts",
  "test/attacks.test.ts",
  "test/node-trust.test.ts",
  "test/refusals.test.ts",
  "test/scaling-commands.test.ts",
  "test/liveness.test.ts",
  "test/failover-input.test.ts",
  "test/packaging.test.ts",
  "test/resources.test.ts",
];

/** vitest's order (projects by group, then their own rule), with SLOW_FIRST at the front of each project. */
class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOW_FIRST.indexOf(path.relative(f.project.config.root, f.moduleId));
      return i < 0 ? SLOW_FIRST.length : i;
    };
    const order = (f: TestSpecification) => sorted.indexOf(f);
    return [...sorted].sort(
      (a, b) =>
        a.project.config.sequence.groupOrder - b.project.config.sequence.groupOrder ||
        (a.project.name === b.project.name ? rank(a) - rank(b) || order(a) - order(b) : order(a) - order(b)),
    );
  }
}

const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: "forks" as const,
};

export default defineConfig({
  test: {
    reporters: ["default"],
    sequence: { sequencer: SlowFirst },
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
