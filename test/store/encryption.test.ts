// The storage envelope through the store (SPEC §3.1, §3.4, §5.2, §5.3), on
// every engine: round trips, compression, location and header binding
// (tampering with raw engine writes), mixed and rotated versions, typed
// errors, and one backend call per batch.

import crypto from 'node:crypto';
import snappy from 'snappy';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AesniBackend, FLAG_COMPRESSED, Keystore, parseEnvelope, type CryptoBackend } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { Store, decodeValue, headRowKey, versionRowKey } from '../../src/store/index.js';
import { STORAGE_KEY_ID, fixtureKeystore, fixtureSealer } from '../support/crypto-fixtures.js';
import { storeEngines, type OpenedEngine } from '../support/store-engines.js';

const b = (s: string): Buffer => Buffer.from(s);
const json = (i: number): Buffer => b(JSON.stringify({ id: i, name: `user-${i}`, email: `user${i}@example.com`, tags: ['alpha', 'beta', 'gamma'], active: true, score: i * 3 }).repeat(4));

/** Counts backend calls, to check batching. */
function countingBackend(): { backend: CryptoBackend; calls: { seal: number; open: number } } {
  const inner = new AesniBackend();
  const calls = { seal: 0, open: 0 };
  const backend: CryptoBackend = {
    name: inner.name,
    aeadSeal: (...a) => inner.aeadSeal(...a),
    aeadOpen: (...a) => inner.aeadOpen(...a),
    sealBatch: (...a) => (calls.seal++, inner.sealBatch(...a)),
    openBatch: (...a) => (calls.open++, inner.openBatch(...a)),
  };
  return { backend, calls };
}

describe.each(storeEngines)('encrypted store on $name', ({ open }) => {
  let opened: OpenedEngine;
  let store: Store;
  let keystore: Keystore;
  let calls: { seal: number; open: number };

  beforeEach(async () => {
    opened = await open();
    keystore = fixtureKeystore();
    const counting = countingBackend();
    calls = counting.calls;
    store = new Store(opened.engine, { sealer: fixtureSealer(counting.backend, keystore), active: true });
  });
  afterEach(async () => {
    await store.close();
    await opened.cleanup();
  });

  async function rawRow(key: string, ts: bigint): Promise<Buffer> {
    const [row] = await opened.engine.getMany([versionRowKey(b(key), ts)]);
    expect(row).not.toBeNull();
    return row!;
  }

  it('seals on write and opens on read; the disk holds no plaintext', async () => {
    const value = crypto.randomBytes(1000);
    await store.put(b('secret'), value, 5n);
    const row = await rawRow('secret', 5n);
    const { header, body } = decodeValue(row);
    expect(header.encryptionState).toBe(1);
    expect(parseEnvelope(body, 'storage').keyId).toBe(STORAGE_KEY_ID);
    expect(row.includes(value.subarray(0, 32))).toBe(false);
    expect((await store.get(b('secret'), 5n))?.value).toEqual(value);
  });

  it('compresses compressible values before sealing, only when smaller, and can be switched off', async () => {
    await store.put(b('json'), json(1), 1n);
    await store.put(b('random'), crypto.randomBytes(500), 1n);
    const jsonEnv = parseEnvelope(decodeValue(await rawRow('json', 1n)).body, 'storage');
    const randEnv = parseEnvelope(decodeValue(await rawRow('random', 1n)).body, 'storage');
    expect(jsonEnv.flag & FLAG_COMPRESSED).toBe(FLAG_COMPRESSED);
    expect(jsonEnv.body.length).toBeLessThan(json(1).length);
    expect(randEnv.flag).toBe(0);
    store.setCompression(false);
    await store.put(b('json'), json(1), 2n);
    expect(parseEnvelope(decodeValue(await rawRow('json', 2n)).body, 'storage').flag).toBe(0);
    // Reads honour each value's own flag whatever the setting.
    expect((await store.get(b('json'), 1n))?.value).toEqual(json(1));
    expect((await store.get(b('json'), 2n))?.value).toEqual(json(1));
  });

  it('writes what the reference snappy package decodes', async () => {
    await store.put(b('json'), json(7), 1n);
    const { header, headerBytes, body } = decodeValue(await rawRow('json', 1n));
    expect(header.encryptionState).toBe(1);
    const sealer = fixtureSealer(new AesniBackend(), keystore);
    const opened1 = sealer.openOne(body, { kind: 'storage', valueHeader: headerBytes, storeKey: versionRowKey(b('json'), 1n).subarray(1) });
    expect(opened1.flag).toBe(FLAG_COMPRESSED);
    expect(snappy.uncompressSync(opened1.plaintext, { asBuffer: true })).toEqual(json(7));
  });

  it('reads a cleartext value whose body starts with 0x01 as cleartext', async () => {
    const looksSealed = Buffer.concat([Buffer.from([0x01, 0x00]), crypto.randomBytes(40)]);
    const clear = new Store(opened.engine, { sealer: fixtureSealer(new AesniBackend(), keystore), active: false });
    await clear.put(b('k'), looksSealed, 1n);
    expect(decodeValue(await rawRow('k', 1n)).header.encryptionState).toBe(0);
    expect((await store.get(b('k'), 1n))?.value).toEqual(looksSealed);
  });

  it('fails with ErrEncryptedReadIntegrity when a ciphertext moves to another key or version', async () => {
    await store.put(b('alice'), b('alice-secret'), 10n);
    const row = await rawRow('alice', 10n);
    // Another key, same version.
    await opened.engine.write([
      { type: 'put', key: versionRowKey(b('bob'), 10n), value: row },
      { type: 'put', key: headRowKey(b('bob')), value: Buffer.from('000000000000000a', 'hex') },
    ]);
    await expect(store.get(b('bob'), 10n)).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
    // Same key, another version.
    await opened.engine.write([
      { type: 'put', key: versionRowKey(b('alice'), 11n), value: row },
      { type: 'put', key: headRowKey(b('alice')), value: Buffer.from('000000000000000b', 'hex') },
    ]);
    await expect(store.get(b('alice'), 11n)).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
    // Scans fail the same way: never "not found".
    await expect(store.scanAll({}, 20n)).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
    expect((await store.get(b('alice'), 10n))?.value.toString()).toBe('alice-secret');
  });

  it('fails when the tombstone bit, the expiry or the compression flag of an encrypted value is flipped', async () => {
    await store.put(b('k'), json(3), 1n, { expireAt: 5000n });
    const row = await rawRow('k', 1n);
    const cases: [string, (r: Buffer) => void][] = [
      ['tombstone bit set', (r) => (r[0]! |= 0x01)],
      ['expiry moved later', (r) => r.writeBigUInt64LE(1n << 62n, 1)],
      ['expiry moved into the past', (r) => r.writeBigUInt64LE(1n, 1)],
      ['expiry removed', (r) => r.writeBigUInt64LE(0n, 1)],
      ['compression flag flipped', (r) => (r[9 + 1]! ^= FLAG_COMPRESSED)],
      ['tag byte flipped', (r) => (r[r.length - 1]! ^= 0x01)],
    ];
    for (const [label, mutate] of cases) {
      const copy = Buffer.from(row);
      mutate(copy);
      await opened.engine.write([{ type: 'put', key: versionRowKey(b('k'), 1n), value: copy }]);
      await expect(store.get(b('k'), 1n, { now: 1000n }), label).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
      await expect(store.scanAll({}, 1n, { now: 1000n }), label).rejects.toSatisfy((err) => isSealError(err, 'ErrEncryptedReadIntegrity'));
    }
    await opened.engine.write([{ type: 'put', key: versionRowKey(b('k'), 1n), value: row }]);
    expect((await store.get(b('k'), 1n, { now: 1000n }))?.value).toEqual(json(3));
    expect(await store.get(b('k'), 1n, { now: 5000n })).toBeUndefined();
  });

  it('reports an unknown key_id and reserved encryption states with their codes', async () => {
    const failures: string[] = [];
    store.setEncryption({ sealer: fixtureSealer(new AesniBackend(), keystore), active: true, onOpenFailure: (err) => failures.push(err.code) });
    await store.put(b('k'), b('value'), 1n);
    const row = await rawRow('k', 1n);
    const unknown = Buffer.from(row);
    unknown.writeUInt32BE(0x0badf00d, 9 + 2);
    await opened.engine.write([{ type: 'put', key: versionRowKey(b('k'), 1n), value: unknown }]);
    await expect(store.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrUnknownKeyId'));
    expect(failures).toEqual(['ErrUnknownKeyId']);
    for (const flags of [0x04, 0x06, 0x08, 0x80]) {
      const reserved = Buffer.from(row);
      reserved[0] = flags;
      await opened.engine.write([{ type: 'put', key: versionRowKey(b('k'), 1n), value: reserved }]);
      await expect(store.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrReservedEncryptionState'));
    }
  });

  it('reads mixed cleartext and encrypted versions of one key', async () => {
    const sealer = fixtureSealer(new AesniBackend(), keystore);
    store.setEncryption({ sealer, active: false });
    await store.put(b('k'), b('clear-1'), 1n);
    store.setEncryption({ sealer, active: true });
    await store.put(b('k'), b('sealed-2'), 2n);
    store.setEncryption({ sealer, active: false });
    await store.put(b('k'), b('clear-3'), 3n);
    expect((await store.get(b('k'), 1n))?.value.toString()).toBe('clear-1');
    expect((await store.get(b('k'), 2n))?.value.toString()).toBe('sealed-2');
    expect((await store.get(b('k'), 3n))?.value.toString()).toBe('clear-3');
    expect(decodeValue(await rawRow('k', 2n)).header.encryptionState).toBe(1);
  });

  it('reads values sealed under two DEKs after a rotation mid-stream', async () => {
    const ops = (from: number): { type: 'put'; key: Buffer; value: Buffer; commitTs: bigint }[] =>
      Array.from({ length: 20 }, (_, i) => ({ type: 'put', key: b(`k${String(from + i).padStart(3, '0')}`), value: json(from + i), commitTs: BigInt(from + 1) }));
    await store.applyBatch(ops(0));
    keystore.install(0x0c0ffee0, 'storage', crypto.randomBytes(32));
    keystore.setActive('storage', 0x0c0ffee0);
    await store.applyBatch(ops(20));
    const all = await store.scanAll({ prefix: b('k') }, 100n);
    expect(all.length).toBe(40);
    all.forEach((e, i) => expect(e.value).toEqual(json(i)));
    const keyIds = new Set<number>();
    for await (const v of store.versions()) keyIds.add(v.keyId);
    expect([...keyIds].sort()).toEqual([STORAGE_KEY_ID, 0x0c0ffee0].sort());
  });

  it('re-seals old-DEK versions under the active DEK in place (the rewrite sweep path)', async () => {
    await store.put(b('k'), json(1), 1n, { expireAt: 9_999_999_999_999n });
    await store.delete(b('k'), 2n);
    await store.put(b('j'), json(2), 1n);
    keystore.install(0x0c0ffee0, 'storage', crypto.randomBytes(32));
    keystore.setActive('storage', 0x0c0ffee0);
    const old = [];
    for await (const v of store.versions()) if (v.keyId === STORAGE_KEY_ID) old.push(v);
    expect(old.length).toBe(2);
    const plain = store.openVersions(old);
    const result = await store.applyBatch(
      old.map((v, i) => ({ type: 'rewrite' as const, key: v.key, value: plain[i]!, commitTs: v.commitTs, ifRow: v.row })),
      { appliedIndex: 5n },
    );
    expect(result.rewritesSkipped).toBe(0);
    const keyIds = [];
    for await (const v of store.versions()) keyIds.push(v.keyId);
    // The tombstone stays cleartext (key_id 0); every value is under the new DEK.
    expect(keyIds.sort()).toEqual([0, 0x0c0ffee0, 0x0c0ffee0].sort());
    expect((await store.get(b('k'), 1n))?.value).toEqual(json(1));
    expect((await store.get(b('k'), 1n))?.expireAt).toBe(9_999_999_999_999n);
    expect(await store.get(b('k'), 2n)).toBeUndefined();
    expect((await store.get(b('j'), 5n))?.value).toEqual(json(2));
  });

  it('seals a whole batch in one backend call and opens a scan page or a multi-get in one', async () => {
    const ops = Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: b(`k${String(i).padStart(2, '0')}`), value: json(i), commitTs: 1n }));
    await store.applyBatch(ops);
    expect(calls.seal).toBe(1);
    expect((await store.scanAll({ prefix: b('k') }, 1n)).length).toBe(50);
    expect(calls.open).toBe(1);
    expect((await store.getMany(ops.slice(0, 10).map((op) => op.key), 1n)).every((e) => e !== undefined)).toBe(true);
    expect(calls.open).toBe(2);
  });

  it('reports ErrUnknownKeyId for an encrypted value when no keystore is loaded', async () => {
    await store.put(b('k'), b('v'), 1n);
    const bare = new Store(opened.engine);
    await expect(bare.get(b('k'), 1n)).rejects.toSatisfy((err) => isSealError(err, 'ErrUnknownKeyId'));
  });
});
