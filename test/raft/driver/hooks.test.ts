// The driver hooks the encryption layer builds the raft envelope on:
// wrapProposal (on the proposer), admitProposal (on the leader, for its own
// and forwarded proposals), onLogEntries (entries as they enter each log, and
// the unapplied tail at start); and the log tamper tool tests use to alter an
// entry behind the log's checksum.

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSealError, sealError } from '../../../src/errors/index.js';
import { decodeProposal, type ApplyHook, type LogEntryInfo, type RaftNode } from '../../../src/raft/index.js';
import { readLogEntries, tamperLogEntry, type LogEntryView } from '../../support/raft-log-tamper.js';
import { until } from '../../support/ports.js';
import { DriverClusters, type ClusterMember } from '../support/driver-cluster.js';
import { kvPayload } from '../support/kv-state-machine.js';

const clusters = new DriverClusters();
afterEach(() => clusters.cleanup());

const txt = (p: Uint8Array): string => Buffer.from(p).toString('utf8');
const kv = (k: string, v: string): string => txt(kvPayload(k, v));

// A stand-in envelope: a marker, then the payload with every byte flipped.
const MARK = Buffer.from('W:');
const wrap = (p: Uint8Array): Uint8Array => Buffer.concat([MARK, Buffer.from(p).map((b) => b ^ 0x5a)]);
const unwrap: ApplyHook = (_e, p) => {
  if (!Buffer.from(p).subarray(0, 2).equals(MARK)) throw new Error('not wrapped');
  return Buffer.from(p.subarray(2)).map((b) => b ^ 0x5a);
};

const pendingCount = (n: RaftNode): number => (n as unknown as { pending: Map<bigint, unknown> }).pending.size;

/** What a log entry looks like through onLogEntries. */
function asReported(e: LogEntryView): [number, string | null] {
  if (e.type === 'confChange') return [e.index, null];
  return [e.index, e.data.length === 0 ? '' : txt(decodeProposal(e.data).payload)];
}

function others(c: { members: Map<number, ClusterMember> }, lead: ClusterMember): ClusterMember[] {
  return [...c.members.values()].filter((m) => m !== lead);
}

describe('RaftNode hooks', () => {
  it('wrapProposal: the log holds the wrapped payload, the apply hook unwraps it; a throw rejects that propose', async () => {
    const admitted: string[] = [];
    const c = await clusters.cluster(3, () => ({
      wrapProposal: (p) => {
        if (txt(p).includes('unwrappable')) throw sealError('ErrWriterNotRegistered', 'writer not registered yet');
        return wrap(p);
      },
      admitProposal: (p) => {
        admitted.push(txt(p));
        return undefined;
      },
      applyHook: unwrap,
    }));
    const lead = await c.leader();
    const [f] = others(c, lead);
    const ia = (await lead.node.propose(kvPayload('a', '1'))) as number;
    const ib = (await f!.node.propose(kvPayload('b', '2'))) as number;
    for (const proposer of [lead, f!]) {
      const err = await proposer.node.propose(kvPayload('unwrappable', 'x')).catch((e: unknown) => e);
      expect(isSealError(err, 'ErrWriterNotRegistered')).toBe(true);
      expect(pendingCount(proposer.node)).toBe(0);
    }
    await lead.node.propose(kvPayload('c', '3'));
    await until(() => [...c.members.values()].every((m) => m.sm.data.get('c') === '3'), 'replication');
    for (const m of c.members.values()) {
      expect(Object.fromEntries(m.sm.data)).toEqual({ a: '1', b: '2', c: '3' });
      expect(m.node.halted).toBeUndefined();
    }
    // The leader admitted the wrapped form of its own and of the forwarded proposal.
    expect(admitted).toEqual([txt(wrap(kvPayload('a', '1'))), txt(wrap(kvPayload('b', '2'))), txt(wrap(kvPayload('c', '3')))]);
    await c.stop(lead.id);
    const log = new Map((await readLogEntries(lead.dir)).map(asReported));
    expect(log.get(ia)).toBe(txt(wrap(kvPayload('a', '1'))));
    expect(log.get(ib)).toBe(txt(wrap(kvPayload('b', '2'))));
    expect([...log.values()].some((p) => p?.includes('unwrappable'))).toBe(false);
  });

  it('admitProposal: a refused own or forwarded proposal rejects with its error; admitted ones go through', async () => {
    const asked: { node: number; payload: string }[] = [];
    const c = await clusters.cluster(3, (id) => ({
      admitProposal: (p) => {
        asked.push({ node: id, payload: txt(p) });
        return txt(p).includes('blocked') ? sealError('ErrEnvelopeCutoverInProgress', 'cutover barrier') : undefined;
      },
    }));
    const lead = await c.leader();
    const [f] = others(c, lead);
    await lead.node.propose(kvPayload('first', '1'));
    await until(() => [...c.members.values()].every((m) => m.sm.data.has('first')), 'replication');
    const appliedBefore = lead.node.appliedIndex();

    const own = await lead.node.propose(kvPayload('blocked', 'own')).catch((e: unknown) => e);
    expect(isSealError(own, 'ErrEnvelopeCutoverInProgress')).toBe(true);
    expect((own as { retryable: boolean }).retryable).toBe(true);
    expect(pendingCount(lead.node)).toBe(0);
    expect(asked).toContainEqual({ node: lead.id, payload: kv('blocked', 'own') });

    // Forwarded: the leader drops it and tells the follower, whose propose rejects with the leader's error.
    const fwd = await f!.node.propose(kvPayload('blocked', 'fwd'), { timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(isSealError(fwd, 'ErrEnvelopeCutoverInProgress')).toBe(true);
    expect((fwd as { retryable: boolean }).retryable).toBe(true);
    expect(pendingCount(f!.node)).toBe(0);
    expect(asked).toContainEqual({ node: lead.id, payload: kv('blocked', 'fwd') });
    // Only the leader is asked: never the follower that proposed.
    expect(asked.filter((a) => a.node !== lead.id)).toEqual([]);
    expect(lead.node.appliedIndex()).toBe(appliedBefore);

    const r1 = (await f!.node.propose(kvPayload('later', 'fwd'))) as number;
    const r2 = (await lead.node.propose(kvPayload('later2', 'own'))) as number;
    expect(r2).toBeGreaterThan(r1);
    await until(() => [...c.members.values()].every((m) => m.sm.data.get('later2') === 'own'), 'replication');
    for (const m of c.members.values()) {
      expect(m.sm.data.get('later')).toBe('fwd');
      expect(m.sm.data.has('blocked')).toBe(false);
    }
    await c.stop(lead.id);
    expect((await readLogEntries(lead.dir)).map(asReported).some(([, p]) => p?.includes('blocked'))).toBe(false);
  });

  it('onLogEntries: leader and follower appends with their indexes and payloads, conf changes as null', async () => {
    const views = new Map<number, Map<number, string | null>>();
    const misordered: string[] = [];
    const record = (id: number) => (entries: LogEntryInfo[]) => {
      const v = views.get(id) ?? new Map<number, string | null>();
      views.set(id, v);
      if (entries.length === 0) return;
      for (let i = 1; i < entries.length; i++) {
        if (entries[i]!.index !== entries[i - 1]!.index + 1) misordered.push(`node ${id}: ${entries.map((e) => e.index).join(',')}`);
      }
      // An entry at index i replaces everything reported at i and above.
      for (const k of [...v.keys()]) if (k >= entries[0]!.index) v.delete(k);
      for (const e of entries) v.set(e.index, e.payload === null ? null : txt(e.payload));
    };
    const c = await clusters.cluster(3, (id) => ({ onLogEntries: record(id) }));
    const lead = await c.leader();
    const [f] = others(c, lead);
    const ia = (await lead.node.propose(kvPayload('a', '1'))) as number;
    const ib = (await f!.node.propose(kvPayload('b', '2'))) as number;
    await c.start(4, { onLogEntries: record(4) });
    await lead.node.addLearner(4, c.peers[4]!);
    const ic = (await lead.node.propose(kvPayload('c', '3'))) as number;
    // Applied by the driver (not only present in a state machine restored from a snapshot): in every log.
    await until(() => [...c.members.values()].every((m) => m.node.appliedIndex() >= ic), 'replication to all four');
    expect(misordered).toEqual([]);

    const leadView = views.get(lead.id)!;
    expect(leadView.get(ia)).toBe(kv('a', '1'));
    expect(leadView.get(ib)).toBe(kv('b', '2'));
    expect(leadView.get(ic)).toBe(kv('c', '3'));
    expect([...leadView.values()]).toContain(''); // the leader's empty entry of its term
    const confIdx = [...leadView].filter(([, p]) => p === null).map(([i]) => i);
    expect(confIdx).toHaveLength(1);
    expect(confIdx[0]).toBeGreaterThan(ib);
    expect(confIdx[0]).toBeLessThan(ic);
    // Every node reported exactly what its log holds (the learner: from where it joined).
    for (const id of [...c.members.keys()]) await c.stop(id);
    for (const m of c.members.values()) {
      const view = views.get(m.id)!;
      const held = (await readLogEntries(m.dir)).map(asReported);
      expect(held.length).toBeGreaterThan(0);
      expect(held.filter(([i]) => i >= Math.min(...view.keys()))).toEqual([...view].sort((x, y) => x[0] - y[0]));
      if (m.id !== 4) expect(view.size).toBe(held.length);
      expect(view.get(ic)).toBe(kv('c', '3'));
      expect(view.get(confIdx[0]!)).toBeNull();
    }
  });

  it('onLogEntries at start: one call with the log above the applied index, before anything else', async () => {
    const c = await clusters.cluster(3);
    const lead = await c.leader();
    const f = others(c, lead)[0]!;
    for (let i = 0; i < 6; i++) await lead.node.propose(kvPayload(`k${i}`, `${i}`));
    await until(() => f.node.appliedIndex() >= lead.node.appliedIndex(), 'replication');
    await c.stop(f.id);
    // The state machine loses all but its first two applies: the rest of the log is its unapplied tail.
    const smFile = path.join(f.dir, 'sm', 'kv.jsonl');
    const lines = fs.readFileSync(smFile, 'utf8').split('\n').filter((l) => l !== '');
    fs.writeFileSync(smFile, lines.slice(0, 2).join('\n') + '\n');
    const applied = (JSON.parse(lines[1]!) as { i: number }).i;
    const tail = (await readLogEntries(f.dir)).filter((e) => e.index > applied).map(asReported);
    expect(tail.map(([, p]) => p)).toEqual(['k2', 'k3', 'k4', 'k5'].map((k) => kv(k, k.slice(1))));

    const calls: [number, string | null][][] = [];
    const again = await c.start(f.id, {
      onLogEntries: (entries) => calls.push(entries.map((e) => [e.index, e.payload === null ? null : txt(e.payload)])),
    });
    expect(calls[0]).toEqual(tail);
    await until(() => again.sm.data.get('k5') === '5', 'replay after restart');

    // A node whose log is all applied reports an empty tail at start.
    await until(() => again.node.appliedIndex() >= lead.node.appliedIndex(), 'replication');
    await c.stop(f.id);
    const empty: LogEntryInfo[][] = [];
    await c.start(f.id, { onLogEntries: (e) => empty.push(e) });
    expect(empty[0]).toEqual([]);
  });

  it('onLogEntries at start includes entries that never committed', async () => {
    const c = await clusters.cluster(3);
    const lead = await c.leader();
    await lead.node.propose(kvPayload('committed', '1'));
    for (const f of others(c, lead)) await c.stop(f.id);
    const err = await lead.node.propose(kvPayload('lonely', '1'), { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(isSealError(err, 'ErrTimeout')).toBe(true);
    await c.stop(lead.id);
    const held = (await readLogEntries(lead.dir)).map(asReported);
    const lonely = held.find(([, p]) => p === kv('lonely', '1'));
    expect(lonely).toBeDefined();
    expect(lonely![0]).toBeGreaterThan(lead.sm.appliedIndex());

    const calls: [number, string | null][][] = [];
    await c.start(lead.id, {
      onLogEntries: (entries) => calls.push(entries.map((e) => [e.index, e.payload === null ? null : txt(e.payload)])),
    });
    expect(calls[0]).toEqual(held.filter(([i]) => i > lead.sm.appliedIndex()));
    expect(calls[0]).toContainEqual(lonely);
  });

  it('the tamper tool alters a payload behind a valid checksum: the log opens, the apply hook sees the new bytes', async () => {
    const c = await clusters.cluster(1);
    const n = await c.leader();
    const ix = (await n.node.propose(kvPayload('x', '1'))) as number;
    const is = (await n.node.propose(kvPayload('secret', 'abc'))) as number;
    await n.node.propose(kvPayload('y', '2'));
    await c.stop(1);

    const secret = kv('secret', 'abc');
    const t1 = tamperLogEntry(n.dir, { match: (p) => txt(p).includes('"secret"'), at: secret.indexOf('abc') + 2 });
    expect(t1.index).toBe(is);
    expect(txt(t1.before)).toBe(secret);
    expect(txt(t1.after)).toBe(kv('secret', 'abb'));
    const x = kv('x', '1');
    const t2 = tamperLogEntry(n.dir, { index: ix, at: x.indexOf('"1"') + 1 });
    expect(txt(t2.after)).toBe(kv('x', '0'));
    const held = new Map((await readLogEntries(n.dir)).map(asReported));
    expect(held.get(is)).toBe(kv('secret', 'abb'));
    expect(held.get(ix)).toBe(kv('x', '0'));

    // The state machine starts over, so the whole log replays through the apply hook.
    fs.rmSync(path.join(n.dir, 'sm'), { recursive: true, force: true });
    const seen = new Map<number, string>();
    const again = await c.start(1, {
      applyHook: (e, p) => {
        seen.set(e.index, txt(p));
        return p;
      },
    });
    await until(() => again.sm.data.get('y') === '2', 'replay');
    expect(seen.get(is)).toBe(kv('secret', 'abb'));
    expect(seen.get(ix)).toBe(kv('x', '0'));
    expect(again.sm.data.get('secret')).toBe('abb');
    expect(again.node.halted).toBeUndefined();
  });
  it('an entry the apply hook can open only after an earlier entry of the same batch is applied (a key rotation) applies, no halt', async () => {
    const c = await clusters.cluster(1);
    const n = await c.leader();
    await n.node.propose(kvPayload('before', '0'));
    await n.node.propose(kvPayload('dek', 'next'));
    await n.node.propose(kvPayload('sealed', 'x'));
    await c.stop(1);
    // The state machine starts over, so the whole log replays at start, committed in one batch.
    fs.rmSync(path.join(n.dir, 'sm'), { recursive: true, force: true });
    const smFile = path.join(n.dir, 'sm', 'kv.jsonl');
    const dekApplied = (): boolean => fs.existsSync(smFile) && fs.readFileSync(smFile, 'utf8').includes('"k":"dek"');
    const again = await c.start(1, {
      // As a payload sealed under the DEK a rotation entry brings: it opens once that entry is applied.
      applyHook: (_e, p) => {
        if (txt(p).includes('"sealed"') && !dekApplied()) throw sealError('ErrUnknownKeyId', 'no DEK with that key_id is loaded');
        return p;
      },
    });
    await until(() => again.sm.data.get('sealed') === 'x' || again.node.halted !== undefined, 'replay');
    expect(again.node.halted).toBeUndefined();
    expect(again.sm.data.get('sealed')).toBe('x');
    expect(again.sm.appliedLog).toEqual([...new Set(again.sm.appliedLog)]);
  });
});
