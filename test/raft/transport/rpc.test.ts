// RPC between peers over the authenticated transport: a call and its reply,
// SealError codes travelling back, unknown methods, timeouts, unreachable
// peers, calling a node that is not a peer by its address, refusal of a bad
// secret, and the frame limit both ways.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SealError, sealError } from '../../../src/errors/index.js';
import { RaftNode, type NodeId } from '../../../src/raft/index.js';
import { Transport, type TransportOptions } from '../../../src/raft/transport/index.js';
import { expectSealError } from '../../support/kek-fixtures.js';
import { freePorts, until } from '../../support/ports.js';
import { KvStateMachine } from '../support/kv-state-machine.js';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function transport(id: NodeId, over: Partial<TransportOptions> = {}): Promise<Transport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-rpc-'));
  const t = new Transport({
    id,
    secret: SECRET,
    snapshotDir: dir,
    handler: { onMessage: () => {}, onUnreachable: () => {}, onSnapshot: async () => {} },
    ...over,
  });
  await t.start();
  cleanups.push(async () => {
    await t.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return t;
}

const addr = (t: Transport): string => `127.0.0.1:${t.port}`;

/** Awaits `p`, which must reject, and returns what it rejected with. */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}


describe('Transport RPC', () => {
  it('answers a call with the handler result, naming the authenticated caller', async () => {
    const b = await transport(2);
    const a = await transport(1);
    const seen: NodeId[] = [];
    b.serveRpc('Echo', async (body, from) => {
      seen.push(from);
      return { got: body, by: 2 };
    });
    const reply = await a.callRpc(2, addr(b), 'Echo', { x: [1, 2, 3], s: 'hi', bytes: Buffer.from([9, 8]) }, 5000);
    expect(reply).toMatchObject({ by: 2, got: { x: [1, 2, 3], s: 'hi' } });
    expect(Buffer.from((reply as { got: { bytes: Uint8Array } }).got.bytes)).toEqual(Buffer.from([9, 8]));
    // Several calls at once, each on its own connection.
    const many = await Promise.all([...Array(10).keys()].map((i) => a.callRpc(2, addr(b), 'Echo', i, 5000)));
    expect(many.map((r) => (r as { got: number }).got)).toEqual([...Array(10).keys()]);
    expect(seen.every((f) => f === 1)).toBe(true);
    expect(b.stats.rpcServed).toBe(11);
  });

  it('rethrows a handler SealError with its code, and any other error as a plain Error without a stack', async () => {
    const b = await transport(2);
    const a = await transport(1);
    b.serveRpc('Sealed', async () => {
      throw sealError('ErrLocalEpochOutOfRange', 'epoch 70000 above 0xFFFF');
    });
    b.serveRpc('Plain', async () => {
      throw new TypeError('boom inside the handler');
    });
    const e1 = await expectSealError(a.callRpc(2, addr(b), 'Sealed', null, 5000), 'ErrLocalEpochOutOfRange');
    expect(e1.message).toContain('epoch 70000 above 0xFFFF');
    expect(e1.message.match(/ErrLocalEpochOutOfRange/g)?.length).toBe(1);
    const e2 = await failure(a.callRpc(2, addr(b), 'Plain', null, 5000));
    expect(e2).not.toBeInstanceOf(SealError);
    expect(e2.message).toContain('boom inside the handler');
    expect(e2.message).not.toMatch(/\bat .*\.ts:\d+/);
  });

  it('answers an unknown method with ErrBadRequest', async () => {
    const b = await transport(2);
    const a = await transport(1);
    const e = await expectSealError(a.callRpc(2, addr(b), 'NoSuchMethod', {}, 5000), 'ErrBadRequest');
    expect(e.message).toContain('NoSuchMethod');
  });

  it('times out a call whose handler never answers', async () => {
    const b = await transport(2);
    const a = await transport(1);
    b.serveRpc('Hang', () => new Promise(() => {}));
    const e = await expectSealError(a.callRpc(2, addr(b), 'Hang', {}, 200), 'ErrTimeout');
    expect((e as SealError).retryable).toBe(true);
  });

  it('reports an unreachable port as a retryable ErrTimeout', async () => {
    const a = await transport(1);
    const e = await expectSealError(a.callRpc(2, `127.0.0.1:${(await freePorts(1))[0]}`, 'Echo', {}, 2000), 'ErrTimeout');
    expect(e.message).toMatch(/unreachable/);
  });

  it('calls a node that is no peer of the caller by its address, and refuses one answering with another id', async () => {
    const learner = await transport(7);
    const a = await transport(1);
    learner.serveRpc('Who', async () => 'learner 7');
    expect(a.peerAddress(7)).toBeUndefined();
    expect(await a.callRpc(7, addr(learner), 'Who', null, 5000)).toBe('learner 7');
    const e = await expectSealError(a.callRpc(8, addr(learner), 'Who', null, 2000), 'ErrTimeout');
  });

  it('refuses a caller with the wrong secret before any handler runs', async () => {
    const b = await transport(2);
    const bad = await transport(1, { secret: Buffer.from('another secret, same length!!!!!') });
    let ran = 0;
    b.serveRpc('Echo', async (x) => {
      ran++;
      return x;
    });
    const e = await expectSealError(bad.callRpc(2, addr(b), 'Echo', 'hello', 2000), 'ErrTimeout');
    expect(e.message).toMatch(/refused/);
    expect(ran).toBe(0);
    expect(b.stats.rejectedConnections).toBeGreaterThanOrEqual(1);
  });

  it('holds frames to the rpc limit: requests and replies over it are refused', async () => {
    const b = await transport(2, { rpcMaxFrameBytes: 1024 });
    const a = await transport(1, { rpcMaxFrameBytes: 64 * 1024 });
    let ran = 0;
    b.serveRpc('Echo', async (x) => {
      ran++;
      return x;
    });
    b.serveRpc('Big', async () => Buffer.alloc(4096));
    // The caller's own limit: refused before it is sent.
    const e1 = await expectSealError(a.callRpc(2, addr(b), 'Echo', Buffer.alloc(128 * 1024), 2000), 'ErrRequestTooLarge');
    // Over the callee's limit: the callee cuts the connection, unprocessed.
    const e2 = await expectSealError(a.callRpc(2, addr(b), 'Echo', Buffer.alloc(8 * 1024), 2000), 'ErrTimeout');
    expect(ran).toBe(0);
    // A reply over the callee's limit becomes an error reply.
    const e3 = await failure(a.callRpc(2, addr(b), 'Big', null, 2000));
    expect(e3.message).toMatch(/over the limit/);
    // A reply over the caller's limit is refused by the caller.
    const small = await transport(3, { rpcMaxFrameBytes: 1024 });
    const big = await transport(4);
    big.serveRpc('Big', async () => Buffer.alloc(4096));
    const e4 = await expectSealError(small.callRpc(4, addr(big), 'Big', null, 2000), 'ErrTimeout');
    // Calls that fit still work.
    expect(await a.callRpc(2, addr(b), 'Echo', 'fits', 2000)).toBe('fits');
    expect(ran).toBe(1);
  });

  it('answers calls past its concurrency cap with a retryable ErrTimeout, and serves again once a slot frees', async () => {
    const b = await transport(2, { rpcMaxConcurrent: 1 });
    const a = await transport(1);
    let release: () => void = () => {};
    b.serveRpc('Slow', () => new Promise((r) => (release = () => r('done'))));
    const first = a.callRpc(2, addr(b), 'Slow', null, 10_000);
    await until(() => b.stats.rpcServed === 1, 'the first call served');
    const e = await expectSealError(a.callRpc(2, addr(b), 'Slow', null, 5000), 'ErrTimeout');
    expect(e.message).toMatch(/retry/);
    release();
    expect(await first).toBe('done');
    const again = a.callRpc(2, addr(b), 'Slow', null, 10_000);
    await until(() => b.stats.rpcServed === 2, 'the third call served');
    release();
    expect(await again).toBe('done');
  });

  it('rejects calls in flight when the caller stops', async () => {
    const b = await transport(2);
    const a = await transport(1);
    b.serveRpc('Hang', () => new Promise(() => {}));
    const p = expectSealError(a.callRpc(2, addr(b), 'Hang', {}, 30_000), 'ErrRaftStopped');
    await new Promise((r) => setTimeout(r, 50));
    await a.stop();
    await p;
    await expectSealError(a.callRpc(2, addr(b), 'Hang', {}, 1000), 'ErrRaftStopped');
  });
});

describe('RaftNode RPC', () => {
  it('serves and calls by known or explicit address, and reports membership and the election timeout', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-rpc-node-'));
    cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }));
    const ports = await freePorts(3);
    const start = async (id: number, over: Partial<Parameters<typeof RaftNode.start>[0]> = {}): Promise<RaftNode> => {
      const dir = path.join(root, `n${id}`);
      const n = await RaftNode.start({
        id,
        dir,
        secret: SECRET,
        port: ports[id - 1],
        stateMachine: new KvStateMachine(path.join(dir, 'sm')),
        tickMs: 20,
        electionTick: 15,
        ...over,
      });
      cleanups.push(() => n.stop());
      return n;
    };
    const who = (id: number) => async (body: unknown, from: NodeId) => ({ id, from, body });
    // Node 1 founds a one-voter cluster and knows node 2's address; node 3 belongs to no cluster.
    const n1 = await start(1, { bootstrap: { voters: [1], learners: [] }, peers: { 2: `127.0.0.1:${ports[1]}` }, rpcHandlers: { Who: who(1) } });
    const n2 = await start(2, { rpcHandlers: { Who: who(2) } });
    const n3 = await start(3);
    n3.serveRpc('Who', who(3));
    expect(n1.electionTimeoutMs()).toBe(300);
    expect(n1.members()).toEqual({ voters: [1], learners: [] });
    expect(n1.peerAddress(2)).toBe(`127.0.0.1:${ports[1]}`);
    expect(n1.peerAddress(1)).toBe(`127.0.0.1:${ports[0]}`);
    expect(n1.peerAddress(3)).toBeUndefined();
    expect(await n1.callRpc(2, 'Who', 'x', { timeoutMs: 5000 })).toEqual({ id: 2, from: 1, body: 'x' });
    expect(await n1.callRpc(1, 'Who', 'self', { timeoutMs: 5000 })).toEqual({ id: 1, from: 1, body: 'self' });
    expect(await n1.callRpc(3, 'Who', null, { addr: `127.0.0.1:${ports[2]}`, timeoutMs: 5000 })).toEqual({ id: 3, from: 1, body: null });
    const e = await expectSealError(n1.callRpc(3, 'Who', null, { timeoutMs: 5000 }), 'ErrTimeout');
    expect(e.message).toMatch(/no address/);
  });
});
