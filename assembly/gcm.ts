// AES-256-GCM seal and open of one value (NIST SP 800-38D, 96-bit IV,
// 128-bit tag) over a precomputed keystream at `ks`: E(K, J0), the tag mask,
// then E(K, J0 + 1 + i) for every block i of the value — as the bitsliced
// AES of this module (ecbEncrypt) or the `batch` backend's single
// node:crypto aes-256-ecb call produces it from the counter blocks.
//
// Constant-time rules kept in this file:
// - lengths, addresses and loop bounds are public (value and AAD lengths);
// - the tag is compared by OR-ing the XOR of all 16 bytes, then one branch on
//   the result, which is the public accept/reject outcome;
// - open checks the tag before writing any plaintext, and writes nothing on
//   failure.

import { ghashFinish, ghashReset, ghashUpdate } from './ghash';
import { TAG } from './layout';

/** out[i] = inp[i] ^ ks[i] for i < n. */
// @ts-ignore: decorator
@inline function xorInto(out: usize, inp: usize, ks: usize, n: usize): void {
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) v128.store(out + i, v128.xor(v128.load(inp + i), v128.load(ks + i)));
  for (; i < n; i++) store<u8>(out + i, load<u8>(inp + i) ^ load<u8>(ks + i));
}

/** Writes ciphertext (len bytes) then the 16-byte tag at `out`. */
export function gcmSeal(ctx: usize, aad: usize, aadLen: usize, pt: usize, len: usize, out: usize, ks: usize): void {
  xorInto(out, pt, ks + 16, len);
  ghashReset();
  ghashUpdate(ctx, aad, aadLen);
  ghashUpdate(ctx, out, len);
  ghashFinish(ctx, aadLen, len, ks, out + len);
}

/**
 * Checks the tag at ct + len; on success writes the plaintext at `out` and
 * returns 1, else returns 0 and writes nothing.
 */
export function gcmOpen(ctx: usize, aad: usize, aadLen: usize, ct: usize, len: usize, out: usize, ks: usize): i32 {
  ghashReset();
  ghashUpdate(ctx, aad, aadLen);
  ghashUpdate(ctx, ct, len);
  ghashFinish(ctx, aadLen, len, ks, TAG);
  const diff = (load<u64>(TAG) ^ load<u64>(ct + len)) | (load<u64>(TAG, 8) ^ load<u64>(ct + len, 8));
  if (diff != 0) return 0;
  xorInto(out, ct, ks + 16, len);
  return 1;
}
