// Shared fixtures for crypto tests: a keystore with one storage and one raft
// DEK, and a Sealer over a chosen backend with real nonce factories.

import crypto from 'node:crypto';
import { Keystore, NonceFactory, Sealer, type CryptoBackend } from '../../src/crypto/index.js';

export const STORAGE_KEY_ID = 0x12345678;
export const RAFT_KEY_ID = 0x9abcdef0;

export function fixtureKeystore(): Keystore {
  const keystore = new Keystore();
  keystore.install(STORAGE_KEY_ID, 'storage', crypto.randomBytes(32));
  keystore.install(RAFT_KEY_ID, 'raft', crypto.randomBytes(32));
  keystore.setActive('storage', STORAGE_KEY_ID);
  keystore.setActive('raft', RAFT_KEY_ID);
  return keystore;
}

export function fixtureSealer(backend: CryptoBackend, keystore = fixtureKeystore(), localEpoch = 1): Sealer {
  return new Sealer({ keystore, backend, nonceFactory: () => new NonceFactory({ nodeId: 0x0a0b, localEpoch }) });
}

/** A 9-byte value header: flags, then expire_at little-endian. */
export function valueHeader(flags: number, expireAt = 0n): Uint8Array {
  const header = new Uint8Array(9);
  header[0] = flags;
  new DataView(header.buffer).setBigUint64(1, expireAt, true);
  return header;
}

/** `length` pseudo-random bytes from a seed (xorshift32): cheap for large values. */
export function fill(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
