// The WASM core's memory hygiene and key slots: after every call no
// plaintext, keystream or staged key is left in linear memory outside the
// key slots, and close() zeroes the slots too.

import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Keystore, RAFT_AAD, WasmCore, type KeystreamFn } from '../../src/crypto/index.js';
import { valueHeader } from '../support/crypto-fixtures.js';

const SCRATCH = 0x10000;
const SLOTS = 0x11000;
const SLOTS_END = 0x21000;

const ecb: KeystreamFn = (key, mem, offset, length) => {
  const cipher = crypto.createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
  mem.set(cipher.update(mem.subarray(offset, offset + length)), offset);
};

function nonZero(mem: Uint8Array, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) if (mem[i] !== 0) count++;
  return count;
}

describe.each([
  { name: 'wasm', keystream: null },
  { name: 'batch', keystream: ecb },
])('$name core: memory hygiene', ({ keystream }) => {
  it('leaves nothing but key slots in memory after seal and open, and nothing at all after close', () => {
    const core = new WasmCore(keystream);
    const keystore = new Keystore();
    keystore.install(3, 'storage', crypto.randomBytes(32));
    keystore.install(4, 'raft', crypto.randomBytes(32));
    const storage = { kind: 'storage' as const, valueHeader: valueHeader(1, 99n), storeKey: Buffer.from('some key') };
    const items = [0, 1, 15, 16, 17, 100, 70_000].map((n) => ({ plaintext: crypto.randomBytes(n), flag: 1, aad: storage }));
    // Only the key slots may hold anything once a call returns.
    const clean = () => {
      const mem = new Uint8Array(core.exports.memory.buffer);
      expect(nonZero(mem, SCRATCH, SLOTS)).toBe(0);
      expect(nonZero(mem, SLOTS_END, mem.length)).toBe(0);
      expect(nonZero(mem, SLOTS, SLOTS_END)).toBeGreaterThan(0);
    };
    const envelopes = core.sealBatch(keystore.get(3)!, { prefix: Buffer.from([1, 2, 3, 4]), start: 9n, count: items.length }, items);
    clean();
    const raft = core.sealBatch(keystore.get(4)!, { prefix: Buffer.from([1, 2, 3, 4]), start: 0n, count: 1 }, [{ plaintext: Buffer.from('entry'), flag: 0, aad: RAFT_AAD }]);
    clean();
    const opened = core.openBatch(keystore, [...envelopes.map((envelope) => ({ envelope, aad: storage })), { envelope: raft[0]!, aad: RAFT_AAD }]);
    expect(opened.every((r) => r.ok)).toBe(true);
    clean();
    const key = keystore.get(3)!.key;
    const sealed = core.aeadSeal(key, Buffer.alloc(12), Buffer.alloc(0), Buffer.from('x'));
    clean();
    expect(Buffer.from(core.aeadOpen(key, Buffer.alloc(12), Buffer.alloc(0), sealed)).toString()).toBe('x');
    clean();
    sealed[0]! ^= 1;
    expect(() => core.aeadOpen(key, Buffer.alloc(12), Buffer.alloc(0), sealed)).toThrow();
    clean();
    core.close();
    const mem = new Uint8Array(core.exports.memory.buffer);
    expect(nonZero(mem, SCRATCH, mem.length)).toBe(0);
  });

  it('reuses a slot for a key it holds and evicts the least recently used one', () => {
    const core = new WasmCore(keystream);
    const keys = Array.from({ length: 17 }, () => crypto.randomBytes(32));
    const slots = keys.slice(0, 16).map((k) => core.slotFor(k));
    expect(new Set(slots).size).toBe(16);
    expect(core.slotFor(Uint8Array.from(keys[3]!))).toBe(slots[3]);
    // keys[0] is now the least recently used: the 17th key takes its slot.
    expect(core.slotFor(keys[16]!)).toBe(slots[0]);
    core.close();
  });
});

describe('WasmCore: failure paths', () => {
  it('zeroes the I/O area and scratch when the keystream source throws mid-batch', () => {
    const failing: KeystreamFn = () => {
      throw new Error('keystream source failed');
    };
    const core = new WasmCore(failing);
    const keystore = new Keystore();
    keystore.install(1, 'raft', crypto.randomBytes(32));
    const plaintext = Buffer.alloc(4096, 0xab);
    expect(() => core.sealBatch(keystore.get(1)!, { prefix: new Uint8Array(4), start: 0n, count: 1 }, [{ plaintext, flag: 0, aad: RAFT_AAD }])).toThrow('keystream source failed');
    const mem = new Uint8Array(core.exports.memory.buffer);
    expect(nonZero(mem, SCRATCH, SLOTS)).toBe(0);
    expect(nonZero(mem, SLOTS_END, mem.length)).toBe(0);
    core.close();
  });
});
