// ReplicatedEngine over fake ports: writes go through propose (as the state
// machine would apply them with kvExecutor), linearizable reads wait for the
// barrier, and errors from the replicated path reach the client as RESP.

import { describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { kvExecutor, type KvRequest } from '../../src/kv/index.js';
import { ReplicatedEngine, type ReplicatedEnginePorts } from '../../src/server/index.js';
import { mapReader } from '../support/kv-reader.js';
import { startServer } from './helpers.js';

function fakeNode() {
  const reader = mapReader();
  const log = { barriers: 0, proposals: 0, failWith: null as Error | null };
  const ports: ReplicatedEnginePorts = {
    async propose(requests: readonly KvRequest[]) {
      if (log.failWith !== null) throw log.failWith;
      log.proposals++;
      const { writes, results } = await kvExecutor.execute(reader, requests, 1_000);
      reader.apply(writes);
      return results;
    },
    async readBarrier() {
      if (log.failWith !== null) throw log.failWith;
      log.barriers++;
    },
    reader,
    nowMs: () => 1_000,
    status: () => ({ engine: 'replicated', role: 'leader' }),
    close: async () => undefined,
  };
  return { ports, log };
}

describe('ReplicatedEngine', () => {
  it('proposes writes, reads after the barrier, and maps replicated-path errors', async () => {
    const { ports, log } = fakeNode();
    const h = await startServer({ engine: new ReplicatedEngine(ports) });
    try {
      const c = await h.client();
      expect(await c.set('a', '1', 'PX', 500)).toBe('OK');
      expect(await c.incr('n')).toBe(1);
      expect(await c.get('a')).toBe('1');
      expect(await c.pttl('a')).toBe(500);
      expect(log.proposals).toBe(2);
      expect(log.barriers).toBeGreaterThanOrEqual(2);
      const [, keys] = await c.scan('0');
      expect(keys.sort()).toEqual(['a', 'n']);
      log.failWith = sealError('ErrNotLeader', 'leader unknown during an election');
      await expect(c.set('b', '1')).rejects.toThrow(/^TRYAGAIN ErrNotLeader: /);
      await expect(c.get('a')).rejects.toThrow(/^TRYAGAIN ErrNotLeader: /);
      log.failWith = null;
      expect(await c.get('a')).toBe('1');
    } finally {
      await h.stop();
    }
  });

  it('skips the barrier for non-linearizable reads and refuses malformed apply results', async () => {
    const { ports, log } = fakeNode();
    const engine = new ReplicatedEngine(ports);
    await engine.read([{ op: 'get', key: Buffer.from('a') }], { linearizable: false });
    expect(log.barriers).toBe(0);
    const broken = new ReplicatedEngine({ ...ports, propose: async () => [{ nope: true }] });
    await expect(broken.execute([{ op: 'get', key: Buffer.from('a') }])).rejects.toThrow(/unexpected shape/);
  });
});
