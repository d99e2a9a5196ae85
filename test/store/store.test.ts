// MVCC behaviour of the store, on every engine: versions and visibility,
// tombstones, TTL, scans, atomic batches, the applied index, internal rows
// and the reserved namespace.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSealError } from '../../src/errors/index.js';
import { Store, encodeStoreKey, headRowKey, rewriteCursorKey, versionRowKey, writerRegistryKey, type Entry } from '../../src/store/index.js';
import { storeEngines, type OpenedEngine } from '../support/store-engines.js';

const b = (s: string): Buffer => Buffer.from(s);
const text = (e: Entry | undefined): string | undefined => e?.value.toString();

describe.each(storeEngines)('store on $name', ({ open }) => {
  let opened: OpenedEngine;
  let store: Store;

  beforeEach(async () => {
    opened = await open();
    store = new Store(opened.engine);
  });
  afterEach(async () => {
    await store.close();
    await opened.cleanup();
  });

  it('reads the newest version at or below the read timestamp', async () => {
    await store.put(b('k'), b('v10'), 10n);
    await store.put(b('k'), b('v20'), 20n);
    await store.put(b('k'), b('v30'), 30n);
    expect(text(await store.get(b('k'), 9n))).toBeUndefined();
    expect(text(await store.get(b('k'), 10n))).toBe('v10');
    expect(text(await store.get(b('k'), 25n))).toBe('v20');
    expect(text(await store.get(b('k'), 30n))).toBe('v30');
    const latest = await store.get(b('k'), 1000n);
    expect(latest?.commitTs).toBe(30n);
    expect(text(await store.get(b('missing'), 1000n))).toBeUndefined();
  });

  it('hides a key behind its tombstone, and shows older versions below it', async () => {
    await store.put(b('k'), b('v1'), 1n);
    await store.delete(b('k'), 2n);
    expect(await store.get(b('k'), 5n)).toBeUndefined();
    expect(text(await store.get(b('k'), 1n))).toBe('v1');
    await store.put(b('k'), b('v3'), 3n);
    expect(text(await store.get(b('k'), 5n))).toBe('v3');
  });

  it('treats a value at or past expire_at as not visible', async () => {
    await store.put(b('k'), b('old'), 1n);
    await store.put(b('k'), b('ttl'), 2n, { expireAt: 1000n });
    expect(text(await store.get(b('k'), 5n, { now: 999n }))).toBe('ttl');
    expect((await store.get(b('k'), 5n, { now: 999n }))?.expireAt).toBe(1000n);
    expect(await store.get(b('k'), 5n, { now: 1000n })).toBeUndefined();
    expect(await store.scanAll({ prefix: b('k') }, 5n, { now: 1000n })).toEqual([]);
  });

  it('keeps keys that extend one another apart ("a", "ab", "a\\0")', async () => {
    // Versions of these keys interleave in store-key order.
    await store.put(b('a'), b('a1'), 1n);
    await store.put(b('ab'), b('ab2'), 2n);
    await store.put(Buffer.from([0x61, 0x00]), b('a0-3'), 3n);
    await store.put(b('a'), b('a4'), 0xff00_0000_0000_0000n);
    expect(text(await store.get(b('a'), 3n))).toBe('a1');
    expect(text(await store.get(b('ab'), 3n))).toBe('ab2');
    expect(text(await store.get(b('a'), 0xffff_0000_0000_0000n))).toBe('a4');
    const all = await store.scanAll({ prefix: b('a') }, 10n);
    expect(all.map((e) => e.key.toString('hex'))).toEqual(['61', '6100', '6162']);
    expect(all.map((e) => e.value.toString())).toEqual(['a1', 'a0-3', 'ab2']);
  });

  it('scans a prefix and a range at a timestamp, in key order, newest visible version per key', async () => {
    await store.applyBatch([
      { type: 'put', key: b('user:1'), value: b('u1-a'), commitTs: 1n },
      { type: 'put', key: b('user:2'), value: b('u2-a'), commitTs: 1n },
      { type: 'put', key: b('user:3'), value: b('u3-a'), commitTs: 1n },
      { type: 'put', key: b('zzz'), value: b('z'), commitTs: 1n },
    ]);
    await store.put(b('user:1'), b('u1-b'), 5n);
    await store.delete(b('user:2'), 6n);
    const at4 = await store.scanAll({ prefix: b('user:') }, 4n);
    expect(at4.map((e) => `${e.key}=${e.value}`)).toEqual(['user:1=u1-a', 'user:2=u2-a', 'user:3=u3-a']);
    const at9 = await store.scanAll({ prefix: b('user:') }, 9n);
    expect(at9.map((e) => `${e.key}=${e.value}`)).toEqual(['user:1=u1-b', 'user:3=u3-a']);
    const range = await store.scanAll({ start: b('user:2'), end: b('zzz') }, 9n);
    expect(range.map((e) => e.key.toString())).toEqual(['user:3']);
    expect((await store.scanAll({}, 9n)).map((e) => e.key.toString())).toEqual(['user:1', 'user:3', 'zzz']);
    expect((await store.scanAll({}, 9n, { limit: 2 })).length).toBe(2);
  });

  it('scans past one page of keys', async () => {
    const ops = Array.from({ length: 300 }, (_, i) => ({ type: 'put' as const, key: b(`k${String(i).padStart(4, '0')}`), value: b(`v${i}`), commitTs: 1n }));
    await store.applyBatch(ops);
    await store.applyBatch(ops.filter((_, i) => i % 3 === 0).map((op) => ({ type: 'delete' as const, key: op.key, commitTs: 2n })));
    const at1 = await store.scanAll({ prefix: b('k') }, 1n);
    expect(at1.length).toBe(300);
    const at2 = await store.scanAll({ prefix: b('k') }, 2n);
    expect(at2.length).toBe(200);
    expect(at2[0]!.key.toString()).toBe('k0001');
  });

  it('multi-gets in one call', async () => {
    await store.put(b('x'), b('1'), 1n);
    await store.put(b('y'), b('2'), 2n);
    const values = await store.getMany([b('x'), b('nope'), b('y')], 1n);
    expect(values.map(text)).toEqual(['1', undefined, undefined]);
  });

  it('applies a batch atomically with its applied index', async () => {
    expect(await store.appliedIndex()).toBe(0n);
    await store.applyBatch(
      [
        { type: 'put', key: b('a'), value: b('1'), commitTs: 7n },
        { type: 'delete', key: b('b'), commitTs: 7n },
        { type: 'putInternal', key: writerRegistryKey(1, 2), value: b('row') },
      ],
      { appliedIndex: 42n },
    );
    expect(await store.appliedIndex()).toBe(42n);
    // A batch with one bad op writes nothing at all.
    const bad = store.applyBatch(
      [
        { type: 'put', key: b('c'), value: b('3'), commitTs: 8n },
        { type: 'put', key: b('!encryption|writers|x'), value: b('no'), commitTs: 8n },
      ],
      { appliedIndex: 43n },
    );
    await expect(bad).rejects.toSatisfy((err) => isSealError(err, 'ErrReservedKey'));
    expect(await store.get(b('c'), 100n)).toBeUndefined();
    expect(await store.appliedIndex()).toBe(42n);
  });

  it('applies batches in call order when the caller does not wait between them', async () => {
    const pending = Array.from({ length: 50 }, (_, i) =>
      store.applyBatch([{ type: 'put', key: b('k'), value: b(`v${i}`), commitTs: BigInt(i + 1) }], { appliedIndex: BigInt(i + 1) }),
    );
    await Promise.all(pending);
    expect(await store.appliedIndex()).toBe(50n);
    expect(text(await store.get(b('k'), 1000n))).toBe('v49');
    expect(text(await store.get(b('k'), 10n))).toBe('v9');
  });

  it('rejects user keys under !encryption| for writes and reads', async () => {
    const key = b('!encryption|rewrite|cursor|5');
    await expect(store.put(key, b('v'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrReservedKey'));
    await expect(store.get(key, 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrReservedKey'));
    await expect(store.delete(key, 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrReservedKey'));
    // A prefix of the reserved prefix is an ordinary key.
    await store.put(b('!encryption'), b('fine'), 1n);
    expect(text(await store.get(b('!encryption'), 1n))).toBe('fine');
  });

  it('keeps internal rows outside the MVCC space', async () => {
    await store.applyBatch([
      { type: 'putInternal', key: writerRegistryKey(305419896, 7), value: b('{"epoch":1}') },
      { type: 'putInternal', key: writerRegistryKey(305419896, 8), value: b('{"epoch":2}') },
      { type: 'putInternal', key: rewriteCursorKey(305419896), value: b('cursor') },
    ]);
    expect((await store.getInternal(rewriteCursorKey(305419896)))?.toString()).toBe('cursor');
    const writers = await store.scanInternal(b('!encryption|writers|305419896|'));
    expect(writers.map((r) => r.key.toString())).toEqual(['!encryption|writers|305419896|7', '!encryption|writers|305419896|8']);
    expect(await store.scanAll({}, 100n)).toEqual([]);
    await store.applyBatch([{ type: 'deleteInternal', key: rewriteCursorKey(305419896) }]);
    expect(await store.getInternal(rewriteCursorKey(305419896))).toBeUndefined();
    await expect(store.getInternal(b('not-internal'))).rejects.toThrow(RangeError);
  });

  it('rewrites a version in place without making it the newest, only while it is unchanged', async () => {
    await store.put(b('k'), b('old'), 1n);
    await store.put(b('k'), b('new'), 2n);
    await store.put(b('gone'), b('g1'), 1n);
    await store.put(b('gone'), b('g2'), 2n);
    const versions = [];
    for await (const v of store.versions()) versions.push(v);
    expect(versions.map((v) => `${v.key}@${v.commitTs}`)).toEqual(['gone@2', 'gone@1', 'k@2', 'k@1']);
    const resumed = [];
    for await (const v of store.versions({ after: encodeStoreKey(b('gone'), 1n) })) resumed.push(`${v.key}@${v.commitTs}`);
    expect(resumed).toEqual(['k@2', 'k@1']);
    expect(store.openVersions(versions).map((v) => v?.toString())).toEqual(['g2', 'g1', 'new', 'old']);
    const kOld = versions[3]!;
    const goneOld = versions[1]!;
    // GC removes gone@1 after the sweep read it: the sweep must not bring it back.
    await store.gc(2n);
    const result = await store.applyBatch([
      { type: 'rewrite', key: b('k'), value: b('OLD'), commitTs: 1n, ifRow: kOld.row },
      { type: 'rewrite', key: b('gone'), value: b('G1'), commitTs: 1n, ifRow: goneOld.row },
    ]);
    expect(result.rewritesSkipped).toBe(2);
    expect(await store.get(b('gone'), 1n)).toBeUndefined();
    // Unchanged versions are rewritten.
    await store.put(b('k2'), b('old'), 1n);
    await store.put(b('k2'), b('new'), 2n);
    const [, k2Old] = await (async () => {
      const out = [];
      for await (const v of store.versions()) if (v.key.toString() === 'k2') out.push(v);
      return out;
    })();
    expect((await store.applyBatch([{ type: 'rewrite', key: b('k2'), value: b('OLD'), commitTs: 1n, ifRow: k2Old!.row }])).rewritesSkipped).toBe(0);
    expect(text(await store.get(b('k2'), 1n))).toBe('OLD');
    expect(text(await store.get(b('k2'), 2n))).toBe('new');
    // A tombstone is never rewritten into a value.
    await store.delete(b('k2'), 3n);
    const [tomb] = await (async () => {
      const out = [];
      for await (const v of store.versions()) if (v.key.toString() === 'k2' && v.header.tombstone) out.push(v);
      return out;
    })();
    await expect(store.applyBatch([{ type: 'rewrite', key: b('k2'), value: b('back'), commitTs: 3n, ifRow: tomb!.row }])).rejects.toThrow(RangeError);
  });

  it('garbage-collects below minRetainedTS, keeping the newest version at or below it', async () => {
    for (let ts = 1n; ts <= 5n; ts++) await store.put(b('k'), b(`v${ts}`), ts);
    await store.put(b('other'), b('o1'), 1n);
    const { removed } = await store.gc(3n);
    expect(removed).toBe(2);
    expect(text(await store.get(b('k'), 3n))).toBe('v3');
    expect(text(await store.get(b('k'), 4n))).toBe('v4');
    expect(await store.get(b('k'), 2n)).toBeUndefined();
    expect(text(await store.get(b('other'), 10n))).toBe('o1');
  });

  it('reports damaged rows as ErrStoreCorrupt, not as missing', async () => {
    await store.put(b('k'), b('v'), 1n);
    await opened.engine.write([{ type: 'put', key: versionRowKey(b('k'), 1n), value: Buffer.from([0, 1, 2]) }]);
    await expect(store.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrStoreCorrupt'));
    await opened.engine.write([{ type: 'put', key: headRowKey(b('k')), value: Buffer.from([1]) }]);
    await expect(store.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrStoreCorrupt'));
  });

  it('refuses calls after close with ErrStoreClosed', async () => {
    await store.close();
    await expect(store.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrStoreClosed'));
    await expect(store.put(b('k'), b('v'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrStoreClosed'));
  });
});
