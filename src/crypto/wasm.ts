// The `wasm` backend (SPEC §3.5): AES-256-GCM entirely in the WASM core —
// bitsliced AES and ctmul GHASH, constant-time (assembly/aes.ts,
// assembly/ghash.ts). The software fallback: usable whether or not OpenSSL
// has hardware AES, and the same bytes as every other backend.

import { WasmCoreBackend } from './wasm-core.js';

export class WasmBackend extends WasmCoreBackend {
  readonly name = 'wasm' as const;

  constructor() {
    super(null);
  }
}
