// RaftEngine over a one-node stand-in for the Raft driver: proposals apply
// through the real state machine, and a real Redis client talks to it.
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { HybridClock, LeaderClock, StateMachine, type EntryOutcome } from '../../src/fsm/index.js';
import { kvExecutor } from '../../src/kv/index.js';
import { RaftEngine, type ReplicatedLog } from '../../src/node/index.js';
import { RespServer } from '../../src/server/index.js';
import { MemoryFsmStore } from '../support/memory-fsm-store.js';

async function singleNode(): Promise<{ engine: RaftEngine; machine: StateMachine; clock: LeaderClock; barriers: () => number }> {
  const store = new MemoryFsmStore();
  const hlc = new HybridClock();
  const machine = await StateMachine.open(store, kvExecutor, { clock: hlc });
  let index = 0;
  let nextId = 1n;
  let barriers = 0;
  const propose = async (payload: Uint8Array): Promise<EntryOutcome> => {
    const [result] = await machine.applyEntries([{ index: ++index, proposalId: nextId++, payload }]);
    return result!.outcome;
  };
  const log: ReplicatedLog = {
    propose,
    readBarrier: async () => void barriers++,
    status: () => ({ role: 'leader', applied_index: machine.appliedIndex }),
  };
  const clock = new LeaderClock(hlc, propose);
  return { engine: new RaftEngine({ log, openReader: () => store.rangeReader(), clock }), machine, clock, barriers: () => barriers };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('RaftEngine', () => {
  it('replicates writes as payloads and reads after a ReadIndex barrier', async () => {
    const { engine, machine, clock, barriers } = await singleNode();
    await clock.becomeLeader();
    const replies = await engine.execute([
      { op: 'set', key: Buffer.from('a'), value: Buffer.from('1') },
      { op: 'incrby', key: Buffer.from('a'), delta: 4n },
    ]);
    expect(replies).toEqual([{ kind: 'ok' }, { kind: 'int', value: 5n }]);
    expect(machine.appliedIndex).toBe(3);
    expect(await engine.read([{ op: 'get', key: Buffer.from('a') }], { linearizable: true })).toEqual([
      { kind: 'bulk', value: Buffer.from('5') },
    ]);
    expect(barriers()).toBe(1);
    await engine.read([{ op: 'get', key: Buffer.from('a') }], { linearizable: false });
    expect(barriers()).toBe(1);
    await expect(engine.read([{ op: 'del', keys: [Buffer.from('a')] }], { linearizable: false })).rejects.toThrow(TypeError);
    await engine.close();
    await expect(engine.execute([{ op: 'dbsize' }])).rejects.toMatchObject({ code: 'ErrRaftStopped' });
  });

  it('serves an unchanged ioredis client through the RESP server', async () => {
    const { engine, clock } = await singleNode();
    await clock.becomeLeader();
    const server = new RespServer({ engine, host: '127.0.0.1', port: 0 });
    const { port } = await server.start();
    cleanups.push(() => server.close());
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null });
    cleanups.push(async () => client.disconnect());
    expect(await client.set('greeting', 'hello')).toBe('OK');
    expect(await client.get('greeting')).toBe('hello');
    const pipeline = await client.pipeline().set('n', '10').incrby('n', 5).append('greeting', '!').exec();
    expect(pipeline?.map(([, v]) => v)).toEqual(['OK', 15, 6]);
    expect(await client.mget('n', 'greeting', 'missing')).toEqual(['15', 'hello!', null]);
    expect(await client.set('ttl', 'x', 'PX', 60_000)).toBe('OK');
    expect(await client.pttl('ttl')).toBeGreaterThan(0);
  });
});
