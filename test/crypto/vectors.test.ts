// AES-256-GCM known-answer tests through every backend: Wycheproof and NIST
// CAVP (sources in ../shared/vectors/README.md). Each case's label names
// its source; a failure lists the labels that failed.

import { describe, expect, it } from 'vitest';
import { isSealError } from '../../src/errors/index.js';
import { backends } from '../support/backends.js';
import { nistGcm, wycheproofGcm, type GcmVector } from '../support/vectors.js';

const wycheproof = wycheproofGcm();
const nistEncrypt = nistGcm('encrypt');
const nistDecrypt = nistGcm('decrypt');

describe('vector files', () => {
  it('hold the case counts their README states', () => {
    expect(wycheproof.length).toBe(66);
    expect(wycheproof.filter((v) => v.valid).length).toBe(39);
    expect(nistEncrypt.length).toBe(2625);
    expect(nistDecrypt.length).toBe(375);
    expect(nistDecrypt.filter((v) => !v.valid).length).toBe(191);
  });
});

describe.each(backends)('$name backend: known answers', ({ make }) => {
  const backend = make();

  const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  };

  function checkSeal(cases: GcmVector[]): string[] {
    const failed: string[] = [];
    for (const v of cases.filter((c) => c.valid)) {
      const sealed = backend.aeadSeal(v.key, v.iv, v.aad, v.plaintext);
      const ct = Buffer.from(sealed.subarray(0, v.plaintext.length));
      const tag = Buffer.from(sealed.subarray(v.plaintext.length, v.plaintext.length + v.tag.length));
      if (sealed.length !== v.plaintext.length + 16 || !ct.equals(v.ciphertext) || !tag.equals(v.tag)) failed.push(v.label);
    }
    return failed;
  }

  function checkOpen(cases: GcmVector[]): string[] {
    const failed: string[] = [];
    for (const v of cases) {
      let outcome: 'plaintext' | 'integrity' | 'other';
      let plaintext: Uint8Array | undefined;
      try {
        plaintext = backend.aeadOpen(v.key, v.iv, v.aad, concat(v.ciphertext, v.tag));
        outcome = 'plaintext';
      } catch (err) {
        outcome = isSealError(err, 'ErrEncryptedReadIntegrity') ? 'integrity' : 'other';
      }
      const ok = v.valid ? outcome === 'plaintext' && Buffer.from(plaintext!).equals(v.plaintext) : outcome === 'integrity';
      if (!ok) failed.push(`${v.label} (${outcome})`);
    }
    return failed;
  }

  it('seals every valid Wycheproof 256/96 case to its ciphertext and tag', () => {
    expect(checkSeal(wycheproof)).toEqual([]);
  });

  it('opens valid Wycheproof cases and rejects every invalid one with ErrEncryptedReadIntegrity', () => {
    expect(checkOpen(wycheproof)).toEqual([]);
  });

  it('seals every NIST gcmEncryptExtIV256 IVlen-96 case (truncated tags as prefixes)', () => {
    expect(checkSeal(nistEncrypt)).toEqual([]);
  });

  it('opens NIST gcmDecrypt256 IVlen-96 Taglen-128 cases and rejects every FAIL case', () => {
    expect(checkOpen(nistDecrypt)).toEqual([]);
  });
});
