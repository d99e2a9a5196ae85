import { defineConfig } from 'vitest/config';

// Native addons (rocksdb-native, snappy) are safest in child processes, and
// the multi-process suites spawn nodes of their own: use forks, two at most
// on this 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The fault campaign's report, printed after every run (test/faults).
    globalSetup: ['test/faults/support/global-report.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
