import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two cores: integration files spawn HAProxy and CLIs; two at a time keeps timings honest.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
