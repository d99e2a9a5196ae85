// Snapshot streams (SPEC §5.4) on every engine: round trips with v1, v2 and
// legacy headers, unknown header versions, corruption of every kind, and a
// restore that fails leaving the store empty. The memory bound is measured
// on RocksDB with SEALKV_SNAPSHOT_SOAK_MB of state (default small; the
// README reports a 1 GiB run).

import crypto from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AesniBackend } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { RocksEngine, SNAPSHOT_MAGIC_V1, Store, encodeSnapshotHeader, type Engine } from '../../src/store/index.js';
import { fixtureKeystore, fixtureSealer } from '../support/crypto-fixtures.js';
import { storeEngines, tempDir, type OpenedEngine } from '../support/store-engines.js';
import fs from 'node:fs';

const b = (s: string): Buffer => Buffer.from(s);

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* chunked(bytes: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function rawRows(engine: Engine): Promise<string[]> {
  const out: string[] = [];
  for await (const { key, value } of engine.iterate({ gte: Buffer.from([0]), lt: Buffer.from([0xff]) })) out.push(`${key.toString('hex')}=${value.toString('hex')}`);
  return out;
}

describe.each(storeEngines)('snapshots on $name', ({ open }) => {
  let source: OpenedEngine;
  let target: OpenedEngine;
  let store: Store;
  let restored: Store;
  const keystore = fixtureKeystore();

  beforeEach(async () => {
    source = await open();
    target = await open();
    store = new Store(source.engine, { sealer: fixtureSealer(new AesniBackend(), keystore), active: true });
    restored = new Store(target.engine, { sealer: fixtureSealer(new AesniBackend(), keystore), active: false });
    const ops = Array.from({ length: 500 }, (_, i) => ({ type: 'put' as const, key: b(`key-${i}`), value: crypto.randomBytes(i % 7 === 0 ? 3000 : 100), commitTs: BigInt(1 + (i % 5)) }));
    await store.applyBatch(ops, { appliedIndex: 77n });
    await store.delete(b('key-3'), 9n);
    await store.applyBatch([{ type: 'putInternal', key: b('!encryption|writers|1|2'), value: b('row') }]);
  });
  afterEach(async () => {
    await store.close();
    await restored.close();
    await source.cleanup();
    await target.cleanup();
  });

  it.each([
    { name: 'v1', header: { version: 1 as const, ceiling: 123n } },
    { name: 'v2', header: { version: 2 as const, ceiling: 456n, cutover: 789n } },
    { name: 'legacy', header: null },
  ])('round-trips every raw row with a $name header', async ({ header }) => {
    const bytes = await collect(store.snapshotStream(header));
    const info = await restored.restoreSnapshot(chunked(bytes, 777));
    expect(info.version).toBe(header?.version ?? 0);
    if (header !== null) expect(info.ceiling).toBe(header.ceiling);
    if (header?.version === 2) expect(info.cutover).toBe(789n);
    expect(await rawRows(target.engine)).toEqual(await rawRows(source.engine));
    expect(await restored.appliedIndex()).toBe(77n);
    expect((await restored.getInternal(b('!encryption|writers|1|2')))?.toString()).toBe('row');
    // Ciphertext stayed ciphertext, and opens in its new home.
    const a = await store.scanAll({}, 100n);
    expect(await restored.scanAll({}, 100n)).toEqual(a);
    expect(a.length).toBe(499);
  });

  it('skips v2 header fields it does not know', async () => {
    const bytes = await collect(store.snapshotStream({ version: 2, ceiling: 1n, cutover: 2n }));
    const body = bytes.subarray(26);
    // A future v2 header with 4 more bytes; the checksum covers the header.
    const header = Buffer.concat([encodeSnapshotHeader({ version: 2, ceiling: 1n, cutover: 2n }), b('more')]);
    header.writeUInt16BE(20, 8);
    const withoutDigest = Buffer.concat([header, body.subarray(0, body.length - 32)]);
    const forged = Buffer.concat([withoutDigest, crypto.createHash('sha256').update(withoutDigest).digest()]);
    const info = await restored.restoreSnapshot(chunked(forged));
    expect(info).toMatchObject({ version: 2, ceiling: 1n, cutover: 2n });
  });

  it('refuses an unknown EKVTHLC header version', async () => {
    const bytes = await collect(store.snapshotStream({ version: 1, ceiling: 1n }));
    for (const last of ['0', '3', 'X']) {
      const copy = Buffer.from(bytes);
      copy.write(last, 7);
      await expect(restored.restoreSnapshot(chunked(copy))).rejects.toSatisfy((err) => isSealError(err, 'ErrSnapshotHeaderVersion'));
    }
    expect(await rawRows(target.engine)).toEqual([]);
  });

  it('refuses corrupt streams and leaves the store empty', async () => {
    const bytes = await collect(store.snapshotStream({ version: 1, ceiling: 1n }));
    expect(bytes.subarray(0, 8)).toEqual(SNAPSHOT_MAGIC_V1);
    const flip = (at: number): Buffer => {
      const copy = Buffer.from(bytes);
      copy[at]! ^= 0x01;
      return copy;
    };
    const cases: [string, Buffer][] = [
      ['byte flipped in a value', flip(Math.floor(bytes.length / 2))],
      ['byte flipped in the ceiling', flip(12)],
      ['byte flipped in the digest', flip(bytes.length - 1)],
      ['truncated mid-stream', bytes.subarray(0, Math.floor(bytes.length * 0.7))],
      ['truncated before the digest', bytes.subarray(0, bytes.length - 5)],
      ['bytes after the trailer', Buffer.concat([bytes, b('x')])],
      ['a legacy stream of garbage', crypto.randomBytes(5000)],
    ];
    for (const [label, corrupt] of cases) {
      await expect(restored.restoreSnapshot(chunked(corrupt, 4096)), label).rejects.toSatisfy((err) => isSealError(err, 'ErrSnapshotCorrupt'));
      expect(await rawRows(target.engine), label).toEqual([]);
    }
    // And the same store then takes a good stream.
    await restored.restoreSnapshot(chunked(bytes));
    expect((await restored.scanAll({}, 100n)).length).toBe(499);
  });

  it('restores only into an empty store (clear() empties one)', async () => {
    const bytes = await collect(store.snapshotStream({ version: 1, ceiling: 1n }));
    await expect(store.restoreSnapshot(chunked(bytes))).rejects.toThrow(RangeError);
    await store.clear();
    expect(await rawRows(source.engine)).toEqual([]);
    await store.restoreSnapshot(chunked(bytes));
    expect((await store.scanAll({}, 100n)).length).toBe(499);
  });
});

describe('snapshot memory bound on rocksdb', () => {
  const megabytes = Number(process.env.SEALKV_SNAPSHOT_SOAK_MB ?? 64);

  it(`streams ${megabytes} MiB of state with RSS growth under 128 MiB`, async () => {
    const dir = tempDir('sealkv-snap-soak-');
    const engine = await RocksEngine.open(dir);
    const store = new Store(engine);
    try {
      const value = crypto.randomBytes(16 * 1024);
      const perBatch = 64;
      const batches = Math.ceil((megabytes * 1024 * 1024) / (value.length * perBatch));
      for (let i = 0; i < batches; i++) {
        await store.applyBatch(Array.from({ length: perBatch }, (_, j) => ({ type: 'put' as const, key: b(`k${i}-${j}`), value, commitTs: 1n })));
      }
      await engine.compact();
      global.gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      let bytes = 0;
      for await (const chunk of store.snapshotStream({ version: 1, ceiling: 1n })) {
        bytes += chunk.length;
        peak = Math.max(peak, process.memoryUsage().rss);
      }
      const growth = (peak - before) / 2 ** 20;
      console.log(`snapshot of ${(bytes / 2 ** 20).toFixed(0)} MiB streamed; RSS growth ${growth.toFixed(1)} MiB`);
      expect(bytes).toBeGreaterThan(megabytes * 1024 * 1024);
      expect(growth).toBeLessThan(128);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
