// Envelope layout, AAD binding and tamper detection (SPEC §3.1, §3.2),
// through every backend.

import crypto from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ENVELOPE_OVERHEAD,
  FLAG_COMPRESSED,
  RAFT_AAD,
  buildAad,
  type AadContext,
} from '../../src/crypto/index.js';
import { isSealError, type ErrorCode } from '../../src/errors/index.js';
import { backends } from '../support/backends.js';
import { RAFT_KEY_ID, STORAGE_KEY_ID, fixtureKeystore, fixtureSealer, valueHeader } from '../support/crypto-fixtures.js';

const storeKey = Buffer.concat([Buffer.from('user:42'), Buffer.from('ffffffffffff0000', 'hex')]);
const storageAad = (header = valueHeader(0b010), key: Uint8Array = storeKey): AadContext => ({ kind: 'storage', valueHeader: header, storeKey: key });

/** The error code opening throws, or 'ok'. Anything untyped fails the test. */
function openOutcome(open: () => unknown): ErrorCode | 'ok' {
  try {
    open();
    return 'ok';
  } catch (err) {
    if (isSealError(err)) return err.code;
    throw err;
  }
}

describe.each(backends)('$name backend: envelopes', ({ make }) => {
  const backend = make();

  it('lays out a storage envelope as SPEC §3.1, with the AAD of §3.1', () => {
    const keystore = fixtureKeystore();
    const sealer = fixtureSealer(backend, keystore, 7);
    const plaintext = Buffer.from('the quick brown fox');
    const header = valueHeader(0b010, 1_700_000_000_000n);
    const env = sealer.sealOne('storage', plaintext, FLAG_COMPRESSED, storageAad(header));
    expect(env.length).toBe(plaintext.length + ENVELOPE_OVERHEAD);
    expect(ENVELOPE_OVERHEAD).toBe(34);
    expect(env[0]).toBe(0x01);
    expect(env[1]).toBe(FLAG_COMPRESSED);
    expect(Buffer.from(env.subarray(2, 6)).readUInt32BE()).toBe(STORAGE_KEY_ID);
    // nonce = node_id(0x0a0b) ‖ local_epoch(7) ‖ write_count(0)
    expect(Buffer.from(env.subarray(6, 18)).toString('hex')).toBe('0a0b0007' + '0000000000000000');
    // Independent recomputation with the AAD spelled out byte by byte.
    const aad = Buffer.concat([Buffer.from([0x01, FLAG_COMPRESSED]), Buffer.from('12345678', 'hex'), header, storeKey]);
    const cipher = crypto.createCipheriv('aes-256-gcm', keystore.get(STORAGE_KEY_ID)!.key, env.subarray(6, 18));
    cipher.setAAD(aad);
    const expected = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    expect(Buffer.from(env.subarray(18)).equals(expected)).toBe(true);
  });

  it("lays out a raft envelope with flag 0 and AAD 'R' ‖ version ‖ key_id", () => {
    const keystore = fixtureKeystore();
    const sealer = fixtureSealer(backend, keystore);
    const env = sealer.sealOne('raft', Buffer.from('payload'), 0, RAFT_AAD);
    expect(env[1]).toBe(0);
    expect(Buffer.from(buildAad(RAFT_AAD, 0, RAFT_KEY_ID)).toString('hex')).toBe('52019abcdef0');
    const opened = sealer.openOne(env, RAFT_AAD);
    expect(Buffer.from(opened.plaintext).toString()).toBe('payload');
    expect(opened.keyId).toBe(RAFT_KEY_ID);
  });

  it('detects every single-bit flip of a storage envelope, with the code its field calls for', () => {
    const sealer = fixtureSealer(backend);
    const env = sealer.sealOne('storage', Buffer.from('sixteen byte msg'), 0, storageAad());
    const seen = new Map<string, number>();
    for (let bit = 0; bit < env.length * 8; bit++) {
      const bad = Uint8Array.from(env);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const byte = bit >> 3;
      const expected: ErrorCode =
        byte === 0 ? 'ErrEnvelopeVersion'
        : byte === 1 && (bit & 7) !== 0 ? 'ErrEnvelopeFlag'
        : byte >= 2 && byte < 6 ? 'ErrUnknownKeyId'
        : 'ErrEncryptedReadIntegrity';
      const got = openOutcome(() => sealer.openOne(bad, storageAad()));
      expect(got, `bit ${bit}`).toBe(expected);
      seen.set(got, (seen.get(got) ?? 0) + 1);
    }
    // flag bit 0 (compression), the whole nonce, ciphertext and tag.
    expect(seen.get('ErrEncryptedReadIntegrity')).toBe(1 + (env.length - 6) * 8);
  });

  it('rejects an envelope re-tagged with the key_id of another loaded DEK', () => {
    const keystore = fixtureKeystore();
    keystore.install(0x01020304, 'storage', crypto.randomBytes(32));
    const sealer = fixtureSealer(backend, keystore);
    const env = sealer.sealOne('storage', Buffer.from('value'), 0, storageAad());
    const retagged = Uint8Array.from(env);
    retagged.set([0x01, 0x02, 0x03, 0x04], 2);
    expect(openOutcome(() => sealer.openOne(retagged, storageAad()))).toBe('ErrEncryptedReadIntegrity');
  });

  it('binds the value header: any flipped header bit fails authentication', () => {
    const sealer = fixtureSealer(backend);
    const header = valueHeader(0b010, 123456789n);
    const env = sealer.sealOne('storage', Buffer.from('value'), 0, storageAad(header));
    for (let bit = 0; bit < 72; bit++) {
      const bad = Uint8Array.from(header);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(openOutcome(() => sealer.openOne(env, storageAad(bad))), `header bit ${bit}`).toBe('ErrEncryptedReadIntegrity');
    }
    expect(openOutcome(() => sealer.openOne(env, storageAad(header)))).toBe('ok');
  });

  it('binds the location: another key, another version, a longer or shorter key all fail', () => {
    const sealer = fixtureSealer(backend);
    const env = sealer.sealOne('storage', Buffer.from('value'), 0, storageAad());
    const otherVersion = Buffer.from(storeKey);
    otherVersion[otherVersion.length - 1]! ^= 0x01;
    const moved = [
      Buffer.concat([Buffer.from('user:43'), storeKey.subarray(7)]),
      otherVersion,
      Buffer.concat([storeKey, Buffer.from([0])]),
      storeKey.subarray(0, storeKey.length - 1),
      Buffer.alloc(0),
    ];
    for (const key of moved) {
      expect(openOutcome(() => sealer.openOne(env, storageAad(valueHeader(0b010), key)))).toBe('ErrEncryptedReadIntegrity');
    }
  });

  it('never opens a storage ciphertext as a raft payload, or the reverse', () => {
    const keystore = fixtureKeystore();
    const sealer = fixtureSealer(backend, keystore);
    const storage = sealer.sealOne('storage', Buffer.from('value'), 0, storageAad());
    const raft = sealer.sealOne('raft', Buffer.from('value'), 0, RAFT_AAD);
    expect(openOutcome(() => sealer.openOne(storage, RAFT_AAD))).toBe('ErrEncryptedReadIntegrity');
    expect(openOutcome(() => sealer.openOne(raft, storageAad()))).toBe('ErrEncryptedReadIntegrity');
    // The AADs themselves keep them apart, whatever key opens them.
    const key = keystore.get(STORAGE_KEY_ID)!.key;
    const nonce = storage.subarray(6, 18);
    const aadStorage = buildAad(storageAad(), 0, STORAGE_KEY_ID);
    const sealed = backend.aeadSeal(key, nonce, aadStorage, Buffer.from('value'));
    expect(openOutcome(() => backend.aeadOpen(key, nonce, buildAad(RAFT_AAD, 0, STORAGE_KEY_ID), sealed))).toBe('ErrEncryptedReadIntegrity');
  });

  it('rejects a raft envelope with any flag bit set', () => {
    const sealer = fixtureSealer(backend);
    const env = sealer.sealOne('raft', Buffer.from('p'), 0, RAFT_AAD);
    env[1] = FLAG_COMPRESSED;
    expect(openOutcome(() => sealer.openOne(env, RAFT_AAD))).toBe('ErrEnvelopeFlag');
  });

  it('answers every truncation 0..33 bytes with ErrEnvelopeShort', () => {
    const sealer = fixtureSealer(backend);
    const env = sealer.sealOne('storage', new Uint8Array(0), 0, storageAad());
    expect(env.length).toBe(34);
    for (const kind of ['storage', 'raft'] as const) {
      const aad = kind === 'raft' ? RAFT_AAD : storageAad();
      for (let len = 0; len < 34; len++) {
        expect(openOutcome(() => sealer.openOne(env.subarray(0, len), aad)), `${kind} length ${len}`).toBe('ErrEnvelopeShort');
      }
    }
  });

  it('answers arbitrary bytes only with typed errors', () => {
    const sealer = fixtureSealer(backend);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, raft) => {
        const outcome = openOutcome(() => sealer.openOne(bytes, raft ? RAFT_AAD : storageAad()));
        expect(outcome).not.toBe('ok');
      }),
      { numRuns: 500 },
    );
  });

  it('marks only the tampered value as failed in a batch', () => {
    const sealer = fixtureSealer(backend);
    const items = Array.from({ length: 16 }, (_, i) => ({ plaintext: Buffer.from(`value ${i}`), flag: 0, aad: storageAad() }));
    const { envelopes } = sealer.seal('storage', items);
    envelopes[5]![20]! ^= 0x80;
    envelopes[11] = envelopes[11]!.subarray(0, 10);
    const results = sealer.open(envelopes.map((envelope) => ({ envelope, aad: storageAad() })));
    results.forEach((r, i) => {
      if (i === 5) expect(!r.ok && r.error.code).toBe('ErrEncryptedReadIntegrity');
      else if (i === 11) expect(!r.ok && r.error.code).toBe('ErrEnvelopeShort');
      else expect(r.ok && Buffer.from(r.plaintext).toString()).toBe(`value ${i}`);
    });
  });
});
