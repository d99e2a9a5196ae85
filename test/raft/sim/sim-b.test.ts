import { describe, it } from 'vitest';
import { runSimSeeds, simTimeoutMs } from './run.js';

describe('raft simulation', () => {
  it('keeps the Raft invariants and linearizability over random seeds (second half)', async () => {
    await runSimSeeds(1);
  }, simTimeoutMs());
});
