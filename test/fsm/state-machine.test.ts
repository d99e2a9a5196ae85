import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEDUPE_WINDOW_MS,
  StateMachine,
  encodeBatchPayload,
  encodeCeilingPayload,
  encodeRequestPayload,
  hlcPhysicalMs,
  packHlc,
  type EntryResult,
  type EntryToApply,
} from '../../src/fsm/index.js';
import { isSealError } from '../../src/errors/index.js';
import { MemoryFsmStore, TinyExecutor, type TinyRequest } from '../support/memory-fsm-store.js';

const T0 = 1_700_000_000_000;

/** Small seeded PRNG (mulberry32) so a failing log can be rebuilt from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A committed log as a cluster would produce it: stamped requests and batches
 * (some with TTLs), ceilings, no-ops, re-committed duplicates of earlier
 * proposals, and leader changes whose clocks run behind.
 */
function randomLog(seed: number, length: number): EntryToApply[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const keys = ['a', 'b', 'c', 'd', 'e'];
  const request = (): TinyRequest => {
    const key = pick(keys);
    const roll = r();
    if (roll < 0.35) return { op: 'set', key, value: `v${Math.floor(r() * 1000)}`, ...(r() < 0.4 ? { px: 1 + Math.floor(r() * 4000) } : {}) };
    if (roll < 0.55) return { op: 'incr', key };
    if (roll < 0.75) return { op: 'append', key, value: pick(['x', 'yy', '1']) };
    return { op: 'del', key };
  };
  let wallMs = T0;
  let logical = 0;
  let nextId = 1n;
  const log: EntryToApply[] = [];
  const proposals: EntryToApply[] = [];
  for (let index = 1; index <= length; index++) {
    const roll = r();
    wallMs += Math.floor(r() * 1500);
    if (r() < 0.05) wallMs -= Math.floor(r() * 3000);
    const stamp = packHlc(wallMs, logical++ & 0xffff);
    if (roll < 0.5) {
      const e = { index, proposalId: nextId++, payload: encodeRequestPayload(request(), stamp) };
      proposals.push(e);
      log.push(e);
    } else if (roll < 0.65) {
      const requests = Array.from({ length: 1 + Math.floor(r() * 4) }, request);
      const e = { index, proposalId: nextId++, payload: encodeBatchPayload(requests, stamp) };
      proposals.push(e);
      log.push(e);
    } else if (roll < 0.77) {
      log.push({ index, proposalId: 0n, payload: encodeCeilingPayload(packHlc(wallMs + 3000)) });
    } else if (roll < 0.92 && proposals.length > 0) {
      const dup = pick(proposals);
      log.push({ index, proposalId: dup.proposalId, payload: dup.payload });
    } else {
      log.push({ index, proposalId: 0n, payload: null });
    }
  }
  return log;
}

async function applyInChunks(machine: StateMachine, log: readonly EntryToApply[], seed: number): Promise<EntryResult[]> {
  const r = rng(seed);
  const results: EntryResult[] = [];
  for (let i = 0; i < log.length; ) {
    const n = 1 + Math.floor(r() * 7);
    results.push(...(await machine.applyEntries(log.slice(i, i + n))));
    i += n;
  }
  return results;
}

async function fresh(): Promise<{ store: MemoryFsmStore; machine: StateMachine }> {
  const store = new MemoryFsmStore();
  return { store, machine: await StateMachine.open(store, new TinyExecutor()) };
}

async function expectHalt(work: Promise<unknown>, code: string): Promise<void> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSealError(err) && err.code).toBe(code);
}

describe('StateMachine determinism', () => {
  it('two replicas fed the same log in different groupings end identical', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 }), async (seed) => {
        const log = randomLog(seed, 120);
        const a = await fresh();
        const b = await fresh();
        const resultsA = await applyInChunks(a.machine, log, seed + 1);
        const resultsB: EntryResult[] = [];
        for (const entry of log) resultsB.push(...(await b.machine.applyEntries([entry])));
        expect(b.store.dump()).toBe(a.store.dump());
        expect(resultsB).toEqual(resultsA);
        expect(a.machine.appliedIndex).toBe(log.length);
        // Commit timestamps are unique and strictly increasing in log order.
        let last = 0n;
        for (const { outcome } of resultsA) {
          if (outcome.kind === 'request' && !outcome.duplicate) {
            expect(outcome.commitTs > last).toBe(true);
            last = outcome.commitTs;
          }
        }
      }),
      { numRuns: 25 },
    );
  });

  it('applies a re-committed proposal once and returns the first result', async () => {
    const { store, machine } = await fresh();
    const incr = encodeRequestPayload({ op: 'incr', key: 'n' }, packHlc(T0));
    const [first, dup] = await machine.applyEntries([
      { index: 1, proposalId: 42n, payload: incr },
      { index: 2, proposalId: 42n, payload: incr },
    ]);
    const [later] = await machine.applyEntries([{ index: 3, proposalId: 42n, payload: incr }]);
    expect(first!.outcome).toMatchObject({ kind: 'request', result: 1, duplicate: false });
    expect(dup!.outcome).toEqual({ kind: 'request', result: 1, duplicate: true });
    expect(later!.outcome).toEqual({ kind: 'request', result: 1, duplicate: true });
    expect(await store.getLatest(Buffer.from('n'), T0)).toMatchObject({ value: Buffer.from('1') });
    expect(machine.appliedIndex).toBe(3);
  });

  it('forgets a proposal id once it is older than the window, in commit time', async () => {
    const { machine } = await fresh();
    const incr = (ms: number): Uint8Array => encodeRequestPayload({ op: 'incr', key: 'n' }, packHlc(ms));
    await machine.applyEntries([{ index: 1, proposalId: 7n, payload: incr(T0) }]);
    const [again] = await machine.applyEntries([
      { index: 2, proposalId: 8n, payload: incr(T0 + DEDUPE_WINDOW_MS + 1) },
      { index: 3, proposalId: 7n, payload: incr(T0) },
    ]);
    expect(again!.outcome).toMatchObject({ result: 2, duplicate: false });
  });

  it('decides TTL expiry by commit time, identically on every replica', async () => {
    const { store, machine } = await fresh();
    const results = await machine.applyEntries([
      { index: 1, proposalId: 1n, payload: encodeRequestPayload({ op: 'set', key: 't', value: 'v', px: 100 }, packHlc(T0)) },
      { index: 2, proposalId: 2n, payload: encodeRequestPayload({ op: 'append', key: 't', value: 'w' }, packHlc(T0 + 50)) },
      { index: 3, proposalId: 3n, payload: encodeRequestPayload({ op: 'append', key: 't', value: 'z' }, packHlc(T0 + 100)) },
    ]);
    expect(results.map((r) => (r.outcome.kind === 'request' ? r.outcome.result : undefined))).toEqual(['OK', 2, 1]);
    expect((await store.getLatest(Buffer.from('t'), T0 + 10_000))?.value.toString()).toBe('z');
    const set = results[0]!.outcome;
    expect(set.kind === 'request' && !set.duplicate && hlcPhysicalMs(set.commitTs)).toBe(T0);
  });
});

describe('StateMachine replay', () => {
  it('is idempotent when the log is replayed from an older applied index', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 0, max: 80 }), async (seed, cut) => {
        const log = randomLog(seed, 80);
        const reference = await fresh();
        await applyInChunks(reference.machine, log, seed);

        const store = new MemoryFsmStore();
        const before = await StateMachine.open(store, new TinyExecutor());
        await applyInChunks(before, log.slice(0, cut), seed + 2);
        // Restart: a new machine over the same store replays the whole log.
        const after = await StateMachine.open(store, new TinyExecutor());
        expect(after.appliedIndex).toBe(cut);
        const results = await applyInChunks(after, log, seed + 3);
        expect(results.slice(0, cut).every((r) => r.outcome.kind === 'replayed')).toBe(true);
        expect(store.dump()).toBe(reference.store.dump());
        // Replaying again changes nothing.
        await applyInChunks(after, log, seed + 4);
        expect(store.dump()).toBe(reference.store.dump());
      }),
      { numRuns: 20 },
    );
  });

  it('restores from a snapshot and continues identically', async () => {
    const log = randomLog(99, 150);
    const a = await fresh();
    await applyInChunks(a.machine, log.slice(0, 90), 5);
    const snapshot = await a.machine.snapshot();
    expect(snapshot.appliedIndex).toBe(90);
    const chunks: Uint8Array[] = [];
    for await (const chunk of snapshot.stream) chunks.push(chunk);
    const b = await fresh();
    await b.machine.restoreSnapshot(
      (async function* () {
        yield* chunks;
      })(),
      90,
    );
    expect(b.machine.appliedIndex).toBe(90);
    expect(b.machine.clock.appliedCeiling).toBe(a.machine.clock.appliedCeiling);
    expect(b.machine.clock.lastCommitTs).toBe(a.machine.clock.lastCommitTs);
    const tailA = await applyInChunks(a.machine, log.slice(90), 6);
    const tailB = await applyInChunks(b.machine, log.slice(90), 7);
    expect(tailB).toEqual(tailA);
    expect(b.store.dump()).toBe(a.store.dump());
  });

  it('accepts indexes that skip entries outside the state machine, and refuses them out of order', async () => {
    const { machine } = await fresh();
    await machine.applyEntries([{ index: 3, proposalId: 0n, payload: null }]);
    expect(machine.appliedIndex).toBe(3);
    await expect(
      machine.applyEntries([
        { index: 5, proposalId: 0n, payload: null },
        { index: 4, proposalId: 0n, payload: null },
      ]),
    ).rejects.toThrow(RangeError);
  });
});

describe('StateMachine halts', () => {
  it('on an unknown tag: earlier entries are written, the bad one and everything after are not', async () => {
    const { store, machine } = await fresh();
    const set = encodeRequestPayload({ op: 'set', key: 'k', value: 'v' }, packHlc(T0));
    await expectHalt(
      machine.applyEntries([
        { index: 1, proposalId: 1n, payload: set },
        { index: 2, proposalId: 2n, payload: Buffer.from([0x07, 0x01, 0xaa]) },
        { index: 3, proposalId: 3n, payload: set },
      ]),
      'ErrApplyPayload',
    );
    expect(await store.appliedIndex()).toBe(1);
    expect(machine.halted?.code).toBe('ErrApplyPayload');
    await expectHalt(machine.applyEntries([{ index: 2, proposalId: 0n, payload: null }]), 'ErrApplyPayload');
    expect(await store.appliedIndex()).toBe(1);
  });

  it('on an unknown wire version and on an encryption tag with no handler', async () => {
    const bad = encodeCeilingPayload(5n);
    bad[1] = 0x02;
    await expectHalt((await fresh()).machine.applyEntries([{ index: 1, proposalId: 0n, payload: bad }]), 'ErrApplyPayload');
    await expectHalt(
      (await fresh()).machine.applyEntries([{ index: 1, proposalId: 0n, payload: Buffer.from([0x05, 0x01, 0x01]) }]),
      'ErrEncryptionApply',
    );
  });

  it('when an extension handler fails, dropping its partial writes', async () => {
    const { store, machine } = await fresh();
    machine.handlers.register(0x03, (payload, tx) => {
      tx.putInternal(Buffer.from('!encryption|writers|x'), Buffer.from(payload));
      if (payload[2] === 0xff) throw new Error('registry conflict');
      return 'registered';
    });
    const [ok] = await machine.applyEntries([{ index: 1, proposalId: 0n, payload: Buffer.from([0x03, 0x01, 0x01]) }]);
    expect(ok!.outcome).toEqual({ kind: 'extension', tag: 0x03, result: 'registered' });
    await expectHalt(machine.applyEntries([{ index: 2, proposalId: 0n, payload: Buffer.from([0x03, 0x01, 0xff]) }]), 'ErrEncryptionApply');
    expect((await store.getInternal(Buffer.from('!encryption|writers|x')))?.toString('hex')).toBe('030101');
    expect(await store.appliedIndex()).toBe(1);
  });

  it('when the store cannot write a batch', async () => {
    const { store, machine } = await fresh();
    store.failNextBatch = new Error('disk full');
    await expect(machine.applyEntries([{ index: 1, proposalId: 0n, payload: null }])).rejects.toThrow('disk full');
    expect(machine.halted).toBeDefined();
    await expect(machine.applyEntries([{ index: 1, proposalId: 0n, payload: null }])).rejects.toThrow(/halted/);
  });
});

describe('StateMachine.atApplyPoint', () => {
  it('runs between two applies: an apply queued meanwhile waits until the work resolves', async () => {
    const { store, machine } = await fresh();
    await machine.applyEntries([{ index: 1, proposalId: 1n, payload: encodeRequestPayload({ op: 'set', key: 'a', value: '1' }, packHlc(T0)) }]);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const seen: string[] = [];
    const point = machine.atApplyPoint(async (appliedIndex) => {
      seen.push(`point at ${appliedIndex}`);
      await gate;
      seen.push(`point sees a=${(await store.getLatest(Buffer.from('a'), T0))?.value.toString()}`);
      return appliedIndex;
    });
    const apply = machine.applyEntries([{ index: 2, proposalId: 2n, payload: encodeRequestPayload({ op: 'set', key: 'a', value: '2' }, packHlc(T0 + 1)) }]).then(() => seen.push('applied 2'));
    await new Promise((r) => setTimeout(r, 20));
    expect(machine.appliedIndex, 'the apply waits for the point').toBe(1);
    release();
    expect(await point).toBe(1);
    await apply;
    expect(seen).toEqual(['point at 1', 'point sees a=1', 'applied 2']);
    expect(machine.appliedIndex).toBe(2);
  });
});
