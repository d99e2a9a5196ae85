// Compress-then-encrypt for storage envelopes (SPEC §3.4): raw Snappy, kept
// only when strictly smaller, marked by FLAG_COMPRESSED (which the envelope
// header carries into the authenticated data). Used by the store when it
// seals in-thread and by the pool's workers when they seal for it.

import snappy from 'snappy';
import { FLAG_COMPRESSED } from './envelope.js';

/** The plaintext to seal for `value` and its flag: compressed when that is smaller. */
export function compressForSeal(value: Uint8Array): { plaintext: Uint8Array; flag: number } {
  if (value.length > 0 && worthCompressing(value)) {
    const compressed = snappy.compressSync(value);
    if (compressed.length < value.length) return { plaintext: compressed, flag: FLAG_COMPRESSED };
  }
  return { plaintext: value, flag: 0 };
}

// Values at least this long are sampled before Snappy is tried.
const SAMPLE_FROM_BYTES = 256;
const SAMPLE_WINDOWS = 4;
const SAMPLE_WINDOW = 48;
const SAMPLE_TABLE_BITS = 10;
const sampleWords = new Int32Array(1 << SAMPLE_TABLE_BITS);
const sampleStamps = new Int32Array(1 << SAMPLE_TABLE_BITS);
let sampleStamp = 0;

/**
 * Whether Snappy could shrink `value`. Snappy gains only from repeated
 * 4-byte sequences; a long value whose sampled windows (spread over the
 * whole value) hold none — random, already compressed or already encrypted
 * data — is not worth the attempt. Only the attempt is skipped: a value
 * tried is still kept compressed only when smaller, so a wrong guess costs
 * size, never correctness.
 */
function worthCompressing(value: Uint8Array): boolean {
  if (value.length < SAMPLE_FROM_BYTES) return true;
  const stamp = ++sampleStamp;
  if (stamp === 0x7fffffff) {
    sampleStamp = 0;
    sampleStamps.fill(0);
  }
  const last = value.length - SAMPLE_WINDOW - 4;
  for (let w = 0; w < SAMPLE_WINDOWS; w++) {
    const start = Math.floor((last * w) / (SAMPLE_WINDOWS - 1));
    for (let i = start; i < start + SAMPLE_WINDOW; i++) {
      const word = value[i]! | (value[i + 1]! << 8) | (value[i + 2]! << 16) | (value[i + 3]! << 24);
      const slot = Math.imul(word, 0x1e35a7bd) >>> (32 - SAMPLE_TABLE_BITS);
      if (sampleStamps[slot] === stamp && sampleWords[slot] === word) return true;
      sampleStamps[slot] = stamp;
      sampleWords[slot] = word;
    }
  }
  return false;
}
