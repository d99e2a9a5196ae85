// The rewrite sweep (SPEC §11) on both engines: every version re-sealed in
// place under the active DEK (tombstones, other key_ids and heads left
// alone, expiry kept), cleartext sweeps, refusals, resume from the cursor,
// abort, rate pacing on an injected clock, the pool path, a tampered
// envelope, and snapshot installs racing the sweep.

import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CryptoPool, type Keystore } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { cursorKey, doneKey, listSweepStates, readSweepState, runSweep, type SweepClock, type SweepProgress } from '../../src/rewrite/index.js';
import { MemoryEngine, Store, versionRowKey, type StoredVersion, type WriteOp } from '../../src/store/index.js';
import { NEW_KEY_ID, OLD_KEY_ID, storedVersions, sweepFixture } from '../support/rewrite-fixtures.js';
import { storeEngines, type OpenedEngine } from '../support/store-engines.js';

const b = (s: string): Buffer => Buffer.from(s);
const FAR = 9_000_000_000_000n;

const opened: OpenedEngine[] = [];
const pools: CryptoPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
  await Promise.all(opened.splice(0).map((o) => o.cleanup()));
});

/** 40 keys × 3 versions (the middle one a tombstone for every fifth key), some with a TTL. */
function history(): WriteOp[][] {
  const batches: WriteOp[][] = [];
  for (let ts = 1n; ts <= 3n; ts++) {
    const ops: WriteOp[] = [];
    for (let i = 0; i < 40; i++) {
      const key = b(`key-${String(i).padStart(3, '0')}`);
      if (ts === 2n && i % 5 === 0) ops.push({ type: 'delete', key, commitTs: ts * 10n });
      else ops.push({ type: 'put', key, value: b(`value ${i} at ${ts} `.repeat(1 + (i % 7))), commitTs: ts * 10n, ...(i % 3 === 0 ? { expireAt: FAR + BigInt(i) } : {}) });
    }
    batches.push(ops);
  }
  return batches;
}

describe.each(storeEngines)('rewrite sweep on $name', ({ open }) => {
  async function fixture(options: Parameters<typeof sweepFixture>[1] = {}) {
    const o = await open();
    opened.push(o);
    return sweepFixture(o.engine, options);
  }

  it('re-seals every non-tombstone version under the old DEK, in place, and leaves the rest as it was', async () => {
    const { store, rotate } = await fixture();
    const batches = history();
    await store.applyBatch(batches[0]!);
    await store.applyBatch(batches[1]!);
    rotate();
    await store.applyBatch(batches[2]!); // already under the new DEK
    const before = await storedVersions(store);
    const headsBefore = await store.getMany(batches[0]!.map((op) => op.key), 100n);
    const progress: SweepProgress[] = [];
    const final = await runSweep({ store, target: { keyId: OLD_KEY_ID }, batchVersions: 7, onProgress: (p) => progress.push(p) });

    const after = await storedVersions(store);
    expect([...after.keys()]).toEqual([...before.keys()]);
    const oldLive = [...before.values()].filter((v) => v.keyId === OLD_KEY_ID && !v.tombstone).length;
    expect(oldLive).toBe(40 + 32);
    for (const [id, v] of before) {
      const w = after.get(id)!;
      expect(w.value, id).toEqual(v.value);
      expect(w.tombstone, id).toBe(v.tombstone);
      expect(w.expireAt, id).toBe(v.expireAt);
      expect(w.keyId, id).toBe(v.tombstone ? 0 : NEW_KEY_ID);
    }
    expect(await store.getMany(batches[0]!.map((op) => op.key), 100n)).toEqual(headsBefore);
    expect(final).toMatchObject({ target: `key_id ${OLD_KEY_ID}`, scanned: 120, rewritten: oldLive, skipped: 0, done: true, activeKeyId: NEW_KEY_ID });
    expect(progress.at(-1)).toEqual(final);
    expect(progress.length).toBeGreaterThan(5);
    const state = await readSweepState(store, { keyId: OLD_KEY_ID });
    expect(state.cursor).toBeUndefined();
    expect(state.done).toMatchObject({ rewritten: oldLive, active_key_id: NEW_KEY_ID, scanned: 120 });
    expect(await listSweepStates(store)).toEqual([{ target: { keyId: OLD_KEY_ID }, done: state.done }]);
  });

  it('seals cleartext versions (Phase 1 data) with the --cleartext target', async () => {
    const o = await open();
    opened.push(o);
    const clear = new Store(o.engine);
    await clear.applyBatch(history()[0]!);
    await clear.applyBatch(history()[1]!);
    const before = await storedVersions(clear);
    const { store, rotate } = sweepFixture(o.engine);
    rotate();
    await expect(runSweep({ store, target: { keyId: OLD_KEY_ID } })).resolves.toMatchObject({ rewritten: 0, done: true });
    const final = await runSweep({ store, target: { cleartext: true }, batchBytes: 256 });
    expect(final).toMatchObject({ target: 'cleartext', rewritten: 72, done: true });
    const after = await storedVersions(store);
    for (const [id, v] of before) {
      expect(after.get(id)).toMatchObject({ value: v.value, tombstone: v.tombstone, expireAt: v.expireAt, keyId: v.tombstone ? 0 : NEW_KEY_ID });
    }
    expect((await listSweepStates(store)).map((s) => s.target)).toEqual([{ keyId: OLD_KEY_ID }, { cleartext: true }]);
  });

  it('refuses when the store does not seal, and for the active DEK', async () => {
    const o = await open();
    opened.push(o);
    await expect(runSweep({ store: new Store(o.engine), target: { cleartext: true } })).rejects.toSatisfy((err) => isSealError(err, 'ErrRewriteNotSealing'));
    const { store } = sweepFixture(o.engine);
    await expect(runSweep({ store, target: { keyId: OLD_KEY_ID } })).rejects.toSatisfy((err) => isSealError(err, 'ErrRewriteTargetActive'));
    await expect(runSweep({ store, target: { keyId: 0 } })).rejects.toThrow(RangeError);
    expect(await listSweepStates(store)).toEqual([]);
  });

  it('stops after the batch in flight on abort, keeps its cursor, and resumes from it', async () => {
    const { store, rotate } = await fixture();
    for (const batch of history()) await store.applyBatch(batch);
    rotate();
    const abort = new AbortController();
    const first = await runSweep({ store, target: { keyId: OLD_KEY_ID }, batchVersions: 10, signal: abort.signal, onProgress: (p) => p.rewritten >= 20 && abort.abort() });
    expect(first.done).toBe(false);
    expect(first.rewritten).toBeGreaterThanOrEqual(20);
    expect(first.rewritten).toBeLessThan(40);
    const { cursor, done } = await readSweepState(store, { keyId: OLD_KEY_ID });
    expect(done).toBeUndefined();
    expect(cursor).toBeDefined();
    // Everything up to the cursor is re-sealed, nothing after it.
    const cursorRow = Buffer.concat([Buffer.from([0x03]), cursor!]);
    for await (const v of store.versions()) {
      if (v.header.tombstone) continue;
      const row = versionRowKey(v.key, v.commitTs);
      expect(v.keyId, row.toString('latin1')).toBe(Buffer.compare(row, cursorRow) <= 0 ? NEW_KEY_ID : OLD_KEY_ID);
    }
    const second = await runSweep({ store, target: { keyId: OLD_KEY_ID } });
    expect(second.done).toBe(true);
    expect(first.rewritten + second.rewritten).toBe(112);
    expect(second.scanned).toBeLessThan(120);
    expect([...(await storedVersions(store)).values()].filter((v) => v.keyId === OLD_KEY_ID)).toEqual([]);
  });

  it('paces value bytes to --rate on the injected clock', async () => {
    const { store, rotate } = await fixture();
    // Incompressible, so that each stored body is 1024 + 34 bytes.
    await store.applyBatch(Array.from({ length: 64 }, (_, i) => ({ type: 'put' as const, key: b(`r${i}`), value: crypto.randomBytes(990), commitTs: 5n })));
    rotate();
    let now = 0;
    const sleeps: number[] = [];
    const clock: SweepClock = { now: () => now, sleep: async (ms) => void (sleeps.push(ms), (now += ms)) };
    const ticks: { at: number; bytes: number }[] = [];
    // 1/64 MiB/s = 16 KiB/s: 64 KiB of values take 4 s on the schedule.
    const final = await runSweep({ store, target: { keyId: OLD_KEY_ID }, rateMiBps: 1 / 64, batchBytes: 8 * 1024, clock, onProgress: (p) => ticks.push({ at: now, bytes: p.rewrittenBytes }) });
    expect(final.rewrittenBytes).toBe(64 * 1024);
    expect(sleeps.length).toBe(8);
    expect(now).toBeCloseTo(4000, 6);
    // Never ahead of the schedule: bytes written by time t ≤ rate × t.
    for (const { at, bytes } of ticks) expect(bytes).toBeLessThanOrEqual((at * 16 * 1024) / 1000 + 1e-6);
    expect(final.bytesPerSec).toBeCloseTo(16 * 1024, 6);
  });

  it('reseals on the pool workers the same way (open and seal in one worker call)', async () => {
    const { store, rotate } = await fixture({
      pool: (keys: Keystore) => {
        const pool = new CryptoPool({ keys, backend: 'aesni', threads: 1, chunkItems: 16 });
        pools.push(pool);
        return pool;
      },
    });
    for (const batch of history()) await store.applyBatch(batch);
    const before = await storedVersions(store);
    rotate();
    expect(await runSweep({ store, target: { keyId: OLD_KEY_ID }, batchVersions: 50 })).toMatchObject({ rewritten: 112, done: true });
    const after = await storedVersions(store);
    for (const [id, v] of before) expect(after.get(id)).toMatchObject({ value: v.value, keyId: v.tombstone ? 0 : NEW_KEY_ID, expireAt: v.expireAt });
  });

  it('stops with ErrEncryptedReadIntegrity at a tampered envelope, and damages nothing', async () => {
    const o = await open();
    opened.push(o);
    const { store, rotate } = sweepFixture(o.engine);
    for (const batch of history()) await store.applyBatch(batch);
    rotate();
    const victim = versionRowKey(b('key-021'), 20n);
    const [row] = await o.engine.getMany([victim]);
    row![row!.length - 1]! ^= 1;
    await o.engine.write([{ type: 'put', key: victim, value: row! }]);
    await expect(runSweep({ store, target: { keyId: OLD_KEY_ID }, batchVersions: 4 })).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
    expect((await o.engine.getMany([victim]))[0]).toEqual(row);
    const { cursor, done } = await readSweepState(store, { keyId: OLD_KEY_ID });
    expect(done).toBeUndefined();
    expect(cursor).toBeDefined();
    expect(Buffer.compare(Buffer.concat([Buffer.from([3]), cursor!]), victim)).toBeLessThan(0);
  });
});

describe('store generation guard', () => {
  it('drops a guarded batch whose generation a clear() or restoreSnapshot() made stale, and one that meets a restore', async () => {
    const { store, rotate } = sweepFixture(new MemoryEngine());
    await store.applyBatch(history()[0]!);
    const rows: Buffer[] = [];
    for await (const chunk of store.snapshotStream(null)) rows.push(chunk);
    rotate();
    const g0 = store.generation;
    const cursor = { type: 'putInternal' as const, key: cursorKey({ keyId: OLD_KEY_ID }), value: b('x') };
    expect(await store.applyBatch([cursor], { ifGeneration: g0 })).toEqual({ rewritesSkipped: 0, staleGeneration: false });
    await store.clear();
    expect(store.generation).toBe(g0 + 1);
    expect(await store.applyBatch([cursor], { ifGeneration: g0 })).toEqual({ rewritesSkipped: 0, staleGeneration: true });
    expect(await store.getInternal(cursor.key)).toBeUndefined();
    // A batch queued while the restore writes its rows is dropped too, even with the new generation.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* slow(): AsyncGenerator<Buffer> {
      yield rows[0]!;
      await gate;
      yield* rows.slice(1);
    }
    const restoring = store.restoreSnapshot(slow());
    await new Promise((resolve) => setTimeout(resolve, 20));
    const during = store.applyBatch([cursor, { type: 'putInternal', key: doneKey({ keyId: OLD_KEY_ID }), value: b('{}') }], { ifGeneration: store.generation });
    release();
    expect(await during).toMatchObject({ staleGeneration: true });
    await restoring;
    expect(store.generation).toBe(g0 + 3);
    expect(await store.getInternal(cursor.key)).toBeUndefined();
    expect(await store.scanInternal(b('!encryption|rewrite|'))).toEqual([]);
    expect((await store.scanAll({}, 100n)).length).toBe(40);
  });

  it('a sweep whose data is replaced by a snapshot install mid-run restarts on the restored data and re-seals it all', async () => {
    const { store, rotate } = sweepFixture(new MemoryEngine());
    for (const batch of history()) await store.applyBatch(batch);
    const snapshot: Buffer[] = [];
    for await (const chunk of store.snapshotStream(null)) snapshot.push(chunk);
    rotate();
    let installs = 0;
    const final = await runSweep({
      store,
      target: { keyId: OLD_KEY_ID },
      batchVersions: 10,
      beforeBatch: async () => {
        // After the first batches went in: replace the store with the pre-sweep snapshot.
        if (installs > 0 || (await store.getInternal(cursorKey({ keyId: OLD_KEY_ID }))) === undefined) return;
        installs++;
        await store.clear();
        await store.restoreSnapshot(
          (async function* () {
            yield* snapshot;
          })(),
        );
      },
    });
    expect(installs).toBe(1);
    expect(final.done).toBe(true);
    const after = await storedVersions(store);
    expect(after.size).toBe(120);
    expect([...after.values()].filter((v) => !v.tombstone && v.keyId !== NEW_KEY_ID)).toEqual([]);
    expect((await readSweepState(store, { keyId: OLD_KEY_ID })).cursor).toBeUndefined();
  });
});

describe('quietSince', () => {
  /** Counts getMany calls: the guard's re-reads. */
  class CountingEngine extends MemoryEngine {
    reads = 0;
    override async getMany(keys: readonly Uint8Array[]): Promise<(Buffer | null)[]> {
      this.reads++;
      return super.getMany(keys);
    }
  }

  it('skips the guard re-read while only the owner wrote since the reads, and keeps it after any other write', async () => {
    const engine = new CountingEngine();
    const { store, rotate } = sweepFixture(engine);
    await store.applyBatch(history()[0]!);
    rotate();
    const owner = Symbol('test');
    const quietSince = { seq: store.writeSeq, owner };
    const versions: StoredVersion[] = [];
    for await (const v of store.versions()) versions.push(v);
    const reseal = (i: number): WriteOp => ({ type: 'reseal', key: versions[i]!.key, commitTs: versions[i]!.commitTs, ifRow: versions[i]!.row });
    engine.reads = 0;
    expect(await store.applyBatch([reseal(0)], { quietSince })).toEqual({ rewritesSkipped: 0, staleGeneration: false });
    expect(await store.applyBatch([reseal(1)], { quietSince })).toEqual({ rewritesSkipped: 0, staleGeneration: false });
    expect(engine.reads).toBe(0);
    // A foreign write (a re-apply of version 2): the next batch re-reads, and drops its stale reseal of it.
    await store.applyBatch([{ type: 'put', key: versions[2]!.key, value: b('newer'), commitTs: versions[2]!.commitTs }]);
    expect(await store.applyBatch([reseal(2), reseal(3)], { quietSince })).toEqual({ rewritesSkipped: 1, staleGeneration: false });
    expect(engine.reads).toBe(1);
    // Another owner's batch is a foreign write for this owner's later batches.
    expect(await store.applyBatch([reseal(4)], { quietSince: { seq: store.writeSeq, owner: Symbol('other') } })).toMatchObject({ rewritesSkipped: 0 });
    expect(engine.reads).toBe(1);
    expect(await store.applyBatch([reseal(5)], { quietSince: { seq: store.writeSeq - 1, owner } })).toMatchObject({ rewritesSkipped: 0 });
    expect(engine.reads).toBe(2);
    expect((await store.get(versions[2]!.key, versions[2]!.commitTs))?.value).toEqual(b('newer'));
  });
});

describe('sweep input checks', () => {
  it('rejects bad batch sizes and rates before touching the store', async () => {
    const { store, rotate } = sweepFixture(new MemoryEngine());
    rotate();
    await expect(runSweep({ store, target: { keyId: OLD_KEY_ID }, batchBytes: 0 })).rejects.toThrow(RangeError);
    await expect(runSweep({ store, target: { keyId: OLD_KEY_ID }, rateMiBps: -1 })).rejects.toThrow(RangeError);
  });
});
