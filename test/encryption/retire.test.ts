// retire-dek's decision (SPEC §4.2) over every member's facts: each storage
// and raft criterion refuses on its own, with the member and reason named and
// the right code; all met, it passes.
import { describe, expect, it } from 'vitest';
import { retireRefusal, type MemberFacts, type RetireFacts } from '../../src/encryption/index.js';

const N = 1001;
const superseded = { index: 50, belowTs: 1_000n };

function storage(node: string, over: Partial<NonNullable<RetireFacts['storage']>> = {}, active = { storage: 3003, raft: 2002 }): MemberFacts {
  return { node, facts: { node, active, storage: { sweep_done: true, cursor: false, versions: 0, min_retained_ts: '1000', log_first_index: 51, ...over } } };
}

function raft(node: string, over: Partial<NonNullable<RetireFacts['raft']>> = {}, active = { storage: 3003, raft: 4004 }): MemberFacts {
  return { node, facts: { node, active, raft: { log_first_index: 51, snapshot_index: 50, last_index_sealed: null, ...over } } };
}

describe('retire-dek criteria', () => {
  it('a storage DEK passes only when every member swept, holds no version or cursor, GC passed its newest version and its log starts after the rotation', () => {
    expect(retireRefusal(N, 'storage', superseded, [storage('n1'), storage('n2')])).toBeUndefined();
    const cases: [string, MemberFacts, RegExp][] = [
      ['versions', storage('n2', { versions: 7 }), /n2: 7 stored versions under it/],
      ['cursor', storage('n2', { cursor: true }), /n2: a rewrite cursor names it/],
      ['sweep', storage('n2', { sweep_done: false }), /n2: its rewrite sweep has not finished/],
      ['gc horizon', storage('n2', { min_retained_ts: '999' }), /n2: minRetainedTS 999 is not past its newest version \(below 1000\)/],
      ['log', storage('n2', { log_first_index: 50 }), /n2: its Raft log \(from 50\) still holds entries applied under it \(rotation at 50\)/],
      ['active', storage('n2', {}, { storage: N, raft: 2002 }), /n2: DEK 1001 is active there/],
      ['unreachable', { node: 'n2', error: 'ErrTimeout: no answer' }, /n2: did not answer \(ErrTimeout: no answer\)/],
    ];
    for (const [what, member, message] of cases) {
      const err = retireRefusal(N, 'storage', superseded, [storage('n1'), member]);
      expect(err?.code, what).toBe('ErrDEKStillReferenced');
      expect(err?.message, what).toMatch(message);
      expect(err?.message, what).not.toMatch(/n1:/);
    }
  });

  it('counts per member are all named in one refusal', () => {
    const err = retireRefusal(N, 'storage', superseded, [storage('n1', { versions: 3, sweep_done: false }), storage('n2', { versions: 5, sweep_done: false })]);
    expect(err?.message).toMatch(/n1: 3 stored versions under it.*n2: 5 stored versions under it/);
  });

  it('a raft DEK passes only when no member log holds an entry under it and every snapshot is past its rotation', () => {
    expect(retireRefusal(N, 'raft', superseded, [raft('n1'), raft('n2')])).toBeUndefined();
    for (const [what, member, message] of [
      ['log', raft('n2', { last_index_sealed: 60 }), /n2: its Raft log \(from 51\) still holds entry 60 sealed under it/],
      ['snapshot', raft('n2', { snapshot_index: 49, log_first_index: 50 }), /n2: its latest snapshot \(49\) was taken before the rotation at 50/],
    ] as const) {
      const err = retireRefusal(N, 'raft', superseded, [raft('n1'), member]);
      expect(err?.code, what).toBe('ErrRaftDEKWALStillReferences');
      expect(err?.message, what).toMatch(message);
    }
  });

  it('a DEK never replaced by a rotation has no bound to check against: refused', () => {
    expect(retireRefusal(N, 'storage', undefined, [storage('n1')])?.message).toMatch(/no record of when DEK 1001 stopped being active/);
  });
});
