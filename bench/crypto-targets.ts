// The performance targets of the WASM and batch backends (the WASM crypto
// issue), measured in one run so that the ratios compare like with like:
// - `batch` seal of 64 B values in batches of 1024 against `aesni` (one
//   node:crypto call per value) and against `openssl speed -evp
//   aes-256-gcm` at 64 bytes;
// - `wasm` seal at 16 KiB against @noble/ciphers gcm.

import crypto from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';
import { AesniBackend, BatchBackend, Keystore, WasmBackend, type CryptoBackend, type SealItem } from '../src/crypto/index.js';
import { medianFields, opensslSpeed } from './lib/measure.js';
import { writeResults } from './lib/results.js';

/** openssl speed bytes/s for one block size, or NaN without openssl. */
function opensslBytesPerSec(bytes: number, seconds: number): number {
  try {
    return opensslSpeed(bytes, { seconds });
  } catch {
    return Number.NaN;
  }
}

/**
 * Calls of `fn` per CPU second of this process, over about `ms` ms of wall
 * time. CPU time, like `openssl speed` (which divides by user CPU time),
 * keeps the comparison fair on a machine shared with other work.
 */
function callsPerSec(fn: () => void, ms: number): number {
  for (let i = 0; i < 20; i++) fn();
  const start = performance.now();
  const cpu = process.cpuUsage();
  let calls = 0;
  while (performance.now() - start < ms) {
    fn();
    calls++;
  }
  const used = process.cpuUsage(cpu);
  return (calls * 1e6) / (used.user + used.system);
}

const round2 = (x: number) => Number(x.toFixed(2));

// The machine is shared and its load drifts, so each round measures every
// contender back to back (in CPU time), ratios are taken within a round, and
// the median round is reported.
export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const rounds = quick ? 3 : 5;
  const ms = quick ? 300 : 1000;
  const keystore = new Keystore();
  keystore.install(1, 'storage', crypto.randomBytes(32));
  const dek = keystore.get(1)!;
  const small: SealItem[] = Array.from({ length: 1024 }, (_, i) => ({
    plaintext: crypto.randomBytes(64),
    flag: 0,
    aad: { kind: 'storage', valueHeader: new Uint8Array(9), storeKey: Buffer.from(`bench:key:${String(i).padStart(10, '0')}`) },
  }));
  let counter = 0n;
  const sealAll = (backend: CryptoBackend) => () => {
    backend.sealBatch(dek, { prefix: new Uint8Array(4), start: counter, count: small.length }, small);
    counter += BigInt(small.length);
  };
  const aesni = new AesniBackend();
  const batch = new BatchBackend();
  const wasm = new WasmBackend();
  const key = crypto.randomBytes(32);
  const nonce = crypto.randomBytes(12);
  const aad = new Uint8Array(0);
  const big = crypto.randomBytes(16 * 1024);

  const perRound: Record<string, number>[] = [];
  for (let r = 0; r < rounds; r++) {
    const aesni64 = callsPerSec(sealAll(aesni), ms) * small.length;
    const batch64 = callsPerSec(sealAll(batch), ms) * small.length;
    const wasm64 = callsPerSec(sealAll(wasm), ms) * small.length;
    const openssl64 = opensslBytesPerSec(64, Math.max(1, Math.round(ms / 1000))) / 64;
    const wasm16k = callsPerSec(() => void wasm.aeadSeal(key, nonce, aad, big), ms) * big.length;
    const noble16k = callsPerSec(() => void gcm(key, nonce, aad).encrypt(big), ms) * big.length;
    perRound.push({
      aesni64,
      batch64,
      wasm64,
      openssl64,
      wasm16kMBps: wasm16k / 1e6,
      noble16kMBps: noble16k / 1e6,
      batchOverAesni64: batch64 / aesni64,
      batchOverOpenssl64: batch64 / openssl64,
      wasmOverNoble16k: wasm16k / noble16k,
    });
  }
  const results = {
    note: 'per CPU second: values/s for 64 B seals (1024 per batch), MB/s for 16 KiB seals; openssl speed per user CPU second; ratios within a round, median of rounds',
    median: Object.fromEntries(Object.entries(medianFields(perRound)).map(([k, v]) => [k, round2(v)])),
    rounds: perRound.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, round2(v)]))),
  };
  console.log(JSON.stringify(results.median, null, 2));
  console.log(`results: ${writeResults('crypto-targets', results)}`);
  for (const backend of [batch, wasm]) backend.close();
}
