// Unit tests of the core's building blocks: storage, framing, flow control.

import { describe, expect, it } from 'vitest';
import { isSealError } from '../../../src/errors/index.js';
import {
  MemoryStorage,
  decodeConfChange,
  decodeProposal,
  encodeConfChange,
  encodeProposal,
  seededRandInt,
  seededRandom,
  type Entry,
} from '../../../src/raft/index.js';
import { Inflights, Progress } from '../../../src/raft/core/progress.js';
import { Cluster, enc } from './harness.js';

const ent = (index: number, term: number, data = ''): Entry => ({ index, term, type: 'normal', data: enc(data) });

describe('proposal framing (SPEC §6)', () => {
  it('is 0x01 ‖ id (8 bytes BE) ‖ payload and round-trips', () => {
    const b = encodeProposal(0x0102030405060708n, enc('hi'));
    expect([...b]).toEqual([0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x68, 0x69]);
    const { id, payload } = decodeProposal(b);
    expect(id).toBe(0x0102030405060708n);
    expect(new TextDecoder().decode(payload)).toBe('hi');
    expect(decodeProposal(encodeProposal((1n << 64n) - 1n, new Uint8Array(0))).id).toBe((1n << 64n) - 1n);
  });

  it('rejects ids outside u64 and data that is not a framed proposal', () => {
    expect(() => encodeProposal(-1n, enc(''))).toThrow(RangeError);
    expect(() => encodeProposal(1n << 64n, enc(''))).toThrow(RangeError);
    for (const bad of [new Uint8Array(0), new Uint8Array(8).fill(1), Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0)]) {
      let err: unknown;
      try {
        decodeProposal(bad);
      } catch (e) {
        err = e;
      }
      expect(isSealError(err, 'ErrRaftLogCorrupt')).toBe(true);
    }
  });
});

describe('conf change encoding', () => {
  it('round-trips every type, with and without context', () => {
    for (const type of ['addNode', 'addLearnerNode', 'removeNode'] as const) {
      expect(decodeConfChange(encodeConfChange({ type, nodeId: 7 }))).toEqual({ type, nodeId: 7 });
      expect(decodeConfChange(encodeConfChange({ type, nodeId: 2 ** 40, context: enc('c') }))).toEqual({
        type,
        nodeId: 2 ** 40,
        context: enc('c'),
      });
    }
    expect(() => decodeConfChange(Uint8Array.of(1, 9, 0, 0, 0, 0, 0, 0, 0, 1))).toThrow(RangeError);
    expect(() => encodeConfChange({ type: 'addNode', nodeId: 0 })).toThrow(RangeError);
  });
});

describe('MemoryStorage', () => {
  it('appends, overwrites a conflicting suffix, and bounds reads by size', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1, 'a'), ent(2, 1, 'b'), ent(3, 1, 'c')]);
    expect(s.lastIndex()).toBe(3);
    s.append([ent(2, 2, 'B')]);
    expect(s.lastIndex()).toBe(2);
    expect(s.term(2)).toBe(2);
    expect(() => s.append([ent(5, 2)])).toThrow(RangeError); // gap
    s.append([ent(3, 2, 'x'.repeat(100)), ent(4, 2, 'y')]);
    expect(s.entries(1, 5, 1)).toHaveLength(1); // at least one
    expect(s.entries(1, 5, 60)).toHaveLength(2);
    expect(s.entries(1, 5, Infinity)).toHaveLength(4);
  });

  it('snapshots and compacts, keeping term(firstIndex - 1)', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 2)]);
    const snap = s.createSnapshot(3, { voters: [1, 2], learners: [3] });
    expect(snap).toEqual({ index: 3, term: 2, confState: { voters: [1, 2], learners: [3] } });
    s.compact(3);
    expect(s.firstIndex()).toBe(4);
    expect(s.term(3)).toBe(2);
    expect(() => s.term(2)).toThrow(RangeError);
    expect(() => s.entries(3, 4, Infinity)).toThrow(RangeError);
    expect(() => s.compact(4)).toThrow(RangeError); // past the snapshot
    expect(s.initialState().confState).toEqual({ voters: [1, 2], learners: [3] });
    // appending entries that are partly compacted keeps the tail only
    s.append([ent(3, 2), ent(4, 2), ent(5, 3)]);
    expect(s.lastIndex()).toBe(5);
    s.applySnapshot({ index: 10, term: 4, confState: { voters: [1], learners: [] } });
    expect([s.firstIndex(), s.lastIndex(), s.term(10)]).toEqual([11, 10, 4]);
  });

  it('bootstrap holds the founding membership at index 1, term 1', () => {
    const s = MemoryStorage.bootstrap({ voters: [1, 2, 3], learners: [] });
    expect(s.snapshot()).toEqual({ index: 1, term: 1, confState: { voters: [1, 2, 3], learners: [] } });
    expect(s.initialState().hardState).toEqual({ term: 1, vote: 0, commit: 1 });
    expect([s.firstIndex(), s.lastIndex()]).toEqual([2, 1]);
  });
});

describe('flow control', () => {
  it('Inflights is a bounded window freed by acknowledgement', () => {
    const w = new Inflights(3);
    w.add(5);
    w.add(7);
    w.add(9);
    expect(w.full()).toBe(true);
    expect(() => w.add(10)).toThrow();
    w.freeLE(7);
    expect(w.length).toBe(1);
    w.add(11);
    w.add(12);
    w.freeFirstOne();
    expect(w.length).toBe(2);
    w.freeLE(100);
    expect(w.length).toBe(0);
  });

  it('Progress moves between probe, replicate and snapshot', () => {
    const p = new Progress(10, 2, false);
    expect(p.isPaused()).toBe(false);
    p.probeSent = true;
    expect(p.isPaused()).toBe(true);
    expect(p.maybeUpdate(9)).toBe(true);
    expect(p.isPaused()).toBe(false);
    p.becomeReplicate();
    expect(p.next).toBe(10);
    p.optimisticUpdate(12);
    p.inflights.add(12);
    // a stale rejection (at or below match) is ignored; a fresh one resets next
    expect(p.maybeDecrTo(8, 8)).toBe(false);
    expect(p.maybeDecrTo(11, 9)).toBe(true);
    expect(p.next).toBe(10);
    p.becomeSnapshot(50);
    expect(p.isPaused()).toBe(true);
    p.becomeProbe();
    expect(p.next).toBe(51);
    // in probe, a rejection that is not for next - 1 is stale
    expect(p.maybeDecrTo(40, 10)).toBe(false);
    expect(p.maybeDecrTo(50, 20)).toBe(true);
    expect(p.next).toBe(21);
  });
});

describe('uncommitted size limit', () => {
  it('drops proposals past maxUncommittedEntriesSize while a quorum is unreachable', () => {
    const c = new Cluster([1, 2, 3], { maxUncommittedEntriesSize: 100 });
    c.elect(1);
    c.drop = (m) => m.from !== 1 && m.to === 1;
    c.node(1).rn.propose(new Uint8Array(80));
    expect(() => c.node(1).rn.propose(new Uint8Array(80))).toThrow(/ErrProposalDropped/);
    c.drop = () => false;
    c.tickAll(2);
    c.node(1).rn.propose(new Uint8Array(80));
  });
});

describe('seeded randomness', () => {
  it('is deterministic per seed and within range', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    for (let i = 0; i < 100; i++) expect(a()).toBe(b());
    const r = seededRandInt(7);
    for (let i = 0; i < 1000; i++) {
      const v = r(10);
      expect(v >= 0 && v < 10 && Number.isInteger(v)).toBe(true);
    }
  });
});
