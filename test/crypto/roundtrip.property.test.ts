// Property tests: seal then open returns the plaintext for random sizes up
// to 1 MiB, random flags and random locations, through every backend.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FLAG_COMPRESSED, RAFT_AAD, type AadContext } from '../../src/crypto/index.js';
import { backends } from '../support/backends.js';
import { fill, fixtureSealer, valueHeader } from '../support/crypto-fixtures.js';

const MiB = 1 << 20;
// Mostly small values, some up to 1 MiB: sizes are drawn, bytes are filled
// from a seed so that large cases stay cheap to generate.
const size = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 4096 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: MiB }) });

describe.each(backends)('$name backend: round trips', ({ make }) => {
  const sealer = fixtureSealer(make());

  it('storage envelopes open to their plaintext at their location only', () => {
    fc.assert(
      fc.property(size, fc.integer(), fc.boolean(), fc.uint8Array({ maxLength: 64 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (len, seed, compressed, userKey, expireAt) => {
        const plaintext = fill(len, seed);
        const aad: AadContext = { kind: 'storage', valueHeader: valueHeader(0b010, expireAt), storeKey: userKey };
        const flag = compressed ? FLAG_COMPRESSED : 0;
        const env = sealer.sealOne('storage', plaintext, flag, aad);
        expect(env.length).toBe(len + 34);
        const opened = sealer.openOne(env, aad);
        expect(opened.flag).toBe(flag);
        expect(Buffer.from(opened.plaintext).equals(plaintext)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('raft envelopes round trip in batches of mixed sizes', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 8192 }), { minLength: 1, maxLength: 32 }), fc.integer(), (lens, seed) => {
        const plaintexts = lens.map((len, i) => fill(len, seed + i));
        const { envelopes } = sealer.seal('raft', plaintexts.map((plaintext) => ({ plaintext, flag: 0, aad: RAFT_AAD })));
        const results = sealer.open(envelopes.map((envelope) => ({ envelope, aad: RAFT_AAD })));
        results.forEach((r, i) => expect(r.ok && Buffer.from(r.plaintext).equals(plaintexts[i]!)).toBe(true));
      }),
      { numRuns: 40 },
    );
  });
});
