// The `batch` backend (SPEC §3.5): many values per call. One node:crypto
// aes-256-ecb call per batch (per key) turns every counter block of the
// batch — E(K, J0) tag masks and the CTR keystream of every value — into
// AES output, with AES-NI when OpenSSL has it; the WASM core then does the
// XOR, GHASH, AAD assembly and envelope framing over the whole batch. This
// removes the per-call cost that dominates node:crypto on small values.
//
// ECB here only ever encrypts counter blocks (nonce ‖ counter), never data.

import crypto from 'node:crypto';
import { WasmCoreBackend, type KeystreamFn } from './wasm-core.js';

/** Encrypts the counter blocks in place with one ECB call. */
const ecbKeystream: KeystreamFn = (key, mem, offset, length) => {
  const cipher = crypto.createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
  const out = cipher.update(mem.subarray(offset, offset + length));
  mem.set(out, offset);
  out.fill(0);
  cipher.final();
};

export class BatchBackend extends WasmCoreBackend {
  readonly name = 'batch' as const;

  constructor() {
    super(ecbKeystream);
  }
}
