// The performance targets of the WASM and batch backends (the WASM crypto
// issue), measured in one run so that the ratios compare like with like:
// - `batch` seal of 64 B values in batches of 1024 against `aesni` (one
//   node:crypto call per value) and against `openssl speed -evp
//   aes-256-gcm` at 64 bytes;
// - `wasm` seal at 16 KiB against @noble/ciphers gcm.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';
import { Bench } from 'tinybench';
import { AesniBackend, BatchBackend, Keystore, WasmBackend, type CryptoBackend, type SealItem } from '../src/crypto/index.js';
import { writeResults } from './lib/results.js';

/** openssl speed bytes/s for one block size, or undefined without openssl. */
function opensslSpeed(bytes: number, seconds: number): number | undefined {
  try {
    const out = execFileSync('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', String(bytes), '-seconds', String(seconds), '-mr'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const line = out.split('\n').find((l) => l.startsWith('+F:'));
    return line === undefined ? undefined : Number(line.split(':').at(-1));
  } catch {
    return undefined;
  }
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const keystore = new Keystore();
  keystore.install(1, 'storage', crypto.randomBytes(32));
  const dek = keystore.get(1)!;
  const batchOf = (n: number, size: number): SealItem[] =>
    Array.from({ length: n }, (_, i) => ({ plaintext: crypto.randomBytes(size), flag: 0, aad: { kind: 'storage', valueHeader: new Uint8Array(9), storeKey: Buffer.from(`bench:key:${String(i).padStart(10, '0')}`) } }));
  const small = batchOf(1024, 64);
  let counter = 0n;
  const sealAll = (backend: CryptoBackend, items: SealItem[]) => () => {
    backend.sealBatch(dek, { prefix: new Uint8Array(4), start: counter, count: items.length }, items);
    counter += BigInt(items.length);
  };
  const aesni = new AesniBackend();
  const batch = new BatchBackend();
  const wasm = new WasmBackend();
  const key = crypto.randomBytes(32);
  const nonce = crypto.randomBytes(12);
  const aad = new Uint8Array(0);
  const big = crypto.randomBytes(16 * 1024);

  const bench = new Bench({ name: 'crypto-targets', time: quick ? 300 : 2000, warmupTime: quick ? 50 : 300 });
  bench.add('aesni seal 1024 x 64 B', sealAll(aesni, small));
  bench.add('batch seal 1024 x 64 B', sealAll(batch, small));
  bench.add('wasm seal 1024 x 64 B', sealAll(wasm, small));
  bench.add('wasm aeadSeal 16 KiB', () => void wasm.aeadSeal(key, nonce, aad, big));
  bench.add('noble gcm seal 16 KiB', () => void gcm(key, nonce, aad).encrypt(big));
  await bench.run();

  const perSec = (name: string) => {
    const r = bench.tasks.find((t) => t.name === name)!.result;
    return r.state === 'completed' ? 1000 / r.period : 0;
  };
  const valuesPerSec = {
    aesni64: perSec('aesni seal 1024 x 64 B') * 1024,
    batch64: perSec('batch seal 1024 x 64 B') * 1024,
    wasm64: perSec('wasm seal 1024 x 64 B') * 1024,
  };
  const bytesPerSec = { wasm16k: perSec('wasm aeadSeal 16 KiB') * 16384, noble16k: perSec('noble gcm seal 16 KiB') * 16384 };
  const openssl64 = opensslSpeed(64, quick ? 1 : 3);
  const results = {
    valuesPerSec: Object.fromEntries(Object.entries(valuesPerSec).map(([k, v]) => [k, Math.round(v)])),
    MBps16k: Object.fromEntries(Object.entries(bytesPerSec).map(([k, v]) => [k, Number((v / 1e6).toFixed(1))])),
    opensslOpsPerSec64: openssl64 === undefined ? null : Math.round(openssl64 / 64),
    ratios: {
      batchOverAesni64: Number((valuesPerSec.batch64 / valuesPerSec.aesni64).toFixed(2)),
      batchOverOpenssl64: openssl64 === undefined ? null : Number((valuesPerSec.batch64 / (openssl64 / 64)).toFixed(2)),
      wasmOverNoble16k: Number((bytesPerSec.wasm16k / bytesPerSec.noble16k).toFixed(2)),
    },
  };
  console.log(JSON.stringify(results, null, 2));
  console.log(`results: ${writeResults('crypto-targets', results)}`);
  for (const backend of [batch, wasm]) backend.close();
}
