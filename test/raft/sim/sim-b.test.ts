import { describe, it } from 'vitest';
import { runSimSeeds } from './run.js';

describe('raft simulation', () => {
  it('keeps the Raft invariants and linearizability over random seeds (second half)', () => {
    runSimSeeds(1);
  });
});
