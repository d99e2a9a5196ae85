// Runs the deterministic simulation over many seeds. Defaults to 2,500 seeds
// here (another 2,500 in sim-b.test.ts, so both vitest forks share the work);
// RAFT_SIM_SEEDS=n runs n seeds per file for a soak, RAFT_SIM_SEED=n replays one.

import { describe, it } from 'vitest';
import { runSimSeeds, simTimeoutMs } from './run.js';

describe('raft simulation', () => {
  it('keeps the Raft invariants and linearizability over random seeds (first half)', async () => {
    await runSimSeeds(0);
  }, simTimeoutMs());
});
