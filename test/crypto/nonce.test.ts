// Deterministic nonces (SPEC §3.3): node_id, epochs, ranges and the ceiling.

import { describe, expect, it } from 'vitest';
import { AesniBackend, NonceFactory, fnv1a64, nodeId16, nonceAt } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';
import { fixtureSealer } from '../support/crypto-fixtures.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('node_id', () => {
  it('is the low 16 bits of FNV-1a-64 of the raft id', () => {
    // Reference values of the FNV-1a 64-bit test suite.
    expect(fnv1a64('')).toBe(0xcbf29ce484222325n);
    expect(fnv1a64('a')).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64('foobar')).toBe(0x85944171f73967e8n);
    expect(nodeId16('foobar')).toBe(0x67e8);
    expect(() => nodeId16('')).toThrow(RangeError);
  });
});

describe('NonceFactory', () => {
  it('encodes node_id ‖ local_epoch ‖ write_count big-endian', () => {
    const f = new NonceFactory({ nodeId: 0xbeef, localEpoch: 0x0102 });
    expect(hex(f.next())).toBe('beef0102' + '0000000000000000');
    expect(hex(f.next())).toBe('beef0102' + '0000000000000001');
    const range = f.reserve(300);
    expect(range.start).toBe(2n);
    expect(hex(nonceAt(range, 299))).toBe('beef0102' + '000000000000012d');
    expect(() => nonceAt(range, 300)).toThrow(RangeError);
  });

  it('never repeats a nonce across reserved ranges, nor across a restart with a bumped epoch', () => {
    const seen = new Set<string>();
    for (const epoch of [1, 2, 3]) {
      // A restart: a new factory, counters from zero, the epoch bumped.
      const f = new NonceFactory({ nodeId: 7, localEpoch: epoch });
      for (let batch = 1; batch <= 40; batch++) {
        const range = f.reserve(batch);
        for (let i = 0; i < range.count; i++) {
          const n = hex(nonceAt(range, i));
          expect(seen.has(n), n).toBe(false);
          seen.add(n);
        }
        seen.add(hex(f.next()));
      }
    }
    expect(seen.size).toBe(3 * (820 + 40));
  });

  it('warns once at 90% of the ceiling and refuses at 100% with ErrWriteCeilingReached', () => {
    let warnings = 0;
    const f = new NonceFactory({ nodeId: 1, localEpoch: 1, ceiling: 100, onNearCeiling: () => warnings++ });
    f.reserve(89);
    expect(warnings).toBe(0);
    f.reserve(1);
    expect(warnings).toBe(1);
    f.reserve(9);
    expect(warnings).toBe(1);
    f.next();
    expect(f.writeCount).toBe(100n);
    let error: unknown;
    try {
      f.next();
    } catch (err) {
      error = err;
    }
    expect(isSealError(error, 'ErrWriteCeilingReached')).toBe(true);
    // A refused reservation consumes nothing.
    expect(f.writeCount).toBe(100n);
  });

  it('rejects out-of-range node ids, epochs and counts', () => {
    expect(() => new NonceFactory({ nodeId: 0x10000, localEpoch: 1 })).toThrow(RangeError);
    expect(() => new NonceFactory({ nodeId: 1, localEpoch: 0x10000 })).toThrow(RangeError);
    expect(() => new NonceFactory({ nodeId: 1, localEpoch: 1 }).reserve(0)).toThrow(RangeError);
  });

  it('gives every sealed envelope of a Sealer a distinct nonce', () => {
    const sealer = fixtureSealer(new AesniBackend());
    const nonces = new Set<string>();
    for (let b = 0; b < 20; b++) {
      const { envelopes } = sealer.seal('raft', Array.from({ length: 10 }, () => ({ plaintext: new Uint8Array(1), flag: 0, aad: { kind: 'raft' } as const })));
      for (const env of envelopes) nonces.add(hex(env.subarray(6, 18)));
    }
    expect(nonces.size).toBe(200);
  });
});
