// Sealing write batches on the crypto pool (EncryptionSettings.pool): the
// rows are the bytes in-thread sealing makes with the same nonces, writes
// keep call order however the workers finish, and a batch whose worker dies
// fails with ErrWorkerFailed and stores nothing. Workers run from dist/
// (npm test builds first).

import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { AesniBackend, CryptoPool, FLAG_COMPRESSED, parseEnvelope, type Keystore } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { MemoryEngine, Store, decodeValue, versionRowKey, type Engine, type EngineOp, type WriteOp } from '../../src/store/index.js';
import { fill, fixtureKeystore, fixtureSealer } from '../support/crypto-fixtures.js';
import { storeEngines } from '../support/store-engines.js';

const b = (s: string): Buffer => Buffer.from(s);
// The meta row of the Raft applied index (src/store/keys.ts).
const APPLIED_INDEX_KEY = Buffer.concat([Buffer.from([0x00]), b('applied_index')]);

const json = (i: number): Buffer => b(JSON.stringify({ id: i, name: `user-${i}`, tags: ['alpha', 'beta', 'gamma'], active: i % 2 === 0 }).repeat(8));

const pools: CryptoPool[] = [];
function makePool(keys: Keystore, threads = 2): CryptoPool {
  const pool = new CryptoPool({ keys, backend: 'aesni', threads });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

/** A mix the sealer must handle: compressible, incompressible (sampled and not), empty, deletes, TTL. */
type UserOp = Extract<WriteOp, { type: 'put' | 'delete' }>;
function mixedBatch(from: number, count: number, commitTs: bigint): UserOp[] {
  return Array.from({ length: count }, (_, j): UserOp => {
    const i = from + j;
    const key = b(`k${String(i).padStart(5, '0')}`);
    if (i % 11 === 10) return { type: 'delete', key, commitTs };
    const value = i % 4 === 0 ? json(i) : i % 4 === 1 ? Buffer.from(fill(200 + (i % 3000), i + 1)) : i % 4 === 2 ? Buffer.alloc(0) : crypto.randomBytes(50);
    return { type: 'put', key, value, commitTs, ...(i % 7 === 0 ? { expireAt: 9_000_000_000_000n } : {}) };
  });
}

/** Records the applied index of every engine write, in the order the engine got them. */
class RecordingEngine extends MemoryEngine {
  readonly appliedOrder: bigint[] = [];
  override async write(ops: readonly EngineOp[]): Promise<void> {
    for (const op of ops) {
      if (op.type === 'put' && APPLIED_INDEX_KEY.equals(op.key)) this.appliedOrder.push(Buffer.from(op.value).readBigUInt64BE(0));
    }
    return super.write(ops);
  }
}

describe.each(storeEngines)('pool-sealed writes on $name', ({ open }) => {
  it('store the rows in-thread sealing makes with the same nonces, and read back identically', async () => {
    const keys = fixtureKeystore();
    const a = await open();
    const c = await open();
    const inThread = new Store(a.engine, { sealer: fixtureSealer(new AesniBackend(), keys), active: true });
    const pooled = new Store(c.engine, { sealer: fixtureSealer(new AesniBackend(), keys), active: true, pool: makePool(keys), poolMinBytes: 0 });
    try {
      const batches = [mixedBatch(0, 300, 5n), mixedBatch(300, 1, 6n), mixedBatch(0, 40, 7n)];
      for (const ops of batches) {
        await inThread.applyBatch(ops);
        await pooled.applyBatch(ops);
      }
      for (const ops of batches) {
        for (const op of ops) {
          const [x] = await a.engine.getMany([versionRowKey(op.key, op.commitTs)]);
          const [y] = await c.engine.getMany([versionRowKey(op.key, op.commitTs)]);
          expect(y).toEqual(x);
        }
      }
      const compressed = decodeValue((await c.engine.getMany([versionRowKey(b('k00000'), 5n)]))[0]!);
      expect(parseEnvelope(compressed.body, 'storage').flag & FLAG_COMPRESSED).toBe(FLAG_COMPRESSED);
      const fromPool = await pooled.scanAll({ prefix: b('k') }, 6n);
      expect(fromPool.length).toBeGreaterThan(200);
      expect(fromPool).toEqual(await inThread.scanAll({ prefix: b('k') }, 6n));
      const one = batches[0]![1]!;
      expect(one.type === 'put' && (await pooled.get(one.key, 5n))?.value).toEqual(one.type === 'put' && one.value);
    } finally {
      await inThread.close();
      await pooled.close();
      await a.cleanup();
      await c.cleanup();
    }
  });
});

describe('compression sampling', () => {
  it('skips Snappy for random values but still compresses values random only in part', async () => {
    const keys = fixtureKeystore();
    const store = new Store(new MemoryEngine(), { sealer: fixtureSealer(new AesniBackend(), keys), active: true });
    try {
      const random = crypto.randomBytes(4096);
      const randomThenZeros = Buffer.concat([crypto.randomBytes(3000), Buffer.alloc(1096)]);
      const zerosThenRandom = Buffer.concat([Buffer.alloc(1096), crypto.randomBytes(3000)]);
      const values = { random, randomThenZeros, zerosThenRandom };
      await store.applyBatch(Object.entries(values).map(([k, value]) => ({ type: 'put', key: b(k), value, commitTs: 1n })));
      for (const [k, value] of Object.entries(values)) {
        const [row] = await store.engine.getMany([versionRowKey(b(k), 1n)]);
        const flag = parseEnvelope(decodeValue(row!).body, 'storage').flag;
        expect(flag & FLAG_COMPRESSED).toBe(k === 'random' ? 0 : FLAG_COMPRESSED);
        expect((await store.get(b(k), 1n))?.value).toEqual(value);
      }
    } finally {
      await store.close();
    }
  });
});

describe('pool-sealed writes', () => {
  it('keep call order under concurrent applyBatch calls, whichever batch finishes sealing first', async () => {
    const keys = fixtureKeystore();
    const engine = new RecordingEngine();
    const store = new Store(engine, { sealer: fixtureSealer(new AesniBackend(), keys), active: true, pool: makePool(keys) });
    try {
      // Large (pool-sealed) and tiny (in-thread, under poolMinBytes) batches
      // alternate, so a later tiny batch is sealed before the large one
      // ahead of it. Every batch writes key "same" at its own commit_ts:
      // the head must end on the last one.
      const calls = Array.from({ length: 24 }, (_, n) => {
        const size = n % 2 === 0 ? 400 : 1;
        const ops: WriteOp[] = Array.from({ length: size }, (_, j) => ({ type: 'put', key: b(`b${n}:${j}`), value: Buffer.from(fill(1024, n * 1000 + j + 1)), commitTs: BigInt(n + 1) }));
        ops.push({ type: 'put', key: b('same'), value: b(`from ${n}`), commitTs: BigInt(n + 1) });
        return store.applyBatch(ops, { appliedIndex: BigInt(n + 1) });
      });
      await Promise.all(calls);
      expect(engine.appliedOrder).toEqual(Array.from({ length: 24 }, (_, n) => BigInt(n + 1)));
      expect(await store.appliedIndex()).toBe(24n);
      expect((await store.get(b('same'), 100n))?.value).toEqual(b('from 23'));
      for (let n = 0; n < 24; n++) expect((await store.get(b('same'), BigInt(n + 1)))?.value).toEqual(b(`from ${n}`));
      expect((await store.get(b('b22:399'), 100n))?.value).toEqual(Buffer.from(fill(1024, 22 * 1000 + 399 + 1)));
    } finally {
      await store.close();
    }
  });

  it('fail a batch whose worker dies with ErrWorkerFailed, store nothing of it, and go on with the next', async () => {
    const keys = fixtureKeystore();
    const engine: Engine = new MemoryEngine();
    const pool = makePool(keys, 1);
    const store = new Store(engine, { sealer: fixtureSealer(new AesniBackend(), keys), active: true, pool });
    try {
      await store.applyBatch([{ type: 'put', key: b('warm'), value: b('up'), commitTs: 1n }], { appliedIndex: 1n });
      const big: WriteOp[] = Array.from({ length: 4096 }, (_, j) => ({ type: 'put', key: b(`lost:${j}`), value: crypto.randomBytes(4096), commitTs: 2n }));
      big.push({ type: 'put', key: b('warm'), value: b('overwritten?'), commitTs: 2n });
      const failing = store.applyBatch(big, { appliedIndex: 2n });
      const after = store.applyBatch([{ type: 'put', key: b('next'), value: b('kept'), commitTs: 3n }], { appliedIndex: 3n });
      // The batch's chunks are with the only worker now; kill the thread under them.
      void pool.workers[0]!.terminate();
      const error: unknown = await failing.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isSealError(error, 'ErrWorkerFailed')).toBe(true);
      // The small batch queued behind it (sealed in-thread, under poolMinBytes) is written.
      await after;
      expect((await store.getMany([b('lost:0'), b('lost:4095')], 10n)).every((e) => e === undefined)).toBe(true);
      expect((await store.get(b('warm'), 10n))?.value).toEqual(b('up'));
      expect((await store.get(b('next'), 10n))?.value).toEqual(b('kept'));
      expect(await store.appliedIndex()).toBe(3n);
      // The store and the pool (with a replacement worker) keep working.
      await store.applyBatch([{ type: 'put', key: b('later'), value: b('fine'), commitTs: 4n }], { appliedIndex: 4n });
      expect((await store.get(b('later'), 10n))?.value).toEqual(b('fine'));
      expect(await store.appliedIndex()).toBe(4n);
    } finally {
      await store.close();
    }
  });
});
