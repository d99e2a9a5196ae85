// Capability (SPEC §8.1, §8.2): the decode rules of a GetCapability reply,
// and the fresh, bounded poll of every member — in memory, then over real
// RaftNode RPC on loopback.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CAPABILITY_METHOD,
  decodeCapability,
  pollCapabilities,
  type Capability,
  type CapabilityFailure,
  type CapabilityMember,
} from '../../src/encryption/index.js';
import { sealError } from '../../src/errors/index.js';
import { RaftNode } from '../../src/raft/index.js';
import { expectSealError } from '../support/kek-fixtures.js';
import { KvStateMachine } from '../raft/support/kv-state-machine.js';
import { freePorts } from '../support/ports.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const good = (name: string, over: Partial<Capability> = {}): Capability => ({
  encryption_capable: true,
  build: 'sealkv test',
  sidecar_present: false,
  full_node_id: name,
  local_epoch: 3,
  ...over,
});

describe('decodeCapability', () => {
  it('accepts a well-formed reply, epochs 0 and 0xFFFF included, ignoring unknown fields', () => {
    expect(decodeCapability(good('n1'), 'n1')).toEqual(good('n1'));
    expect(decodeCapability(good('n1', { local_epoch: 0 }), 'n1').local_epoch).toBe(0);
    expect(decodeCapability(good('n1', { local_epoch: 0xffff }), 'n1').local_epoch).toBe(0xffff);
    expect(decodeCapability({ ...good('n1'), future_field: [1] }, 'n1')).toEqual(good('n1'));
  });

  it('refuses local_epoch 0x10000, negative, fractional or huge with ErrLocalEpochOutOfRange naming the node', async () => {
    for (const local_epoch of [0x10000, -1, 1.5, 2 ** 60, 70000n]) {
      const e = await expectSealError(() => decodeCapability({ ...good('n3'), local_epoch }, 'n3'), 'ErrLocalEpochOutOfRange');
      expect(e.message).toContain('n3');
    }
  });

  it('refuses malformed replies with ErrCapabilityCheckFailed naming the node', async () => {
    const cases: unknown[] = [
      null,
      'capable',
      [good('n2')],
      Buffer.from('x'),
      { ...good('n2'), encryption_capable: 'yes' },
      { ...good('n2'), sidecar_present: undefined },
      { ...good('n2'), build: 7 },
      { ...good('n2'), full_node_id: '' },
      { ...good('n2'), full_node_id: 'x'.repeat(1000) },
      { ...good('n2'), local_epoch: '3' },
      { encryption_capable: true },
    ];
    for (const raw of cases) {
      const e = await expectSealError(() => decodeCapability(raw, 'n2'), 'ErrCapabilityCheckFailed');
      expect(e.message).toContain('n2');
    }
  });
});

describe('pollCapabilities', () => {
  const members: CapabilityMember[] = [1, 2, 3, 4].map((id) => ({ id, name: `n${id}`, addr: `127.0.0.1:${9000 + id}` }));

  it('returns every member’s capability when all are capable, polling each once, fresh each time', async () => {
    let calls = 0;
    const call = async (m: CapabilityMember) => {
      calls++;
      return good(m.name, { local_epoch: m.id });
    };
    const caps = await pollCapabilities(call, members, 1000);
    expect([...caps.keys()].sort()).toEqual([1, 2, 3, 4]);
    expect(caps.get(3)).toEqual(good('n3', { local_epoch: 3 }));
    await pollCapabilities(call, members, 1000);
    expect(calls).toBe(8);
  });

  it('names every failing member and why: unreachable, incapable, out of range, malformed, wrong identity', async () => {
    const call = async (m: CapabilityMember): Promise<unknown> => {
      if (m.id === 2) throw sealError('ErrTimeout', `rpc GetCapability to node 2 at ${m.addr}: unreachable (ECONNREFUSED)`);
      if (m.id === 3) return good('n3', { encryption_capable: false });
      if (m.id === 4) return good('n4', { local_epoch: 0x10000 });
      return good(m.name);
    };
    const e = await expectSealError(pollCapabilities(call, members, 1000), 'ErrCapabilityCheckFailed');
    expect(e.message).toMatch(/n2: unreachable/);
    expect(e.message).toMatch(/n3: not encryption capable/);
    expect(e.message).toMatch(/n4: ErrLocalEpochOutOfRange/);
    expect(e.message).not.toMatch(/n1:/);
    const failures = e.cause as CapabilityFailure[];
    expect(failures.map((f) => f.id)).toEqual([2, 3, 4]);

    const odd = async (m: CapabilityMember): Promise<unknown> => (m.id === 1 ? { nope: 1 } : m.id === 2 ? good('someone-else') : good(m.name));
    const e2 = await expectSealError(pollCapabilities(odd, members, 1000), 'ErrCapabilityCheckFailed');
    expect(e2.message).toMatch(/n1: malformed capability/);
    expect(e2.message).toMatch(/n2: answers as "someone-else"/);
  });

  it('settles within its timeout when a member never answers, naming it', async () => {
    const call = (m: CapabilityMember): Promise<unknown> => (m.id === 4 ? new Promise(() => {}) : Promise.resolve(good(m.name)));
    const e = await expectSealError(pollCapabilities(call, members, 150), 'ErrCapabilityCheckFailed');
    expect(e.message).toMatch(/n4: no answer within 150 ms/);
    expect(e.message).not.toMatch(/n[123]:/);
  });

  it('polls a real cluster over RaftNode RPC: a voter, a learner-to-be by address, and an unreachable one', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-capability-'));
    cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }));
    const ports = await freePorts(4);
    const start = async (id: number, capable: boolean): Promise<RaftNode> => {
      const dir = path.join(root, `n${id}`);
      const n = await RaftNode.start({
        id,
        dir,
        secret: Buffer.from('capability test secret, 32 bytes'),
        port: ports[id - 1],
        bootstrap: id === 1 ? { voters: [1], learners: [] } : undefined,
        peers: id === 1 ? { 2: `127.0.0.1:${ports[1]}` } : undefined,
        stateMachine: new KvStateMachine(path.join(dir, 'sm')),
        tickMs: 20,
        electionTick: 10,
        rpcHandlers: { [CAPABILITY_METHOD]: async () => good(`n${id}`, { encryption_capable: capable }) },
      });
      cleanups.push(() => n.stop());
      return n;
    };
    const leader = await start(1, true);
    await start(2, true);
    await start(3, false);
    const poll = (ms: readonly CapabilityMember[]) =>
      pollCapabilities((m, timeoutMs) => leader.callRpc(m.id, CAPABILITY_METHOD, {}, { addr: m.addr, timeoutMs }), ms, leader.electionTimeoutMs());
    // Node 2 by its known address, node 1 itself, the joining node 3 by an explicit one.
    const ok = await poll([{ id: 1, name: 'n1' }, { id: 2, name: 'n2' }]);
    expect(ok.get(2)?.full_node_id).toBe('n2');
    const e = await expectSealError(
      poll([
        { id: 1, name: 'n1' },
        { id: 3, name: 'n3', addr: `127.0.0.1:${ports[2]}` },
        { id: 4, name: 'n4', addr: `127.0.0.1:${ports[3]}` },
      ]),
      'ErrCapabilityCheckFailed',
    );
    expect(e.message).toMatch(/n3: not encryption capable/);
    expect(e.message).toMatch(/n4: unreachable/);
    expect(e.message).not.toMatch(/n1:/);
  });
});
