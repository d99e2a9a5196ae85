// AES-256-GCM seal and open of one value (NIST SP 800-38D, 96-bit IV,
// 128-bit tag), with the keystream either computed here by the bitsliced AES
// (`ks` = 0) or handed in precomputed (`ks` != 0: E(K, J0) followed by
// E(K, J0 + 1 + i) for every block i, as the `batch` backend's single
// node:crypto aes-256-ecb call produces it).
//
// Constant-time rules kept in this file:
// - lengths, addresses and loop bounds are public (value and AAD lengths);
// - the tag is compared by OR-ing the XOR of all 16 bytes, then one branch on
//   the result, which is the public accept/reject outcome;
// - open checks the tag before writing any plaintext, and writes nothing on
//   failure.

import { aesEncrypt8 } from './aes';
import { ghashFinish, ghashReset, ghashUpdate } from './ghash';
import { CTR_IN, CTX_RK, J0, KS_OUT, TAG, TAG_MASK } from './layout';

/** Copies the 12-byte nonce at `nonce` into J0. */
// @ts-ignore: decorator
@inline function setNonce(nonce: usize): void {
  store<u64>(J0, load<u64>(nonce));
  store<u32>(J0, load<u32>(nonce, 8), 8);
}

/** Encrypts counter blocks ctr .. ctr+7 (of the current J0) into KS_OUT. */
function ctrPass(ctx: usize, ctr: u32): void {
  const n0 = load<u64>(J0);
  const n1 = load<u32>(J0, 8);
  for (let j: u32 = 0; j < 8; j++) {
    const b = CTR_IN + (<usize>j << 4);
    store<u64>(b, n0);
    store<u32>(b, n1, 8);
    store<u32>(b, bswap<u32>(ctr + j), 12);
  }
  aesEncrypt8(ctx + CTX_RK);
}

/** out[i] = inp[i] ^ ks[i] for i < n. */
// @ts-ignore: decorator
@inline function xorInto(out: usize, inp: usize, ks: usize, n: usize): void {
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) v128.store(out + i, v128.xor(v128.load(inp + i), v128.load(ks + i)));
  for (; i < n; i++) store<u8>(out + i, load<u8>(inp + i) ^ load<u8>(ks + i));
}

// @ts-ignore: decorator
@inline function min(a: usize, b: usize): usize {
  return a < b ? a : b;
}

/**
 * CTR-encrypts `len` bytes. With `firstDone`, KS_OUT already holds the pass
 * of counters 1..8 (J0 and the first seven data blocks).
 */
function ctrXor(ctx: usize, inp: usize, out: usize, len: usize, ks: usize, firstDone: bool): void {
  if (ks != 0) {
    xorInto(out, inp, ks + 16, len);
    return;
  }
  if (!firstDone) {
    ctrPass(ctx, 1);
    v128.store(TAG_MASK, v128.load(KS_OUT));
  }
  let n = min(len, 112);
  xorInto(out, inp, KS_OUT + 16, n);
  let pos = n;
  let ctr: u32 = 9;
  while (pos < len) {
    ctrPass(ctx, ctr);
    n = min(len - pos, 128);
    xorInto(out + pos, inp + pos, KS_OUT, n);
    pos += n;
    ctr += 8;
  }
}

/** Writes ciphertext (len bytes) then the 16-byte tag at `out`. */
export function gcmSeal(ctx: usize, nonce: usize, aad: usize, aadLen: usize, pt: usize, len: usize, out: usize, ks: usize): void {
  setNonce(nonce);
  ctrXor(ctx, pt, out, len, ks, false);
  const mask = ks != 0 ? ks : TAG_MASK;
  ghashReset();
  ghashUpdate(ctx, aad, aadLen);
  ghashUpdate(ctx, out, len);
  ghashFinish(ctx, aadLen, len, mask, out + len);
}

/**
 * Checks the tag at ct + len; on success writes the plaintext at `out` and
 * returns 1, else returns 0 and writes nothing.
 */
export function gcmOpen(ctx: usize, nonce: usize, aad: usize, aadLen: usize, ct: usize, len: usize, out: usize, ks: usize): i32 {
  setNonce(nonce);
  let mask = ks;
  if (ks == 0) {
    ctrPass(ctx, 1);
    v128.store(TAG_MASK, v128.load(KS_OUT));
    mask = TAG_MASK;
  }
  ghashReset();
  ghashUpdate(ctx, aad, aadLen);
  ghashUpdate(ctx, ct, len);
  ghashFinish(ctx, aadLen, len, mask, TAG);
  const diff = (load<u64>(TAG) ^ load<u64>(ct + len)) | (load<u64>(TAG, 8) ^ load<u64>(ct + len, 8));
  if (diff != 0) return 0;
  ctrXor(ctx, ct, out, len, ks, true);
  return 1;
}
