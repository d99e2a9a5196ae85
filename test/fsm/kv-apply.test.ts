// The state machine with the real request model (src/kv): replicas agree, and
// a request the model refuses halts apply.
import { describe, expect, it } from 'vitest';
import { kvExecutor } from '../../src/kv/index.js';
import { StateMachine, encodeRequestPayload, packHlc } from '../../src/fsm/index.js';
import { isSealError } from '../../src/errors/index.js';
import { kvLog } from '../support/fsm-logs.js';
import { MemoryFsmStore } from '../support/memory-fsm-store.js';

const T0 = 1_700_000_000_000;

describe('StateMachine over the kv request model', () => {
  it('two replicas agree on state and replies', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const log = kvLog(seed, 200);
      const a = new MemoryFsmStore();
      const b = new MemoryFsmStore();
      const ma = await StateMachine.open(a, kvExecutor);
      const mb = await StateMachine.open(b, kvExecutor);
      const ra = await ma.applyEntries(log);
      const rb = [];
      for (let i = 0; i < log.length; i += 3) rb.push(...(await mb.applyEntries(log.slice(i, i + 3))));
      expect(rb).toEqual(ra);
      expect(b.dump()).toBe(a.dump());
    }
  });

  it('halts on a committed request the model refuses', async () => {
    const machine = await StateMachine.open(new MemoryFsmStore(), kvExecutor);
    const err = await machine
      .applyEntries([{ index: 1, proposalId: 1n, payload: encodeRequestPayload({ op: 'flushall' }, packHlc(T0)) }])
      .catch((e: unknown) => e);
    expect(isSealError(err, 'ErrApplyPayload')).toBe(true);
    expect(isSealError((err as Error).cause, 'ErrBadRequest')).toBe(true);
    expect(machine.appliedIndex).toBe(0);
  });
});
