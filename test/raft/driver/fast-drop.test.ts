// A forwarded proposal the leader's admitProposal refuses fails fast on the
// follower with the leader's error (the refusal notice, RPC
// raft.ProposalsRefused), instead of waiting for the propose timeout; the
// notice queue itself is bounded and never blocks.

import { afterEach, describe, expect, it } from 'vitest';
import { isSealError, sealError, type ErrorCode } from '../../../src/errors/index.js';
import { encodeProposal, makeMessage, type Message, type RaftNode } from '../../../src/raft/index.js';
import { PROPOSALS_REFUSED_METHOD, RefusalNotices, parseRefusals, type Refusal } from '../../../src/raft/driver/refusals.js';
import { until } from '../../support/ports.js';
import { DriverClusters, type ClusterMember } from '../support/driver-cluster.js';
import { kvPayload } from '../support/kv-state-machine.js';

const clusters = new DriverClusters();
afterEach(() => clusters.cleanup());

const txt = (p: Uint8Array): string => Buffer.from(p).toString('utf8');
const pendingCount = (n: RaftNode): number => (n as unknown as { pending: Map<bigint, unknown> }).pending.size;

/** The propose timeout: far beyond the guard, so a settled call was settled by the notice. */
const PROPOSE_TIMEOUT_MS = 20_000;
const GUARD_MS = 10_000;

type Outcome = { settled: false } | { settled: true; ok: true; value: unknown } | { settled: true; ok: false; error: unknown };

/** How `p` settled, or that it had not when the guard timer fired. */
async function beforeGuard(p: Promise<unknown>): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ settled: false }), GUARD_MS);
  });
  try {
    return await Promise.race([
      p.then(
        (value): Outcome => ({ settled: true, ok: true, value }),
        (error: unknown): Outcome => ({ settled: true, ok: false, error }),
      ),
      guard,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function expectRefused(o: Outcome, code: ErrorCode, retryable: boolean): void {
  expect(o.settled).toBe(true);
  if (!o.settled || o.ok) throw new Error(`expected a rejection with ${code}, got ${JSON.stringify(o)}`);
  expect(isSealError(o.error, code)).toBe(true);
  expect((o.error as { retryable: boolean }).retryable).toBe(retryable);
}

/** The leader and the other members, once every one of them follows it. */
async function settledCluster(c: { members: Map<number, ClusterMember>; leader: () => Promise<ClusterMember> }): Promise<[ClusterMember, ClusterMember[]]> {
  const lead = await c.leader();
  const rest = [...c.members.values()].filter((m) => m !== lead);
  await until(() => rest.every((m) => m.node.leaderId() === lead.id), 'followers know the leader');
  return [lead, rest];
}

/** A leader-side admitProposal refusing payloads by marker: `barrier` (retryable), `mismatch` (retryable), `bad` (not retryable). */
const admitByMarker = (p: Uint8Array) => {
  const s = txt(p);
  if (s.includes('barrier')) return sealError('ErrEnvelopeCutoverInProgress', 'cutover barrier');
  if (s.includes('mismatch')) return sealError('ErrProposalDropped', 'payload wrapped the wrong way');
  if (s.includes('bad')) return sealError('ErrApplyPayload', 'not a payload this cluster applies');
  return undefined;
};

describe('refused forwarded proposals fail fast', () => {
  it("the follower's propose rejects with the leader's code and retryable flag, long before its timeout", async () => {
    const c = await clusters.cluster(3, { admitProposal: admitByMarker });
    const [lead, [f]] = await settledCluster(c);
    await f!.node.propose(kvPayload('warm', '1'));

    const cases: [string, ErrorCode, boolean][] = [
      ['barrier', 'ErrEnvelopeCutoverInProgress', true],
      ['mismatch', 'ErrProposalDropped', true],
      ['bad', 'ErrApplyPayload', false],
    ];
    for (const [key, code, retryable] of cases) {
      const o = await beforeGuard(f!.node.propose(kvPayload(key, 'x'), { timeoutMs: PROPOSE_TIMEOUT_MS }));
      expectRefused(o, code, retryable);
      expect(pendingCount(f!.node)).toBe(0);
    }
    // The refusal did not disturb anything: the follower proposes again, nothing refused was applied.
    await f!.node.propose(kvPayload('after', '2'), { timeoutMs: PROPOSE_TIMEOUT_MS });
    await until(() => [...c.members.values()].every((m) => m.sm.data.get('after') === '2'), 'replication');
    for (const m of c.members.values()) {
      expect([...m.sm.data.keys()].sort()).toEqual(['after', 'warm']);
      expect(m.node.halted).toBeUndefined();
    }
  });

  it('admitted proposals sent together with refused ones still apply', async () => {
    const c = await clusters.cluster(3, { admitProposal: admitByMarker });
    const [lead, [f, g]] = await settledCluster(c);
    await f!.node.propose(kvPayload('warm', '1'));

    // Proposed in one go, so they leave the follower in the same Ready.
    const keys = ['ok0', 'barrier0', 'ok1', 'mismatch1', 'ok2', 'barrier2', 'ok3'];
    const outcomes = await Promise.all(keys.map((k) => beforeGuard(f!.node.propose(kvPayload(k, k), { timeoutMs: PROPOSE_TIMEOUT_MS }))));
    keys.forEach((k, i) => {
      const o = outcomes[i]!;
      if (k.startsWith('ok')) {
        expect(o).toMatchObject({ settled: true, ok: true });
      } else {
        expectRefused(o, k.startsWith('barrier') ? 'ErrEnvelopeCutoverInProgress' : 'ErrProposalDropped', true);
      }
    });
    expect(pendingCount(f!.node)).toBe(0);
    await until(() => [...c.members.values()].every((m) => m.sm.data.get('ok3') === 'ok3'), 'replication');
    for (const m of c.members.values()) {
      expect([...m.sm.data.keys()].sort()).toEqual(['ok0', 'ok1', 'ok2', 'ok3', 'warm']);
    }

    // One MsgProp carrying an admitted and a refused entry (the core sends one per propose, so build it):
    // the admitted one applies, the refused one is noticed to its sender, which knows no such id.
    const internals = lead.node as unknown as { onMessage(m: Message): void; refusals: RefusalNotices };
    await until(() => internals.refusals.stats.sent === 3, 'the earlier notices acknowledged');
    const entry = (id: bigint, k: string) => ({ term: 0, index: 0, type: 'normal' as const, data: encodeProposal(id, kvPayload(k, k)) });
    internals.onMessage(
      makeMessage({ type: 'MsgProp', from: g!.id, to: lead.id, term: 0, entries: [entry(901n, 'barrier9'), entry(902n, 'ok9')] }),
    );
    await until(() => [...c.members.values()].every((m) => m.sm.data.get('ok9') === 'ok9'), 'replication of the admitted entry');
    await until(() => internals.refusals.stats.sent === 4, 'the notice to the sender');
    for (const m of c.members.values()) expect(m.sm.data.has('barrier9')).toBe(false);
  });

  it('a notice is ignored for ids the node does not know or did not forward; an unknown code becomes ErrProposalDropped', async () => {
    const c = await clusters.cluster(3);
    const [lead, [f, g]] = await settledCluster(c);
    await f!.node.propose(kvPayload('warm', '1'));
    await until(() => g!.sm.data.get('warm') === '1', 'replication');

    // Unknown ids (and malformed items) change nothing.
    const reply = await lead.node.callRpc(
      f!.id,
      PROPOSALS_REFUSED_METHOD,
      [{ id: '12345', code: 'ErrBadRequest', message: 'no such proposal' }, { id: 'not a number', code: 'ErrBadRequest' }, 7],
      { timeoutMs: 5_000 },
    );
    expect(reply).toEqual({ rejected: 0 });
    await f!.node.propose(kvPayload('still', 'fine'), { timeoutMs: PROPOSE_TIMEOUT_MS });

    // The leader's own pending proposal is not forwarded: a notice naming it is ignored.
    const ownId = 0x1234_5678n;
    const own = lead.node.propose(kvPayload('own', '1'), { proposalId: ownId, timeoutMs: PROPOSE_TIMEOUT_MS });
    const ownReply = await f!.node.callRpc(lead.id, PROPOSALS_REFUSED_METHOD, [{ id: ownId.toString(), code: 'ErrProposalDropped', message: 'x' }], {
      timeoutMs: 5_000,
    });
    expect(ownReply).toEqual({ rejected: 0 });
    expect(await own).toEqual(expect.any(Number));

    // A forwarded proposal that stays pending (its leader is gone) is failed by a notice; an unknown code maps to ErrProposalDropped.
    // The follower restarts with a long election timeout, so it keeps following the stopped leader.
    await c.stop(f!.id);
    const slow = await c.start(f!.id, { electionTick: 1000 });
    await until(() => slow.node.leaderId() === lead.id, 'the restarted follower knows the leader');
    await c.stop(lead.id);
    const fwdId = 0x7777n;
    const fwd = slow.node.propose(kvPayload('orphan', '1'), { proposalId: fwdId, timeoutMs: PROPOSE_TIMEOUT_MS });
    fwd.catch(() => undefined);
    const fwdReply = await g!.node.callRpc(slow.id, PROPOSALS_REFUSED_METHOD, [{ id: fwdId.toString(), code: 'ErrNoSuchCode', message: 'x' }], {
      timeoutMs: 5_000,
    });
    expect(fwdReply).toEqual({ rejected: 1 });
    expectRefused(await beforeGuard(fwd), 'ErrProposalDropped', true);
    expect(pendingCount(slow.node)).toBe(0);
  });

  it('a refused forward to a stopped follower is dropped without harm to the leader', async () => {
    const c = await clusters.cluster(3, { admitProposal: admitByMarker });
    const [lead, [f, g]] = await settledCluster(c);
    await f!.node.propose(kvPayload('warm', '1'));
    const refused = f!.node.propose(kvPayload('barrier', 'x'), { timeoutMs: PROPOSE_TIMEOUT_MS }).catch((e: unknown) => e);
    await c.stop(f!.id);
    // The follower's call ended (by the notice or by its stop); the leader keeps serving.
    const err = await refused;
    expect(isSealError(err, 'ErrEnvelopeCutoverInProgress') || isSealError(err, 'ErrRaftStopped')).toBe(true);
    await g!.node.propose(kvPayload('later', '1'), { timeoutMs: PROPOSE_TIMEOUT_MS });
    expect(lead.node.halted).toBeUndefined();
  });
});

describe('RefusalNotices', () => {
  const r = (i: number): Refusal => ({ id: String(i), code: 'ErrProposalDropped', message: `m${i}` });

  it('batches per follower, keeps one call in flight, caps the queue and drops what cannot be delivered', async () => {
    const calls: { to: number; ids: string[]; done: (ok: boolean) => void }[] = [];
    const notices = new RefusalNotices(
      (to, batch) =>
        new Promise<void>((resolve, reject) =>
          calls.push({ to, ids: batch.map((b) => b.id), done: (ok) => (ok ? resolve() : reject(new Error('unreachable'))) }),
        ),
    );
    for (let i = 0; i < 3; i++) notices.add(2, r(i));
    notices.add(3, r(100));
    await until(() => calls.length === 2, 'first calls');
    expect(calls.map((c) => [c.to, c.ids])).toEqual([
      [2, ['0', '1', '2']],
      [3, ['100']],
    ]);
    // While follower 2's call is in flight, more queue up to the cap; the rest are dropped.
    for (let i = 3; i < 1003; i++) notices.add(2, r(i));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toHaveLength(2);
    expect(notices.stats.dropped).toBe(1000 - 256);
    calls[0]!.done(false);
    await until(() => calls.length === 3, 'next batch');
    expect(calls[2]!.to).toBe(2);
    expect(calls[2]!.ids).toHaveLength(256);
    expect(notices.stats.dropped).toBe(1000 - 256 + 3);
    calls[2]!.done(true);
    calls[1]!.done(true);
    await until(() => notices.stats.sent === 257, 'sent');
    // After close nothing is queued or sent.
    notices.close();
    notices.add(2, r(9999));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toHaveLength(3);
  });

  it('parses notices leniently but refuses a body that is not a list', () => {
    const parsed = parseRefusals([{ id: '5', code: 'ErrEnvelopeCutoverInProgress', message: 'barrier' }, { id: '6', code: 'constructor' }, null], 1);
    expect(parsed.map((p) => [p.id, p.err.code, p.err.retryable])).toEqual([
      [5n, 'ErrEnvelopeCutoverInProgress', true],
      [6n, 'ErrProposalDropped', true],
    ]);
    expect(() => parseRefusals({ id: '5' }, 1)).toThrow(expect.objectContaining({ code: 'ErrBadRequest' }));
  });
});
