// Raw Snappy (SPEC §3.4) against the golden pairs of ../shared/vectors/snappy
// (golang/snappy testdata; sources in that folder's README). Encoders may
// emit different valid bytes, so the vectors test decoding, and what the
// project compresses is checked by decoding it with the reference package.

import fs from 'node:fs';
import path from 'node:path';
import snappy from 'snappy';
import { describe, expect, it } from 'vitest';
import { AesniBackend, FLAG_COMPRESSED } from '../../src/crypto/index.js';
import { MemoryEngine, Store, encodeValueHeader, headRowKey, versionRowKey } from '../../src/store/index.js';
import { fixtureKeystore, fixtureSealer } from '../support/crypto-fixtures.js';
import { vectorsDir } from '../support/vectors.js';

const PAIRS = ['Isaac.Newton-Opticks.txt', 'pi.txt'];

function pair(name: string): { text: Buffer; raw: Buffer } {
  const dir = path.join(vectorsDir(), 'snappy');
  return { text: fs.readFileSync(path.join(dir, name)), raw: fs.readFileSync(path.join(dir, `${name}.rawsnappy`)) };
}

describe('raw snappy vectors', () => {
  it.each(PAIRS)('golang/snappy testdata/%s.rawsnappy decodes byte-identically', (name) => {
    const { text, raw } = pair(name);
    expect(snappy.uncompressSync(raw, { asBuffer: true })).toEqual(text);
  });

  it.each(PAIRS)('the project compresses testdata/%s to raw snappy the reference decodes', (name) => {
    const { text } = pair(name);
    const ours = snappy.compressSync(text);
    // Raw block format: starts with the varint of the uncompressed length.
    let length = 0;
    let shift = 0;
    let i = 0;
    for (; ours[i]! & 0x80; i++, shift += 7) length += (ours[i]! & 0x7f) * 2 ** shift;
    length += ours[i]! * 2 ** shift;
    expect(length).toBe(text.length);
    expect(snappy.uncompressSync(ours, { asBuffer: true })).toEqual(text);
  });

  it.each(PAIRS)('the store opens a value sealed over the golden testdata/%s.rawsnappy', async (name) => {
    const { text, raw } = pair(name);
    const sealer = fixtureSealer(new AesniBackend(), fixtureKeystore());
    const engine = new MemoryEngine();
    const store = new Store(engine, { sealer, active: true });
    const header = encodeValueHeader({ tombstone: false, encryptionState: 1, expireAt: 0n });
    const rowKey = versionRowKey(Buffer.from('doc'), 1n);
    const envelope = sealer.sealOne('storage', raw, FLAG_COMPRESSED, { kind: 'storage', valueHeader: header, storeKey: rowKey.subarray(1) });
    await engine.write([
      { type: 'put', key: rowKey, value: Buffer.concat([header, envelope]) },
      { type: 'put', key: headRowKey(Buffer.from('doc')), value: Buffer.from('0000000000000001', 'hex') },
    ]);
    expect((await store.get(Buffer.from('doc'), 1n))?.value).toEqual(text);
    await store.close();
  });

  it('keeps an incompressible value (pi.txt grows under snappy) uncompressed', async () => {
    const { text } = pair('pi.txt');
    expect(snappy.compressSync(text).length).toBeGreaterThan(text.length);
    const engine = new MemoryEngine();
    const store = new Store(engine, { sealer: fixtureSealer(new AesniBackend(), fixtureKeystore()), active: true });
    await store.put(Buffer.from('pi'), text, 1n);
    const [row] = await engine.getMany([versionRowKey(Buffer.from('pi'), 1n)]);
    expect(row![9 + 1]! & FLAG_COMPRESSED).toBe(0);
    expect((await store.get(Buffer.from('pi'), 1n))?.value).toEqual(text);
    await store.close();
  });
});
