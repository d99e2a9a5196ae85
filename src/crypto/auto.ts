// Backend selection (SPEC §3.5): `createBackend(name)` makes a backend by
// its `--crypto-backend` name, and the `auto` backend picks, per call, the
// backend that is fastest for that call's batch size and mean value size.
//
// The thresholds come from `npm run bench -- crypto` (bench/crypto.ts; the
// "Where `auto` switches" table of bench/results/crypto-vm-2026-11-29.md):
// seal MB/s of aesni / batch / wasm for n values per call, CPU-timed, on
// the 2-core AMD EPYC (aes, pclmulqdq, avx2, vaes) this project is built on.
//
//   with AES-NI        n=1                n=2                n=4                n=8                n=64
//   64 B     9.9 /   9.6 /  22.1   8.2 /  16.1 /  31.4   9.4 /  25.3 /  42.1   9.0 /  42.1 /  54.2   9.5 /  82.8 /  63.3
//   256 B   33.8 /  34.1 /  60.9  30.5 /  47.3 /  67.6  29.2 /  71.3 /  73.2  30.0 /  84.3 /  91.4  36.2 / 178.3 / 105.8
//   1 KiB  120.8 /  98.3 / 102.0  97.7 / 127.6 / 107.5  93.7 / 127.8 / 112.2 102.2 / 174.5 / 113.7 121.7 / 219.6 / 121.9
//   2 KiB  191.3 / 137.1 /  93.3 172.0 / 141.4 /  88.0 167.6 / 206.4 / 119.8 218.5 / 232.1 / 124.0 214.9 / 187.6 / 112.9
//   4 KiB  355.0 / 185.5 / 107.8 261.9 / 195.4 / 111.4 361.6 / 193.8 / 123.8 373.7 / 245.4 / 101.6 369.8 / 247.6 / 125.7
//
//   AES-NI masked (OPENSSL_ia32cap="~0x200000200000000")
//   64 B     9.0 /  10.4 /  27.3   8.4 /  16.2 /  31.4   7.8 /  23.3 /  42.2   7.9 /  32.4 /  55.6   8.6 /  53.3 /  64.3
//   256 B   30.0 /  28.0 /  59.5  28.4 /  39.2 /  79.9  25.9 /  61.1 /  71.1  32.4 /  61.3 /  90.3  29.2 /  86.9 / 103.0
//   1 KiB   86.8 /  60.2 / 105.3  67.3 /  70.6 /  73.9  67.0 /  89.2 / 106.9  68.1 /  94.6 / 118.7  66.1 / 102.0 / 122.5
//   2 KiB  111.8 /  73.4 / 108.5 115.2 /  75.6 / 113.8 111.7 /  93.4 / 120.5 103.6 / 101.7 / 121.4 112.9 /  88.5 / 115.4
//   4 KiB  132.5 /  92.3 / 123.9 127.2 /  93.7 / 117.4 143.4 / 102.1 / 120.7 142.4 / 103.2 / 127.7 141.6 / 109.3 / 128.4
//
// So, with AES-NI: up to 8 values of up to 256 B are cheapest in WASM (no
// node:crypto call at all); from 2 values of up to 2 KiB, `batch` (one ECB
// call for all keystream, 1.3–1.8x aesni at 1 KiB; 2 KiB is a tie); a lone
// value over 256 B and anything over 2 KiB go to `aesni`, whose stitched
// AES-GCM is 2.9x the others at 4 KiB and 4x at 16 KiB. With AES-NI masked,
// WASM's bitsliced AES keeps up with OpenSSL's software AES, so values up to
// 2 KiB go to `wasm` at every batch size (1.1–3x aesni, and constant-time,
// unlike OpenSSL's table-driven software GHASH); above that, `aesni`.
// Opening follows the same shape and uses the same thresholds.

import fs from 'node:fs';
import { AesniBackend } from './aesni.js';
import { isBackendName, type BackendName, type CryptoBackend, type OpenItem, type OpenResult, type SealItem } from './backend.js';
import { BatchBackend } from './batch.js';
import { ENVELOPE_OVERHEAD } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import { NobleBackend } from './noble.js';
import type { NonceRange } from './nonce.js';
import { WasmBackend } from './wasm.js';

/** Where `auto` switches backends; sizes are mean plaintext bytes per value. */
export interface AutoThresholds {
  /** Calls of at most this many values, of at most `wasmMaxBytes` each, go to `wasm`. */
  readonly wasmMaxCount: number;
  readonly wasmMaxBytes: number;
  /** Otherwise calls of at least this many values, of at most `batchMaxBytes` each, go to `batch`. */
  readonly batchMinCount: number;
  readonly batchMaxBytes: number;
}

/** With AES-NI (figures above). */
export const HARDWARE_AES_THRESHOLDS: AutoThresholds = { wasmMaxCount: 8, wasmMaxBytes: 256, batchMinCount: 2, batchMaxBytes: 2048 };
/** AES-NI masked: wasm up to 2 KiB at any batch size, aesni above; never batch (figures above). */
export const SOFTWARE_AES_THRESHOLDS: AutoThresholds = { wasmMaxCount: Infinity, wasmMaxBytes: 2048, batchMinCount: Infinity, batchMaxBytes: 0 };

/**
 * Whether OpenSSL will use AES-NI: the CPU reports `aes` (Linux
 * /proc/cpuinfo; other systems are assumed to have it) and
 * OPENSSL_ia32cap does not mask it (bit 57 of its first word, SPEC §3.5).
 */
export function opensslHardwareAes(env: NodeJS.ProcessEnv = process.env): boolean {
  const AESNI_BIT = 1n << 57n;
  const cap = env.OPENSSL_ia32cap?.split(':')[0]?.trim();
  if (cap !== undefined && cap !== '') {
    try {
      if (cap.startsWith('~')) {
        if ((BigInt(cap.slice(1)) & AESNI_BIT) !== 0n) return false;
      } else if ((BigInt(cap) & AESNI_BIT) === 0n) {
        return false;
      }
    } catch {
      // Not a number OpenSSL would accept either; it ignores it, so do we.
    }
  }
  try {
    const flags = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((line) => line.startsWith('flags'));
    return flags === undefined || /\baes\b/.test(flags);
  } catch {
    return true;
  }
}

/**
 * Chooses a backend per call. The WASM backends are made on first use (each
 * holds a WASM instance), and closed by close().
 */
export class AutoBackend implements CryptoBackend {
  readonly name = 'auto' as const;
  readonly thresholds: AutoThresholds;
  readonly #aesni = new AesniBackend();
  #batch: BatchBackend | undefined;
  #wasm: WasmBackend | undefined;

  constructor(thresholds: AutoThresholds = opensslHardwareAes() ? HARDWARE_AES_THRESHOLDS : SOFTWARE_AES_THRESHOLDS) {
    this.thresholds = thresholds;
  }

  /** The backend `auto` uses for `count` values of `bytes` plaintext bytes in all. */
  choose(count: number, bytes: number): CryptoBackend {
    const mean = count === 0 ? 0 : bytes / count;
    const t = this.thresholds;
    if (count <= t.wasmMaxCount && mean <= t.wasmMaxBytes) return (this.#wasm ??= new WasmBackend());
    if (count >= t.batchMinCount && mean <= t.batchMaxBytes) return (this.#batch ??= new BatchBackend());
    return this.#aesni;
  }

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    return this.choose(1, plaintext.length).aeadSeal(key, nonce, aad, plaintext);
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
    return this.choose(1, sealed.length).aeadOpen(key, nonce, aad, sealed);
  }

  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[]): Uint8Array[] {
    let bytes = 0;
    for (const item of items) bytes += item.plaintext.length;
    return this.choose(items.length, bytes).sealBatch(dek, nonces, items);
  }

  openBatch(keys: KeyLookup, items: readonly OpenItem[]): OpenResult[] {
    let bytes = 0;
    for (const item of items) bytes += Math.max(0, item.envelope.length - ENVELOPE_OVERHEAD);
    return this.choose(items.length, bytes).openBatch(keys, items);
  }

  close(): void {
    this.#batch?.close();
    this.#wasm?.close();
  }
}

/** One maker per name of BACKEND_NAMES (the Record type keeps them in step). */
const MAKERS: Record<BackendName, () => CryptoBackend> = {
  aesni: () => new AesniBackend(),
  batch: () => new BatchBackend(),
  wasm: () => new WasmBackend(),
  noble: () => new NobleBackend(),
  auto: () => new AutoBackend(),
};

export function createBackend(name: BackendName): CryptoBackend {
  if (!isBackendName(name)) throw new RangeError(`unknown crypto backend "${String(name)}"`);
  return MAKERS[name]();
}
