// Backend selection (SPEC §3.5): `createBackend(name)` makes a backend by
// its `--crypto-backend` name, and the `auto` backend picks, per call, the
// backend that is fastest for that call's batch size and mean value size.
//
// The thresholds come from `npm run bench -- crypto` (bench/crypto.ts) on
// the 2-core AMD EPYC (aes, pclmulqdq, avx2, vaes) this project is built on,
// seal MB/s, batch size n, one run each (2026-11-29):
//
//   hardware AES            n=1                  n=8                 n=64
//   64 B   aesni/batch/wasm   6 /  6 / 22          11 / 48 / 41        11 / 90 / 47
//   256 B                    40 / 40 / 44          39 / 94 / 53        38 / 168 / 68
//   1 KiB                   143 / 97 / 82         123 / 161 / 88      137 / 189 / 82
//   4 KiB                   293 / 173 / 93        316 / 202 / 99      314 / 217 / 98
//   16 KiB                  964 / 221 / 99        846 / 223 / 103     942 / 213 / 96
//
//   AES-NI masked (OPENSSL_ia32cap="~0x200000200000000")
//   64 B                      8 /  7 / 22           9 / 38 / 44         10 / 56 / 48
//   256 B                    31 / 27 / 41          32 / 71 / 69        35 / 84 / 71
//   1 KiB                    70 / 55 / 74          73 / 85 / 82        68 / 97 / 89
//   4 KiB                   148 / 87 / 82         147 / 101 / 90      126 / 94 / 100
//   16 KiB                  188 / 103 / 101       192 / 107 / 103     191 / 105 / 101
//
// So: a lone small value is cheapest in WASM (no node:crypto call at all);
// batches of small values go to `batch` (one ECB call for all keystream);
// anything of 4 KiB and up goes to `aesni`, where OpenSSL's stitched
// AES-GCM beats both. Opening follows the same shape and uses the same
// thresholds.

import fs from 'node:fs';
import { AesniBackend } from './aesni.js';
import type { BackendName, CryptoBackend, OpenItem, OpenResult, SealItem } from './backend.js';
import { BatchBackend } from './batch.js';
import { ENVELOPE_OVERHEAD } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import { NobleBackend } from './noble.js';
import type { NonceRange } from './nonce.js';
import { WasmBackend } from './wasm.js';

export type BackendChoice = BackendName;

/** Where `auto` switches backends; sizes are mean plaintext bytes per value. */
export interface AutoThresholds {
  /** Batches smaller than this with values up to `wasmMaxBytes` go to `wasm`. */
  readonly wasmMaxCount: number;
  readonly wasmMaxBytes: number;
  /** Batches of at least `wasmMaxCount` values up to `batchMaxBytes` go to `batch`. */
  readonly batchMaxBytes: number;
}

/** With AES-NI: wasm wins n < 4 up to 256 B; batch wins n ≥ 4 up to 2 KiB (1 KiB +30%, 4 KiB −35%). */
export const HARDWARE_AES_THRESHOLDS: AutoThresholds = { wasmMaxCount: 4, wasmMaxBytes: 256, batchMaxBytes: 2048 };
/** AES-NI masked: wasm also wins a lone 1 KiB value; batch and wasm tie near 1 KiB, aesni wins from 4 KiB. */
export const SOFTWARE_AES_THRESHOLDS: AutoThresholds = { wasmMaxCount: 4, wasmMaxBytes: 1024, batchMaxBytes: 2048 };

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
    if (count < t.wasmMaxCount) return mean <= t.wasmMaxBytes ? (this.#wasm ??= new WasmBackend()) : this.#aesni;
    return mean <= t.batchMaxBytes ? (this.#batch ??= new BatchBackend()) : this.#aesni;
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

export function createBackend(name: BackendChoice): CryptoBackend {
  switch (name) {
    case 'aesni':
      return new AesniBackend();
    case 'batch':
      return new BatchBackend();
    case 'wasm':
      return new WasmBackend();
    case 'auto':
      return new AutoBackend();
    case 'noble':
      return new NobleBackend();
    default:
      throw new RangeError(`unknown crypto backend "${String(name)}"`);
  }
}
