// The crypto worker pool (SPEC §3.5): same bytes as the in-thread backends,
// caller-reserved nonces, keys installed once per worker by key_id, per-item
// failures, clean shutdown, and a crashed worker failing its batch with
// ErrWorkerFailed instead of hanging. Workers run from dist/ (npm test
// builds first).

import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AesniBackend,
  CryptoPool,
  FLAG_COMPRESSED,
  Keystore,
  NonceFactory,
  RAFT_AAD,
  compressForSeal,
  parseEnvelope,
  packContiguous,
  packValues,
  transferablesOf,
  type AadContext,
  type BackendName,
  type CryptoPoolOptions,
  type SealItem,
} from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { backends } from '../support/backends.js';
import { RAFT_KEY_ID, STORAGE_KEY_ID, fixtureKeystore, valueHeader } from '../support/crypto-fixtures.js';

const aesni = new AesniBackend();
const pools: CryptoPool[] = [];

function makePool(options: Partial<CryptoPoolOptions> & { keys: CryptoPoolOptions['keys'] }): CryptoPool {
  const pool = new CryptoPool({ backend: 'aesni', threads: 2, ...options });
  pools.push(pool);
  return pool;
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

const storageAad = (i: number): AadContext => ({ kind: 'storage', valueHeader: valueHeader(i & 1 ? 0b010 : 0, BigInt(i)), storeKey: Buffer.from(`user:${i}`) });

function storageItems(count: number, maxSize = 3000): SealItem[] {
  return Array.from({ length: count }, (_, i) => ({ plaintext: crypto.randomBytes((i * 397) % maxSize), flag: i % 3 === 0 ? 1 : 0, aad: storageAad(i) }));
}

const nonceFactory = (): NonceFactory => new NonceFactory({ nodeId: 0x0a0b, localEpoch: 3 });

describe('crypto pool', () => {
  it('seals in chunks across workers to the bytes the aesni backend makes with the same nonces', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, chunkItems: 7, chunkBytes: 8 * 1024 });
    const items = storageItems(100);
    const nonces = nonceFactory().reserve(items.length);
    const envelopes = await pool.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items);
    const expected = aesni.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items);
    expect(envelopes.length).toBe(items.length);
    envelopes.forEach((envelope, i) => expect(Buffer.from(envelope).equals(expected[i]!)).toBe(true));
  });

  it('compresses storage items of flag 0 in the worker when told, to the bytes compressForSeal then aesni make', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 1 });
    const json = Buffer.from(JSON.stringify({ id: 1, tags: ['alpha', 'beta', 'gamma'], active: true }).repeat(20));
    const items: SealItem[] = [json, crypto.randomBytes(2000), Buffer.alloc(0), Buffer.from('short')].map((plaintext, i) => ({ plaintext, flag: 0, aad: storageAad(i) }));
    const nonces = nonceFactory().reserve(items.length);
    const envelopes = await pool.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items, { compress: true });
    const expected = aesni.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items.map((item) => ({ ...compressForSeal(item.plaintext), aad: item.aad })));
    envelopes.forEach((envelope, i) => expect(Buffer.from(envelope).equals(expected[i]!)).toBe(true));
    expect(parseEnvelope(envelopes[0]!, 'storage').flag).toBe(FLAG_COMPRESSED);
    expect(parseEnvelope(envelopes[1]!, 'storage').flag).toBe(0);
  });

  it('opens a batch, marking only the tampered, unknown-key and short items as failed', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, chunkItems: 5 });
    const items = storageItems(20);
    const envelopes = aesni.sealBatch(keys.get(STORAGE_KEY_ID)!, nonceFactory().reserve(items.length), items);
    envelopes[3]![envelopes[3]!.length - 1]! ^= 1;
    envelopes[8]!.set([0, 0, 0, 99], 2);
    envelopes[11] = envelopes[11]!.subarray(0, 20);
    const results = await pool.openBatch(envelopes.map((envelope, i) => ({ envelope, aad: items[i]!.aad })));
    const codes = results.map((r) => (r.ok ? 'ok' : r.error.code));
    expect(codes[3]).toBe('ErrEncryptedReadIntegrity');
    expect(codes[8]).toBe('ErrUnknownKeyId');
    expect(codes[11]).toBe('ErrEnvelopeShort');
    results.forEach((r, i) => {
      if (i === 3 || i === 8 || i === 11) return;
      expect(r.ok && Buffer.from(r.plaintext).equals(items[i]!.plaintext) && r.flag === items[i]!.flag && r.keyId === STORAGE_KEY_ID).toBe(true);
    });
  });

  it('re-seals under a new DEK with the caller’s nonces, keeping location and flag; a tampered item fails alone', async () => {
    const keys = fixtureKeystore();
    const newKeyId = 77;
    keys.install(newKeyId, 'storage', crypto.randomBytes(32));
    const pool = makePool({ keys, chunkItems: 4 });
    const items = storageItems(13);
    const old = aesni.sealBatch(keys.get(STORAGE_KEY_ID)!, nonceFactory().reserve(items.length), items);
    old[5]![30]! ^= 0x40;
    const nonces = new NonceFactory({ nodeId: 0x0a0b, localEpoch: 9 }).reserve(items.length);
    const resealed = await pool.resealBatch(keys.get(newKeyId)!, nonces, old.map((envelope, i) => ({ envelope, aad: items[i]!.aad })));
    expect(resealed.map((r) => (r.ok ? 'ok' : r.error.code))[5]).toBe('ErrEncryptedReadIntegrity');
    const opened = aesni.openBatch(
      keys,
      resealed.flatMap((r, i) => (r.ok ? [{ envelope: r.envelope, aad: items[i]!.aad }] : [])),
    );
    const kept = items.filter((_, i) => i !== 5);
    opened.forEach((r, k) => expect(r.ok && r.keyId === newKeyId && r.flag === kept[k]!.flag && Buffer.from(r.plaintext).equals(kept[k]!.plaintext)).toBe(true));
    // Every envelope carries a nonce of the reserved range, none twice.
    const used = resealed.flatMap((r) => (r.ok ? [Buffer.from(r.envelope.subarray(6, 18)).toString('hex')] : []));
    expect(new Set(used).size).toBe(used.length);
    for (const nonce of used) {
      expect(nonce.slice(0, 8)).toBe('0a0b0009');
      expect(BigInt('0x' + nonce.slice(8))).toBeLessThan(BigInt(items.length));
    }
  });

  it('installs each DEK once per worker, by key_id, and asks again after forgetKey', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, chunkItems: 2 });
    const factory = nonceFactory();
    const raftItems = Array.from({ length: 40 }, (_, i) => ({ plaintext: Buffer.from(`entry ${i}`), flag: 0, aad: RAFT_AAD }));
    for (let round = 0; round < 5; round++) await pool.sealBatch(keys.get(RAFT_KEY_ID)!, factory.reserve(raftItems.length), raftItems);
    const first = pool.keyRequests;
    expect(first).toBeGreaterThanOrEqual(1);
    expect(first).toBeLessThanOrEqual(pool.threads);
    await pool.sealBatch(keys.get(RAFT_KEY_ID)!, factory.reserve(raftItems.length), raftItems);
    expect(pool.keyRequests).toBe(first);
    pool.forgetKey(RAFT_KEY_ID);
    await pool.sealBatch(keys.get(RAFT_KEY_ID)!, factory.reserve(raftItems.length), raftItems);
    expect(pool.keyRequests).toBeGreaterThan(first);
  });

  it('refuses to seal under a DEK its keystore does not hold, one of the wrong purpose, and other bytes under a known key_id', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 1 });
    const stranger = new Keystore();
    stranger.install(5, 'raft', crypto.randomBytes(32));
    const raft = [{ plaintext: Buffer.from('x'), flag: 0, aad: RAFT_AAD }];
    await expect(pool.sealBatch(stranger.get(5)!, nonceFactory().reserve(1), raft)).rejects.toMatchObject({ code: 'ErrUnknownKeyId' });
    await expect(pool.sealBatch(keys.get(STORAGE_KEY_ID)!, nonceFactory().reserve(1), raft)).rejects.toBeInstanceOf(RangeError);
    // Same key_id, other bytes: the workers would seal under the keystore's key, not this one.
    const impostor = { keyId: RAFT_KEY_ID, purpose: 'raft' as const, key: crypto.randomBytes(32) };
    await expect(pool.sealBatch(impostor, nonceFactory().reserve(1), raft)).rejects.toBeInstanceOf(RangeError);
  });

  it('answers a worker that asks for a key the keystore lost with ErrUnknownKeyId', async () => {
    const keys = fixtureKeystore();
    keys.install(42, 'raft', crypto.randomBytes(32));
    const pool = makePool({ keys, threads: 1 });
    const envelope = aesni.sealBatch(keys.get(42)!, nonceFactory().reserve(1), [{ plaintext: Buffer.from('y'), flag: 0, aad: RAFT_AAD }])[0]!;
    keys.remove(42);
    const [result] = await pool.openBatch([{ envelope, aad: RAFT_AAD }]);
    expect(result!.ok === false && result!.error.code).toBe('ErrUnknownKeyId');
  });

  it('fails the batch of a crashed worker with ErrWorkerFailed, then keeps working', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 1, chunkItems: 4096, chunkBytes: 64 << 20 });
    const dek = keys.get(RAFT_KEY_ID)!;
    const factory = nonceFactory();
    const small = [{ plaintext: Buffer.from('warm'), flag: 0, aad: RAFT_AAD }];
    await pool.sealBatch(dek, factory.reserve(1), small);
    const big = Array.from({ length: 4096 }, () => ({ plaintext: crypto.randomBytes(4096), flag: 0, aad: RAFT_AAD }));
    const sealing = pool.sealBatch(dek, factory.reserve(big.length), big);
    // The chunk is with the worker now; kill the thread under it.
    void pool.workers[0]!.terminate();
    const error: unknown = await sealing.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isSealError(error, 'ErrWorkerFailed')).toBe(true);
    const after = await pool.sealBatch(dek, factory.reserve(1), small);
    expect(after.length).toBe(1);
  });

  it('fails a many-chunk batch when one of two workers dies, then keeps working', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 2, chunkItems: 64 });
    const dek = keys.get(RAFT_KEY_ID)!;
    const factory = nonceFactory();
    const small = [{ plaintext: Buffer.from('warm'), flag: 0, aad: RAFT_AAD }];
    await Promise.all([pool.sealBatch(dek, factory.reserve(1), small), pool.sealBatch(dek, factory.reserve(1), small)]);
    const items = Array.from({ length: 64 * 40 }, () => ({ plaintext: crypto.randomBytes(2048), flag: 0, aad: RAFT_AAD }));
    const sealing = pool.sealBatch(dek, factory.reserve(items.length), items);
    void pool.workers[0]!.terminate();
    await expect(sealing).rejects.toMatchObject({ code: 'ErrWorkerFailed' });
    expect((await pool.sealBatch(dek, factory.reserve(items.length), items)).length).toBe(items.length);
  });

  it('close() waits for running batches, then refuses new ones with ErrCryptoPoolClosed', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys });
    const items = storageItems(200, 20_000);
    const sealing = pool.sealBatch(keys.get(STORAGE_KEY_ID)!, nonceFactory().reserve(items.length), items);
    const closing = pool.close();
    expect((await sealing).length).toBe(items.length);
    await closing;
    expect(pool.workers.length).toBe(0);
    await expect(pool.openBatch([{ envelope: new Uint8Array(40), aad: RAFT_AAD }])).rejects.toMatchObject({ code: 'ErrCryptoPoolClosed' });
  });

  it('rejects with an AbortError when the signal is aborted', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 1 });
    const controller = new AbortController();
    controller.abort();
    const sealing = pool.sealBatch(keys.get(RAFT_KEY_ID)!, nonceFactory().reserve(1), [{ plaintext: Buffer.from('z'), flag: 0, aad: RAFT_AAD }], { signal: controller.signal });
    await expect(sealing).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('validates its options eagerly', () => {
    const keys = fixtureKeystore();
    expect(() => new CryptoPool({ keys, threads: 0 })).toThrow(RangeError);
    expect(() => new CryptoPool({ keys, chunkItems: 1.5 })).toThrow(RangeError);
    expect(() => new CryptoPool({ keys, backend: 'rot13' as BackendName })).toThrow(RangeError);
  });

  it('moves packed buffers, never a view into a buffer someone else owns', () => {
    const packed = packValues([crypto.randomBytes(6000), crypto.randomBytes(100)]);
    const moved = transferablesOf([packed]);
    expect(moved).toContain(packed.bytes.buffer);
    expect(moved).toContain(packed.bounds.buffer);
    // A slice of Node's shared buffer pool sits past offset 0: copied, not moved.
    const pooled = Buffer.from('abc');
    expect(pooled.byteOffset).toBeGreaterThan(0);
    expect(transferablesOf([pooled])).toEqual([]);
  });

  it('packs into the allocator it is given, and skips the copy for output already back to back', () => {
    const spare = new ArrayBuffer(64);
    const packed = packValues([Buffer.from('ab'), Buffer.from('cde')], (bytes) => new Uint8Array(spare, 0, bytes));
    expect(packed.bytes.buffer).toBe(spare);
    expect(Buffer.from(packed.bytes).toString()).toBe('abcde');
    const whole = new Uint8Array(10);
    const contiguous = packContiguous([whole.subarray(0, 4), whole.subarray(4, 10)]);
    expect(contiguous.bytes.buffer).toBe(whole.buffer);
    expect([...contiguous.bounds]).toEqual([0, 4, 10]);
    // Out of order: copied.
    expect(packContiguous([whole.subarray(4, 10), whole.subarray(0, 4)]).bytes.buffer).not.toBe(whole.buffer);
  });
});

describe.each(['wasm', 'batch', 'auto'] as const)('crypto pool on the %s backend', (backend) => {
  it('seals the bytes aesni makes and opens them', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, backend, chunkItems: 16 });
    const items = storageItems(50, 5000);
    const nonces = nonceFactory().reserve(items.length);
    const envelopes = await pool.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items);
    const expected = aesni.sealBatch(keys.get(STORAGE_KEY_ID)!, nonces, items);
    envelopes.forEach((envelope, i) => expect(Buffer.from(envelope).equals(expected[i]!)).toBe(true));
    const opened = await pool.openBatch(envelopes.map((envelope, i) => ({ envelope, aad: items[i]!.aad })));
    opened.forEach((r, i) => expect(r.ok && Buffer.from(r.plaintext).equals(items[i]!.plaintext)).toBe(true));
  });
});

describe('crypto pool against every in-thread backend', () => {
  it('opens what each backend sealed, and each backend opens what the pool sealed (sizes 0..64 KiB)', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, chunkItems: 8 });
    const dek = keys.get(STORAGE_KEY_ID)!;
    const sizes = [0, 1, 15, 16, 17, 255, 4096, 65535, 65536, ...Array.from({ length: 15 }, () => crypto.randomInt(0, 65537))];
    const items = sizes.map((size, i) => ({ plaintext: crypto.randomBytes(size), flag: i & 1, aad: storageAad(i) }));
    const nonces = nonceFactory().reserve(items.length);
    const pooled = await pool.sealBatch(dek, nonces, items);
    for (const { name, make } of backends) {
      const backend = make();
      const sealed = backend.sealBatch(dek, nonces, items);
      sealed.forEach((envelope, i) => expect(Buffer.from(envelope).equals(pooled[i]!), `${name} item ${i}`).toBe(true));
      const openedHere = backend.openBatch(keys, pooled.map((envelope, i) => ({ envelope, aad: items[i]!.aad })));
      const openedThere = await pool.openBatch(sealed.map((envelope, i) => ({ envelope, aad: items[i]!.aad })));
      for (const results of [openedHere, openedThere]) {
        results.forEach((r, i) => expect(r.ok && Buffer.from(r.plaintext).equals(items[i]!.plaintext), `${name} item ${i}`).toBe(true));
      }
      backend.close?.();
    }
  });

  it('seals an empty batch to nothing', async () => {
    const keys = fixtureKeystore();
    const pool = makePool({ keys, threads: 1 });
    expect(await pool.sealBatch(keys.get(RAFT_KEY_ID)!, { prefix: new Uint8Array(4), start: 0n, count: 0 }, [])).toEqual([]);
    expect(await pool.openBatch([])).toEqual([]);
  });
});
