// The envelope API the rest of the node uses: seal under the active DEK of a
// purpose with nonces from that DEK's factory, open by the key_id written in
// the envelope. Ties together the keystore, the nonce factories (one per
// DEK per process, SPEC §3.3) and a backend.

import { sealError } from '../errors/index.js';
import type { CryptoBackend, OpenItem, OpenResult, SealItem } from './backend.js';
import type { AadContext } from './envelope.js';
import type { Dek, Keystore, Purpose } from './keystore.js';
import type { NonceFactory, NonceRange } from './nonce.js';

export interface SealerOptions {
  keystore: Keystore;
  backend: CryptoBackend;
  /**
   * Makes the nonce factory of a DEK, once per process. The caller knows
   * the node_id and the DEK's local_epoch (bumped durably in the sidecar
   * before this is called).
   */
  nonceFactory: (dek: Dek) => NonceFactory;
}

export interface SealedBatch {
  readonly keyId: number;
  readonly envelopes: Uint8Array[];
}

export class Sealer {
  readonly #keystore: Keystore;
  readonly #backend: CryptoBackend;
  readonly #makeFactory: (dek: Dek) => NonceFactory;
  readonly #factories = new Map<number, NonceFactory>();

  constructor(options: SealerOptions) {
    this.#keystore = options.keystore;
    this.#backend = options.backend;
    this.#makeFactory = options.nonceFactory;
  }

  get backend(): CryptoBackend {
    return this.#backend;
  }

  /** The active DEK of a purpose; ErrEncryptionNotBootstrapped when none. */
  activeDek(purpose: Purpose): Dek {
    const dek = this.#keystore.active(purpose);
    if (dek === undefined) throw sealError('ErrEncryptionNotBootstrapped', `no active ${purpose} DEK`);
    return dek;
  }

  /** Reserves nonces under a DEK (for batches sealed elsewhere, e.g. in workers). */
  reserveNonces(dek: Dek, count: number): NonceRange {
    let factory = this.#factories.get(dek.keyId);
    if (factory === undefined) {
      factory = this.#makeFactory(dek);
      this.#factories.set(dek.keyId, factory);
    }
    return factory.reserve(count);
  }

  /** Seals a batch under the active DEK of `purpose`, in one backend call. */
  seal(purpose: Purpose, items: readonly SealItem[]): SealedBatch {
    const dek = this.activeDek(purpose);
    if (items.length === 0) return { keyId: dek.keyId, envelopes: [] };
    const nonces = this.reserveNonces(dek, items.length);
    return { keyId: dek.keyId, envelopes: this.#backend.sealBatch(dek, nonces, items) };
  }

  sealOne(purpose: Purpose, plaintext: Uint8Array, flag: number, aad: AadContext): Uint8Array {
    return this.seal(purpose, [{ plaintext, flag, aad }]).envelopes[0]!;
  }

  /** Opens a batch in one backend call; each item succeeds or fails alone. */
  open(items: readonly OpenItem[]): OpenResult[] {
    return this.#backend.openBatch(this.#keystore, items);
  }

  /** Opens one envelope; a failure throws its typed error. */
  openOne(envelope: Uint8Array, aad: AadContext): { plaintext: Uint8Array; flag: number; keyId: number } {
    const result = this.open([{ envelope, aad }])[0]!;
    if (!result.ok) throw result.error;
    return result;
  }
}
