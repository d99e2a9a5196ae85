// The `noble` backend (SPEC §3.5): @noble/ciphers AES-256-GCM in pure
// JavaScript. An independent oracle for the differential tests and a peer in
// the benchmarks; never on the data path (it is neither fast nor written to
// our constant-time rules), which is why `createBackend` does not offer it.

import { gcm } from '@noble/ciphers/aes.js';
import {
  checkAeadArgs,
  integrityError,
  openBatchWith,
  sealBatchWith,
  sealIntoVia,
  type CryptoBackend,
  type OpenItem,
  type OpenResult,
  type SealItem,
} from './backend.js';
import { TAG_BYTES } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import type { NonceRange } from './nonce.js';

export class NobleBackend implements CryptoBackend {
  readonly name = 'noble' as const;

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    checkAeadArgs(key, nonce);
    return gcm(key, nonce, aad).encrypt(plaintext);
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
    checkAeadArgs(key, nonce);
    if (sealed.length < TAG_BYTES) throw integrityError('sealed value shorter than its tag');
    try {
      // noble checks the tag before it decrypts anything.
      return gcm(key, nonce, aad).decrypt(sealed);
    } catch {
      throw integrityError('authentication tag mismatch');
    }
  }

  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[] {
    // noble's gcm has no output-buffer form: seal, then copy into the envelope.
    return sealBatchWith(dek, nonces, items, sealIntoVia(this, dek.key));
  }

  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
    return openBatchWith(this, keys, items);
  }
}
