// `auto` backend selection and createBackend (SPEC §3.5).

import { describe, expect, it } from 'vitest';
import {
  AutoBackend,
  BACKEND_NAMES,
  HARDWARE_AES_THRESHOLDS,
  SOFTWARE_AES_THRESHOLDS,
  createBackend,
  opensslHardwareAes,
  type BackendName,
} from '../../src/crypto/index.js';

describe('auto backend', () => {
  it('sends a few small values to wasm, batches of small values to batch, and the rest to aesni', () => {
    const auto = new AutoBackend(HARDWARE_AES_THRESHOLDS);
    const pick = (count: number, size: number): string => auto.choose(count, count * size).name;
    expect(pick(1, 64)).toBe('wasm');
    expect(pick(8, 256)).toBe('wasm');
    expect(pick(1, 1024)).toBe('aesni');
    expect(pick(2, 1024)).toBe('batch');
    expect(pick(64, 64)).toBe('batch');
    expect(pick(1024, 1024)).toBe('batch');
    expect(pick(64, 4096)).toBe('aesni');
    expect(pick(1, 1 << 20)).toBe('aesni');
    auto.close();
  });

  it('keeps small values in wasm, alone or in batches, when AES-NI is masked', () => {
    const auto = new AutoBackend(SOFTWARE_AES_THRESHOLDS);
    expect(auto.choose(1, 1024).name).toBe('wasm');
    expect(auto.choose(1024, 1024 * 1024).name).toBe('wasm');
    expect(auto.choose(1, 16 * 1024).name).toBe('aesni');
    expect(auto.choose(64, 64 * 16 * 1024).name).toBe('aesni');
    auto.close();
  });

  it('reads an AES-NI mask from OPENSSL_ia32cap', () => {
    expect(opensslHardwareAes({ OPENSSL_ia32cap: '~0x200000200000000' })).toBe(false);
    expect(opensslHardwareAes({ OPENSSL_ia32cap: '0x0' })).toBe(false);
    // A mask that leaves AES-NI alone changes nothing.
    expect(opensslHardwareAes({ OPENSSL_ia32cap: '~0x1' })).toBe(opensslHardwareAes({}));
  });
});

describe('createBackend', () => {
  it.each(['aesni', 'batch', 'wasm', 'auto', 'noble'] as BackendName[])('makes the %s backend', (name) => {
    const backend = createBackend(name);
    expect(backend.name).toBe(name);
    backend.close?.();
  });

  it('refuses an unknown name', () => {
    expect(() => createBackend('rot13' as BackendName)).toThrow(RangeError);
    expect(() => createBackend('toString' as BackendName)).toThrow(RangeError);
  });

  it('BACKEND_NAMES lists exactly the backends it makes', () => {
    expect([...BACKEND_NAMES].sort()).toEqual(['aesni', 'auto', 'batch', 'noble', 'wasm']);
  });
});
