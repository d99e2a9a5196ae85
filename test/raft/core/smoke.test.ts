import { describe, expect, it } from 'vitest';
import { Cluster, enc, dec } from './harness.js';

describe('raft core smoke', () => {
  it('elects a leader and replicates a proposal to all', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.leader()).toBe(1);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    for (const n of c.nodes.values()) expect(n.applied.map((e) => dec(e.data))).toEqual(['a']);
  });
});
