// The `aesni` backend (SPEC §3.5): node:crypto aes-256-gcm, one call per
// value. OpenSSL picks AES-NI and PCLMULQDQ when the CPU has them (and when
// OPENSSL_ia32cap does not mask them), so this is the fast path for large
// values; for small values the per-call overhead dominates, which is what
// the `batch` backend exists to remove.

import crypto from 'node:crypto';
import {
  checkAeadArgs,
  integrityError,
  openBatchWith,
  sealBatchWith,
  type CryptoBackend,
  type OpenItem,
  type OpenResult,
  type SealItem,
} from './backend.js';
import { TAG_BYTES } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import type { NonceRange } from './nonce.js';

/** Writes ciphertext ‖ tag of `plaintext` into `out` at `offset`. */
function sealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset: number): void {
  checkAeadArgs(key, nonce);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  let written = 0;
  if (plaintext.length > 0) {
    const body = cipher.update(plaintext);
    out.set(body, offset);
    written = body.length;
  }
  const tail = cipher.final();
  out.set(tail, offset + written);
  out.set(cipher.getAuthTag(), offset + plaintext.length);
}

export class AesniBackend implements CryptoBackend {
  readonly name = 'aesni' as const;

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES);
    sealInto(key, nonce, aad, plaintext, out, 0);
    return out;
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
    checkAeadArgs(key, nonce);
    if (sealed.length < TAG_BYTES) throw integrityError('sealed value shorter than its tag');
    const split = sealed.length - TAG_BYTES;
    const decipher = crypto.createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(split));
    // OpenSSL releases plaintext from update() before final() checks the tag;
    // it is held here and returned only after final() succeeds.
    const body = split > 0 ? decipher.update(sealed.subarray(0, split)) : Buffer.alloc(0);
    try {
      decipher.final();
    } catch {
      body.fill(0);
      throw integrityError('authentication tag mismatch');
    }
    return new Uint8Array(body.buffer, body.byteOffset, body.length);
  }

  // Seals straight into each envelope: one allocation per value besides
  // the one node:crypto makes, which matters at 1 MiB.
  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[] {
    return sealBatchWith(dek, nonces, items, (nonce, aad, plaintext, envelope, offset) => sealInto(dek.key, nonce, aad, plaintext, envelope, offset));
  }

  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
    return openBatchWith(this, keys, items);
  }
}
