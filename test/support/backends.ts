// Every crypto backend on the data path, for `describe.each(backends)`:
// one parameterised suite runs against each.

import { AesniBackend, BatchBackend, NobleBackend, WasmBackend, type CryptoBackend } from '../../src/crypto/index.js';

export const backends: { name: string; make: () => CryptoBackend }[] = [
  { name: 'aesni', make: () => new AesniBackend() },
  { name: 'wasm', make: () => new WasmBackend() },
  { name: 'batch', make: () => new BatchBackend() },
];
// The noble oracle (tests and benchmarks only, SPEC §3.5).
backends.push({ name: 'noble', make: () => new NobleBackend() });
