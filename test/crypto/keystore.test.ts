// The in-memory keystore: install, activate, retire, copy-on-write reads.

import { describe, expect, it } from 'vitest';
import { Keystore } from '../../src/crypto/index.js';
import { isSealError } from '../../src/errors/index.js';

const key = (b: number): Uint8Array => new Uint8Array(32).fill(b);

describe('Keystore', () => {
  it('keeps one active DEK per purpose and opens with any installed one', () => {
    const ks = new Keystore();
    expect(ks.active('storage')).toBeUndefined();
    ks.install(1, 'storage', key(1));
    ks.install(2, 'storage', key(2));
    ks.install(3, 'raft', key(3));
    ks.setActive('storage', 1);
    ks.setActive('raft', 3);
    ks.setActive('storage', 2);
    expect(ks.active('storage')!.keyId).toBe(2);
    expect(ks.active('raft')!.keyId).toBe(3);
    expect(ks.get(1)!.key).toEqual(key(1));
    expect(ks.keyIds()).toEqual([1, 2, 3]);
    expect(JSON.stringify(ks.describe())).not.toMatch(/"key"/);
  });

  it('copies key material in, and zeroes it when a retired DEK is removed', () => {
    const ks = new Keystore();
    const material = key(9);
    ks.install(5, 'storage', material);
    material.fill(0);
    const dek = ks.get(5)!;
    expect(dek.key[0]).toBe(9);
    ks.remove(5);
    expect(ks.get(5)).toBeUndefined();
    expect(dek.key.every((b) => b === 0)).toBe(true);
  });

  it('refuses to remove the active DEK, to activate an unknown one, or to reuse a key_id', () => {
    const ks = new Keystore();
    ks.install(1, 'storage', key(1));
    ks.setActive('storage', 1);
    expect(() => ks.remove(1)).toThrow(RangeError);
    try {
      ks.setActive('raft', 99);
      expect.unreachable();
    } catch (err) {
      expect(isSealError(err, 'ErrUnknownKeyId')).toBe(true);
    }
    expect(() => ks.setActive('raft', 1)).toThrow(RangeError);
    ks.install(1, 'storage', key(1));
    expect(() => ks.install(1, 'storage', key(2))).toThrow(RangeError);
    expect(() => ks.install(0, 'storage', key(1))).toThrow(RangeError);
    expect(() => ks.install(2 ** 32, 'storage', key(1))).toThrow(RangeError);
    expect(() => ks.install(2, 'storage', new Uint8Array(16))).toThrow(RangeError);
  });

  it('lets a reader keep the state it read while a writer changes it', () => {
    const ks = new Keystore();
    ks.install(1, 'storage', key(1));
    ks.setActive('storage', 1);
    const before = ks.active('storage');
    ks.install(2, 'storage', key(2));
    ks.setActive('storage', 2);
    expect(before!.keyId).toBe(1);
    expect(before!.key[0]).toBe(1);
    ks.clear();
    expect(ks.keyIds()).toEqual([]);
    expect(before!.key[0]).toBe(0);
  });
});
