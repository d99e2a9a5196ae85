// Every crypto backend on the data path, for `describe.each(backends)`:
// one parameterised suite runs against each.

import { AesniBackend, AutoBackend, BatchBackend, NobleBackend, WasmBackend, type CryptoBackend } from '../../src/crypto/index.js';

export const backends: { name: string; make: () => CryptoBackend }[] = [
  { name: 'aesni', make: () => new AesniBackend() },
  { name: 'wasm', make: () => new WasmBackend() },
  { name: 'batch', make: () => new BatchBackend() },
];
// The noble oracle (tests and benchmarks only, SPEC §3.5).
backends.push({ name: 'noble', make: () => new NobleBackend() });
// `auto` with its thresholds lowered so that every one of its choices is exercised by small test batches.
backends.push({ name: 'auto', make: () => new AutoBackend({ wasmMaxCount: 1, wasmMaxBytes: 64, batchMinCount: 2, batchMaxBytes: 512 }) });
