// RaftNode in one process: three nodes over real TCP and fsynced logs.
// Proposals and their results, forwarding, ReadIndex reads, the apply hook
// halting a node and the entry replayed after restart, catch-up of a node
// behind a compacted log by a streamed snapshot, membership changes, stop.

import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSealError } from '../../../src/errors/index.js';
import { RaftNode, type ApplyHook, type RaftNodeOptions } from '../../../src/raft/index.js';
import { KvStateMachine, kvPayload } from '../support/kv-state-machine.js';
import { freePorts, until } from '../../support/ports.js';
import { DRIVER_SECRET, DriverClusters } from '../support/driver-cluster.js';

const clusters = new DriverClusters();
afterEach(() => clusters.cleanup());
const cluster = (n: number, over: Partial<RaftNodeOptions> = {}) => clusters.cluster(n, over);

describe('RaftNode', () => {
  it('commits proposals from the leader and from followers, and reads linearizably', async () => {
    const c = await cluster(3);
    const lead = await c.leader();
    const follower = [...c.members.values()].find((m) => m !== lead)!;
    const r1 = await lead.node.propose(kvPayload('a', '1'));
    const r2 = await follower.node.propose(kvPayload('b', '2'));
    expect(typeof r1).toBe('number');
    expect(r2).toBeGreaterThan(r1 as number);
    // A write acknowledged by the leader is visible to a ReadIndex read on any node.
    await lead.node.propose(kvPayload('c', '3'));
    for (const m of c.members.values()) {
      expect(await m.node.linearizableRead(() => m.sm.data.get('c'))).toBe('3');
    }
    const err = await follower.node.propose(kvPayload('x', 'y'), { requireLeader: true }).catch((e: unknown) => e);
    expect(isSealError(err, 'ErrNotLeader')).toBe(true);
    const many = await Promise.all([...Array(200).keys()].map((i) => lead.node.propose(kvPayload(`k${i}`, `v${i}`))));
    expect(new Set(many).size).toBe(200);
    await until(() => [...c.members.values()].every((m) => m.sm.data.size === 203), 'replication');
  });

  it('a whole cluster restarted from its directories keeps its state and goes on', async () => {
    const c = await cluster(3, { snapshotEntries: 30, compactionRetain: 5 });
    let lead = await c.leader();
    for (let i = 0; i < 100; i++) await lead.node.propose(kvPayload(`k${i}`, `v${i}`));
    await until(() => [...c.members.values()].every((m) => m.sm.data.size === 100), 'replication');
    const appliedBefore = new Map([...c.members].map(([id, m]) => [id, m.sm.appliedIndex()]));
    for (const id of [...c.members.keys()]) await c.stop(id);
    for (const id of [1, 2, 3]) await c.start(id);
    lead = await c.leader();
    await lead.node.propose(kvPayload('after', 'restart'));
    for (const m of c.members.values()) {
      expect(await m.node.linearizableRead(() => m.sm.data.size)).toBe(101);
      expect(m.sm.appliedLog.filter((i) => i <= appliedBefore.get(m.id)!)).toEqual([]); // nothing applied twice
      expect(m.node.halted).toBeUndefined();
    }
  });

  it('an apply hook failure halts the node before that entry; a restart replays it', async () => {
    let poisoned = true;
    const hook: ApplyHook = (_e, p) => {
      if (poisoned && Buffer.from(p).toString().includes('poison')) throw new Error('cannot unwrap');
      return p;
    };
    const c = await cluster(3);
    const lead = await c.leader();
    const victimId = [...c.members.keys()].find((id) => id !== lead.id)!;
    await c.stop(victimId);
    let haltedWith: Error | undefined;
    const victim = await c.start(victimId, { applyHook: hook, onHalt: (e) => (haltedWith = e) });
    await lead.node.propose(kvPayload('before', '1'));
    const poisonIndex = (await lead.node.propose(kvPayload('poison', '!'))) as number;
    await lead.node.propose(kvPayload('after', '1'));
    await until(() => haltedWith !== undefined, 'halt');
    expect(victim.node.halted?.message).toContain('cannot unwrap');
    expect(victim.sm.appliedIndex()).toBe(poisonIndex - 1);
    expect(victim.sm.data.get('before')).toBe('1');
    expect(victim.sm.data.has('poison')).toBe(false);
    poisoned = false;
    const again = await c.start(victimId, { applyHook: hook });
    await until(() => again.sm.data.get('after') === '1', 'replay after restart');
    expect(again.sm.data.get('poison')).toBe('!');
    expect(again.sm.appliedLog[0]).toBe(poisonIndex); // resumed exactly at the halted entry
  });

  it('a node behind the compacted log catches up from a streamed snapshot', async () => {
    const c = await cluster(3, { snapshotEntries: 40, compactionRetain: 10, segmentBytes: 8 * 1024 });
    const lead = await c.leader();
    const laggard = [...c.members.keys()].find((id) => id !== lead.id)!;
    await c.stop(laggard);
    for (let i = 0; i < 300; i++) await lead.node.propose(kvPayload(`k${i}`, 'x'.repeat(100)));
    const back = await c.start(laggard);
    await until(() => back.sm.data.size === 300, 'catch-up');
    // It got there by a snapshot: entries 1..(compacted) were never applied one by one.
    expect(back.sm.appliedLog.length).toBeLessThan(300);
    // The snapshot carried the leader's state as of its applied index; the log catches up after it.
    await until(() => back.node.appliedIndex() >= lead.node.appliedIndex(), 'log catch-up');
  });

  it('memory stays capped while a follower stalls; the follower catches up afterwards', async () => {
    // Node 3's peers reach it through a proxy that, once stalled, stops reading.
    const c = await cluster(3, { queueMessages: 128, queueBytes: 512 * 1024, cacheBytes: 256 * 1024, snapshotEntries: 500, compactionRetain: 100 });
    const lead = await c.leader();
    const stalledId = [...c.members.keys()].find((id) => id !== lead.id)!;
    let stall = false;
    const held: net.Socket[] = [];
    const all: net.Socket[] = [];
    const proxy = net.createServer((client) => {
      const [, port] = c.peers[stalledId]!.split(':');
      const upstream = net.connect({ host: '127.0.0.1', port: Number(port) });
      all.push(client, upstream);
      client.on('error', () => {});
      upstream.on('error', () => {});
      upstream.pipe(client);
      client.on('data', (d) => {
        if (stall) {
          client.pause();
          held.push(client);
        } else upstream.write(d);
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const proxyAddr = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    try {
      lead.node.setPeerAddress(stalledId, proxyAddr);
      await lead.node.propose(kvPayload('warm', '1'));
      stall = true;
      const big = 'v'.repeat(1024);
      let maxQueued = 0;
      let maxCache = 0;
      for (let i = 0; i < 40; i++) {
        await Promise.all([...Array(50).keys()].map((j) => lead.node.propose(kvPayload(`p${i}-${j}`, big))));
        const st = lead.node.memoryStats();
        maxQueued = Math.max(maxQueued, st.queued[stalledId]?.bytes ?? 0);
        maxCache = Math.max(maxCache, st.logCacheBytes);
      }
      expect(maxQueued).toBeLessThanOrEqual(512 * 1024);
      expect(maxCache).toBeLessThanOrEqual(256 * 1024);
      stall = false;
      held.forEach((s) => s.destroy());
      const follower = c.members.get(stalledId)!;
      await until(() => follower.sm.data.size === 2001, 'catch-up after the stall', 30_000);
      expect(follower.sm.appliedLog.length).toBeLessThan(2000); // the log it missed was compacted: a snapshot brought it back
    } finally {
      all.forEach((s) => s.destroy());
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });

  it('adds a learner, promotes it, and removes it', async () => {
    const c = await cluster(3);
    const lead = await c.leader();
    await lead.node.propose(kvPayload('seed', '1'));
    const fresh = await c.start(4);
    let cs = await lead.node.addLearner(4, c.peers[4]!);
    expect(cs.learners).toEqual([4]);
    await until(() => fresh.sm.data.get('seed') === '1', 'learner catch-up');
    cs = await lead.node.addVoter(4, c.peers[4]!);
    expect(cs.voters.sort()).toEqual([1, 2, 3, 4]);
    expect(cs.learners).toEqual([]);
    await lead.node.propose(kvPayload('with-4', '1'));
    await until(() => fresh.sm.data.get('with-4') === '1', 'voter 4 applies');
    cs = await lead.node.removeNode(4);
    expect(cs.voters.sort()).toEqual([1, 2, 3]);
  });

  it('makes the state machine durable before compacting, and halts when it cannot', async () => {
    // Records the applied index at each persist() call; the log may be
    // compacted only up to what a completed persist() covered.
    class Durable extends KvStateMachine {
      readonly persisted: number[] = [];
      failing = false;
      async persist(): Promise<void> {
        if (this.failing) throw new Error('flush failed');
        this.persisted.push(this.appliedIndex());
      }
    }
    const root = clusters.tempDir();
    const [port] = await freePorts(1);
    const sm = new Durable(path.join(root, 'sm'));
    const node = await RaftNode.start({
      id: 1,
      dir: path.join(root, 'n1'),
      secret: DRIVER_SECRET,
      port: port!,
      peers: { 1: `127.0.0.1:${port}` },
      bootstrap: { voters: [1], learners: [] },
      stateMachine: sm,
      tickMs: 20,
      electionTick: 10,
      heartbeatTick: 2,
      snapshotEntries: 20,
      compactionRetain: 5,
    });
    clusters.track(node);
    await until(() => node.isLeader(), 'a leader');
    for (let i = 0; i < 60; i++) await node.propose(kvPayload(`k${i}`, `v${i}`));
    expect(sm.persisted.length).toBeGreaterThan(0);
    for (const idx of sm.persisted) expect(idx).toBeLessThanOrEqual(sm.appliedIndex());
    // A state machine that cannot be made durable stops the node instead of
    // letting the log drop entries the state would need on replay.
    sm.failing = true;
    for (let i = 0; i < 40 && node.halted === undefined; i++) await node.propose(kvPayload(`f${i}`, 'x')).catch(() => undefined);
    await until(() => node.halted !== undefined, 'the node halts');
  });

  it('a proposal without a quorum times out with ErrTimeout', async () => {
    // Check-quorum after 200 ticks of 2 ms: the leader stays a while after its followers are gone.
    const c = await cluster(3, { tickMs: 2, electionTick: 200, heartbeatTick: 5 });
    const lead = await c.leader();
    for (const id of c.members.keys()) if (id !== lead.id) await c.stop(id);
    const err = await lead.node.propose(kvPayload('lonely', '1'), { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(isSealError(err, 'ErrTimeout')).toBe(true);
  });

  it('stop() rejects what is pending with ErrRaftStopped and later calls too', async () => {
    const c = await cluster(3);
    const lead = await c.leader();
    const follower = [...c.members.values()].find((m) => m !== lead)!;
    await c.stop(lead.id);
    const pending = follower.node.propose(kvPayload('p', '1'), { timeoutMs: 30_000 }).catch((e: unknown) => e);
    await c.stop(follower.id);
    const err = await pending;
    expect(isSealError(err, 'ErrRaftStopped') || isSealError(err, 'ErrProposalDropped')).toBe(true);
    const later = await follower.node.propose(kvPayload('q', '1')).catch((e: unknown) => e);
    expect(isSealError(later, 'ErrRaftStopped')).toBe(true);
  });
});
