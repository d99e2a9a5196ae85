// In-memory keystore: key_id → DEK, one active DEK per purpose.
//
// Readers (every seal and open) take no lock: the whole state is an immutable
// snapshot replaced on each change (copy-on-write), so a reader always sees a
// consistent set of keys and actives. Changes are rare (start, rotation,
// retirement) and cheap at the sizes involved (a handful of keys).
//
// Key bytes never leave through anything printable: Dek has no toJSON and
// describe() names key_ids only.

import { sealError } from '../errors/index.js';

export type Purpose = 'storage' | 'raft';
export const PURPOSES: readonly Purpose[] = ['storage', 'raft'];
export const DEK_BYTES = 32;

/** A data encryption key. `key` is owned by the keystore; do not keep it. */
export interface Dek {
  readonly keyId: number;
  readonly purpose: Purpose;
  readonly key: Uint8Array;
}

/** What backends need to open an envelope: find a DEK by key_id. */
export interface KeyLookup {
  get(keyId: number): Dek | undefined;
}

interface KeystoreState {
  readonly keys: ReadonlyMap<number, Dek>;
  readonly active: Readonly<Partial<Record<Purpose, number>>>;
}

export function checkKeyId(keyId: number): void {
  if (!Number.isInteger(keyId) || keyId < 1 || keyId > 0xffffffff) {
    throw new RangeError(`key_id ${keyId} is not a non-zero uint32`);
  }
}

export class Keystore implements KeyLookup {
  #state: KeystoreState = { keys: new Map(), active: {} };

  /** Adds a DEK (copying its bytes). Re-installing identical bytes is a no-op. */
  install(keyId: number, purpose: Purpose, key: Uint8Array): void {
    checkKeyId(keyId);
    if (key.length !== DEK_BYTES) throw new RangeError(`DEK must be ${DEK_BYTES} bytes`);
    const existing = this.#state.keys.get(keyId);
    if (existing !== undefined) {
      if (existing.purpose === purpose && equalBytes(existing.key, key)) return;
      throw new RangeError(`key_id ${keyId} is already installed with different material or purpose`);
    }
    const dek: Dek = Object.freeze({ keyId, purpose, key: Uint8Array.from(key) });
    const keys = new Map(this.#state.keys);
    keys.set(keyId, dek);
    this.#state = { keys, active: this.#state.active };
  }

  /** Makes an installed DEK the one new seals of its purpose use. */
  setActive(purpose: Purpose, keyId: number): void {
    const dek = this.#state.keys.get(keyId);
    if (dek === undefined) throw sealError('ErrUnknownKeyId', `cannot activate key_id ${keyId}: not installed`);
    if (dek.purpose !== purpose) throw new RangeError(`key_id ${keyId} is a ${dek.purpose} DEK, not ${purpose}`);
    this.#state = { keys: this.#state.keys, active: { ...this.#state.active, [purpose]: keyId } };
  }

  /** Drops a retired DEK and zeroes its bytes. The active DEK cannot be removed. */
  remove(keyId: number): void {
    const dek = this.#state.keys.get(keyId);
    if (dek === undefined) return;
    if (this.#state.active[dek.purpose] === keyId) throw new RangeError(`key_id ${keyId} is active and cannot be removed`);
    const keys = new Map(this.#state.keys);
    keys.delete(keyId);
    this.#state = { keys, active: this.#state.active };
    dek.key.fill(0);
  }

  get(keyId: number): Dek | undefined {
    return this.#state.keys.get(keyId);
  }

  /** The active DEK of a purpose, or undefined before bootstrap. */
  active(purpose: Purpose): Dek | undefined {
    const keyId = this.#state.active[purpose];
    return keyId === undefined ? undefined : this.#state.keys.get(keyId);
  }

  keyIds(): number[] {
    return [...this.#state.keys.keys()].sort((a, b) => a - b);
  }

  /** Loggable summary: key_ids and purposes, never key bytes. */
  describe(): { keys: { keyId: number; purpose: Purpose }[]; active: Partial<Record<Purpose, number>> } {
    return {
      keys: [...this.#state.keys.values()].map(({ keyId, purpose }) => ({ keyId, purpose })),
      active: { ...this.#state.active },
    };
  }

  /** Zeroes every DEK and empties the store (shutdown). */
  clear(): void {
    const old = this.#state;
    this.#state = { keys: new Map(), active: {} };
    for (const dek of old.keys.values()) dek.key.fill(0);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
