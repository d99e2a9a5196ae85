// Differential tests across backends (SPEC §3.5: identical bytes for
// identical key, nonce, AAD and plaintext). For random keys, nonces, AADs
// and plaintexts of 0..64 KiB, every backend seals to the bytes of `aesni`
// and of @noble/ciphers (an independent oracle), opens every other backend's
// output, and in batch mode marks only a tampered value as failed.

import crypto from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FLAG_COMPRESSED, Keystore, RAFT_AAD, type AadContext, type CryptoBackend, type NonceRange, type OpenItem, type SealItem } from '../../src/crypto/index.js';
import { backends } from '../support/backends.js';
import { fill, valueHeader } from '../support/crypto-fixtures.js';

const KiB = 1024;
const live = backends.map(({ name, make }) => ({ name, backend: make() }));
afterAll(() => live.forEach(({ backend }) => backend.close?.()));

// Sizes around block and pass boundaries, and up to 64 KiB.
const size = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 * KiB }) },
  { weight: 1, arbitrary: fc.integer({ min: 60 * KiB, max: 64 * KiB }) },
);
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('backends agree byte for byte', () => {
  it('aeadSeal gives the bytes of aesni and noble; every backend opens every other backend’s output', () => {
    fc.assert(
      fc.property(bytes(32), bytes(12), fc.uint8Array({ maxLength: 80 }), size, fc.integer(), (key, nonce, aad, len, seed) => {
        const plaintext = fill(len, seed);
        const expected = hex(gcm(key, nonce, aad).encrypt(plaintext));
        const sealed = live.map(({ name, backend }) => ({ name, sealed: backend.aeadSeal(key, nonce, aad, plaintext) }));
        for (const s of sealed) expect({ backend: s.name, sealed: hex(s.sealed) }).toEqual({ backend: s.name, sealed: expected });
        for (const s of sealed) {
          for (const { name, backend } of live) {
            expect({ sealedBy: s.name, openedBy: name, ok: Buffer.from(backend.aeadOpen(key, nonce, aad, s.sealed)).equals(plaintext) }).toEqual({ sealedBy: s.name, openedBy: name, ok: true });
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('sealBatch gives identical envelopes and openBatch opens them in every backend', () => {
    fc.assert(
      fc.property(
        bytes(32),
        bytes(4),
        fc.bigInt({ min: 0n, max: 2n ** 63n }),
        fc.array(fc.record({ len: size, seed: fc.integer(), compressed: fc.boolean(), storeKey: fc.uint8Array({ maxLength: 100 }), expireAt: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (key, prefix, start, specs, raft) => {
          const keystore = new Keystore();
          keystore.install(7, raft ? 'raft' : 'storage', key);
          const dek = keystore.get(7)!;
          const nonces: NonceRange = { prefix, start, count: specs.length };
          const items: SealItem[] = specs.map((s) => ({
            plaintext: fill(s.len, s.seed),
            flag: !raft && s.compressed ? FLAG_COMPRESSED : 0,
            aad: raft ? RAFT_AAD : { kind: 'storage', valueHeader: valueHeader(0b010, s.expireAt), storeKey: s.storeKey },
          }));
          const sealed = live.map(({ name, backend }) => ({ name, envelopes: backend.sealBatch(dek, nonces, items).map(hex) }));
          for (const s of sealed) expect({ backend: s.name, envelopes: s.envelopes }).toEqual({ backend: s.name, envelopes: sealed[0]!.envelopes });
          const openItems: OpenItem[] = sealed[0]!.envelopes.map((e, i) => ({ envelope: Buffer.from(e, 'hex'), aad: items[i]!.aad }));
          for (const { name, backend } of live) {
            const results = backend.openBatch(keystore, openItems);
            results.forEach((r, i) => {
              expect({ backend: name, i, ok: r.ok && Buffer.from(r.plaintext).equals(items[i]!.plaintext) && r.flag === items[i]!.flag && r.keyId === 7 }).toEqual({ backend: name, i, ok: true });
            });
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe.each(backends)('$name backend: batch failures mark only their own value', ({ make }) => {
  const backend = make();
  afterAll(() => backend.close?.());

  it('a tampered byte anywhere in one envelope fails only that value, with ErrEncryptedReadIntegrity', () => {
    const keystore = new Keystore();
    keystore.install(1, 'storage', crypto.randomBytes(32));
    const dek = keystore.get(1)!;
    const aad = (i: number): AadContext => ({ kind: 'storage', valueHeader: valueHeader(0, BigInt(i)), storeKey: Buffer.from(`k${i}`) });
    const items: SealItem[] = Array.from({ length: 24 }, (_, i) => ({ plaintext: fill(i * 97, i + 1), flag: 0, aad: aad(i) }));
    const envelopes = backend.sealBatch(dek, { prefix: new Uint8Array(4), start: 0n, count: items.length }, items);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: items.length - 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (victim, at, mask) => {
        const copies = envelopes.map((e) => Uint8Array.from(e));
        const target = copies[victim]!;
        // Bytes 0..5 (version, flag, key_id) have errors of their own, tested below; the rest must fail authentication.
        const pos = 6 + (at % (target.length - 6));
        target[pos]! ^= mask;
        const results = backend.openBatch(
          keystore,
          copies.map((envelope, i) => ({ envelope, aad: aad(i) })),
        );
        results.forEach((r, i) => {
          if (i === victim) expect(!r.ok && r.error.code).toBe('ErrEncryptedReadIntegrity');
          else expect(r.ok && Buffer.from(r.plaintext).equals(items[i]!.plaintext)).toBe(true);
        });
      }),
      { numRuns: 60 },
    );
  });

  it('reports framing, key and purpose failures with the typed error of each value', () => {
    const keystore = new Keystore();
    keystore.install(1, 'storage', crypto.randomBytes(32));
    keystore.install(2, 'raft', crypto.randomBytes(32));
    const storage: AadContext = { kind: 'storage', valueHeader: valueHeader(0), storeKey: Buffer.from('key') };
    const sealed = backend.sealBatch(keystore.get(1)!, { prefix: new Uint8Array(4), start: 5n, count: 7 }, Array.from({ length: 7 }, () => ({ plaintext: Buffer.from('value'), flag: 0, aad: storage })));
    const e = sealed.map((s) => Uint8Array.from(s));
    e[1] = e[1]!.subarray(0, 33);
    e[2]![0] = 0x02;
    e[3]![1] = 0x02;
    e[4]!.set([0, 0, 0, 9], 2);
    e[5]!.set([0, 0, 0, 2], 2);
    const results = backend.openBatch(keystore, e.map((envelope) => ({ envelope, aad: storage })));
    expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual([
      'ok',
      'ErrEnvelopeShort',
      'ErrEnvelopeVersion',
      'ErrEnvelopeFlag',
      'ErrUnknownKeyId',
      'ErrEncryptedReadIntegrity',
      'ok',
    ]);
  });

  it('opens a batch sealed under more DEKs than the core has key slots, and values larger than a chunk', () => {
    const keystore = new Keystore();
    const envelopes: OpenItem[] = [];
    const plaintexts: Uint8Array[] = [];
    for (let k = 1; k <= 40; k++) {
      keystore.install(k, 'raft', crypto.randomBytes(32));
      const plaintext = fill(k * 31, k);
      plaintexts.push(plaintext);
      const [envelope] = backend.sealBatch(keystore.get(k)!, { prefix: new Uint8Array(4), start: 0n, count: 1 }, [{ plaintext, flag: 0, aad: RAFT_AAD }]);
      envelopes.push({ envelope: envelope!, aad: RAFT_AAD });
    }
    const big = [fill(5 << 20, 3), fill(4 << 20, 4), fill(0, 5)];
    const bigSealed = backend.sealBatch(keystore.get(40)!, { prefix: new Uint8Array(4), start: 100n, count: big.length }, big.map((plaintext) => ({ plaintext, flag: 0, aad: RAFT_AAD })));
    const results = backend.openBatch(keystore, [...envelopes, ...bigSealed.map((envelope) => ({ envelope, aad: RAFT_AAD }))]);
    [...plaintexts, ...big].forEach((p, i) => expect(results[i]!.ok && Buffer.from(results[i]!.plaintext).equals(p)).toBe(true));
  });
});
