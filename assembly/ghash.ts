// GHASH (NIST SP 800-38D §6.4) by carry-less multiplication built from
// ordinary integer multiplies.
//
// Technique: BearSSL ghash_ctmul64 (T. Pornin). Operands are split into four
// masked copies holding every fourth bit, so the carries of an integer
// product fall into the unused bit positions and are masked away; the high
// half of a 64x64 product comes from multiplying the bit-reversed operands;
// the 128x128 product is Karatsuba over 64-bit halves; reduction modulo
// x^128 + x^7 + x^2 + x + 1 is shifts and XORs. Four blocks are absorbed per
// reduction (Y' = (Y^X1)H^4 ^ X2 H^3 ^ X3 H^2 ^ X4 H) with H..H^4 kept
// pre-split in the key context. Byte and bit reversals run on v128 (a
// constant byte shuffle, masked shifts): WASM has no byte-swap instruction.
//
// Constant-time rules kept in this file:
// - no table lookup: the only memory read depending on a key is the fixed
//   H-power table, read at constant offsets;
// - no branch or address depends on H or the data; loop bounds are public
//   lengths; integer multiplies are constant-time on the targets we run on
//   (x86-64, AArch64).

import { CTX_HT, HPOW_BYTES, PENDING } from './layout';

const K1: u64 = 0x1111111111111111;
const K2: u64 = 0x2222222222222222;
const K4: u64 = 0x4444444444444444;
const K8: u64 = 0x8888888888888888;

/** The running GHASH value (y1 = bytes 0..7 big-endian, y0 = bytes 8..15). */
let gy1: u64 = 0;
let gy0: u64 = 0;

// Unreduced accumulators of the current group of products.
let a0: u64 = 0;
let a1: u64 = 0;
let a2: u64 = 0;
let b0: u64 = 0;
let b1: u64 = 0;
let b2: u64 = 0;


// Low 64 bits of the carry-less product of x and the pre-split operand at p.
// @ts-ignore: decorator
@inline function bmul(x: u64, p: usize): u64 {
  const x0 = x & K1;
  const x1 = x & K2;
  const x2 = x & K4;
  const x3 = x & K8;
  const y0 = load<u64>(p);
  const y1 = load<u64>(p, 8);
  const y2 = load<u64>(p, 16);
  const y3 = load<u64>(p, 24);
  const z0 = (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1);
  const z1 = (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2);
  const z2 = (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3);
  const z3 = (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0);
  return (z0 & K1) | (z1 & K2) | (z2 & K4) | (z3 & K8);
}

const M55: v128 = i64x2(0x5555555555555555, 0x5555555555555555);
const M33: v128 = i64x2(0x3333333333333333, 0x3333333333333333);
const M0F: v128 = i64x2(0x0f0f0f0f0f0f0f0f, 0x0f0f0f0f0f0f0f0f);

/** Byte-reverses each 64-bit lane (WASM has no byte-swap instruction). */
// @ts-ignore: decorator
@inline function bswap2(v: v128): v128 {
  return i8x16.shuffle(v, v, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
}

/** Reverses the 64 bits of each lane: bits within bytes by masked swaps, then bytes. */
// @ts-ignore: decorator
@inline function rev2(v: v128): v128 {
  v = v128.or(i64x2.shl(v128.and(v, M55), 1), v128.and(i64x2.shr_u(v, 1), M55));
  v = v128.or(i64x2.shl(v128.and(v, M33), 2), v128.and(i64x2.shr_u(v, 2), M33));
  v = v128.or(i64x2.shl(v128.and(v, M0F), 4), v128.and(i64x2.shr_u(v, 4), M0F));
  return bswap2(v);
}

/** [hi, lo] as one v128 (lane 0 = hi). */
// @ts-ignore: decorator
@inline function pair(hi: u64, lo: u64): v128 {
  return i64x2.replace_lane(i64x2.splat(hi), 1, lo);
}

/** The block at p as [x1, x0]: its two big-endian halves. */
// @ts-ignore: decorator
@inline function block(p: usize): v128 {
  return bswap2(v128.load(p));
}

// @ts-ignore: decorator
@inline function rev64(x: u64): u64 {
  x = ((x & 0x5555555555555555) << 1) | ((x >> 1) & 0x5555555555555555);
  x = ((x & 0x3333333333333333) << 2) | ((x >> 2) & 0x3333333333333333);
  x = ((x & 0x0f0f0f0f0f0f0f0f) << 4) | ((x >> 4) & 0x0f0f0f0f0f0f0f0f);
  return bswap<u64>(x);
}

// Adds the unreduced product x * (power at hp) to the accumulators, x being
// [x1, x0].
// @ts-ignore: decorator
@inline function mulAcc(x: v128, hp: usize): void {
  const xr = rev2(x);
  const x1 = <u64>i64x2.extract_lane(x, 0);
  const x0 = <u64>i64x2.extract_lane(x, 1);
  const x1r = <u64>i64x2.extract_lane(xr, 0);
  const x0r = <u64>i64x2.extract_lane(xr, 1);
  a0 ^= bmul(x0, hp);
  a1 ^= bmul(x1, hp + 32);
  a2 ^= bmul(x0 ^ x1, hp + 64);
  b0 ^= bmul(x0r, hp + 96);
  b1 ^= bmul(x1r, hp + 128);
  b2 ^= bmul(x0r ^ x1r, hp + 160);
}

// Reduces the accumulators into (gy1, gy0) and clears them.
// @ts-ignore: decorator
@inline function reduce(): void {
  const z2 = a2 ^ a0 ^ a1;
  const bh = i64x2.shr_u(rev2(pair(b0, b1)), 1);
  const z0h = <u64>i64x2.extract_lane(bh, 0);
  const z1h = <u64>i64x2.extract_lane(bh, 1);
  const z2h = rev64(b2 ^ b0 ^ b1) >> 1;
  let v0 = a0;
  let v1 = z0h ^ z2;
  let v2 = a1 ^ z2h;
  let v3 = z1h;
  v3 = (v3 << 1) | (v2 >> 63);
  v2 = (v2 << 1) | (v1 >> 63);
  v1 = (v1 << 1) | (v0 >> 63);
  v0 = v0 << 1;
  v2 ^= v0 ^ (v0 >> 1) ^ (v0 >> 2) ^ (v0 >> 7);
  v1 ^= (v0 << 63) ^ (v0 << 62) ^ (v0 << 57);
  v3 ^= v1 ^ (v1 >> 1) ^ (v1 >> 2) ^ (v1 >> 7);
  v2 ^= (v1 << 63) ^ (v1 << 62) ^ (v1 << 57);
  gy0 = v2;
  gy1 = v3;
  a0 = 0;
  a1 = 0;
  a2 = 0;
  b0 = 0;
  b1 = 0;
  b2 = 0;
}

// @ts-ignore: decorator
@inline function split(dst: usize, x: u64): void {
  store<u64>(dst, x & K1);
  store<u64>(dst, x & K2, 8);
  store<u64>(dst, x & K4, 16);
  store<u64>(dst, x & K8, 24);
}

function storePower(dst: usize, h1: u64, h0: u64): void {
  const h0r = rev64(h0);
  const h1r = rev64(h1);
  split(dst, h0);
  split(dst + 32, h1);
  split(dst + 64, h0 ^ h1);
  split(dst + 96, h0r);
  split(dst + 128, h1r);
  split(dst + 160, h0r ^ h1r);
}

/** Fills the context's H-power table from the 16-byte H at `h`. */
export function ghashSetKey(ctx: usize, h: usize): void {
  const hv = block(h);
  const h1 = <u64>i64x2.extract_lane(hv, 0);
  const h0 = <u64>i64x2.extract_lane(hv, 1);
  const t = ctx + CTX_HT;
  storePower(t, h1, h0);
  let p1 = h1;
  let p0 = h0;
  for (let k: usize = 1; k < 4; k++) {
    mulAcc(pair(p1, p0), t);
    reduce();
    p1 = gy1;
    p0 = gy0;
    storePower(t + k * HPOW_BYTES, p1, p0);
  }
  gy1 = 0;
  gy0 = 0;
}

/** Blocks waiting in PENDING (0..3 between calls). */
let pending: usize = 0;

export function ghashReset(): void {
  gy1 = 0;
  gy0 = 0;
  pending = 0;
}

// Absorbs the k (1..4) blocks at q with one reduction:
// Y' = (Y ^ X1) H^k ^ X2 H^(k-1) ^ ... ^ Xk H.
function absorb(t: usize, q: usize, k: usize): void {
  mulAcc(v128.xor(pair(gy1, gy0), block(q)), t + (k - 1) * HPOW_BYTES);
  for (let i: usize = 1; i < k; i++) mulAcc(block(q + (i << 4)), t + (k - 1 - i) * HPOW_BYTES);
  reduce();
}

/**
 * Absorbs `len` bytes at `p`, the last partial block zero-padded. Blocks
 * are gathered across calls (AAD, ciphertext, length block) so that every
 * reduction covers four blocks.
 */
export function ghashUpdate(ctx: usize, p: usize, len: usize): void {
  const t = ctx + CTX_HT;
  const end = p + len;
  while (p < end) {
    if (pending == 0 && end - p >= 64) {
      mulAcc(v128.xor(pair(gy1, gy0), block(p)), t + 3 * HPOW_BYTES);
      mulAcc(block(p + 16), t + 2 * HPOW_BYTES);
      mulAcc(block(p + 32), t + HPOW_BYTES);
      mulAcc(block(p + 48), t);
      reduce();
      p += 64;
      continue;
    }
    const dst = PENDING + (pending << 4);
    if (end - p >= 16) {
      v128.store(dst, v128.load(p));
      p += 16;
    } else {
      v128.store(dst, i64x2.splat(0));
      memory.copy(dst, p, end - p);
      p = end;
    }
    if (++pending == 4) {
      absorb(t, PENDING, 4);
      pending = 0;
    }
  }
}

/** Absorbs the length block and writes GHASH ^ mask (16 bytes) to `out`. */
export function ghashFinish(ctx: usize, aadLen: usize, ctLen: usize, mask: usize, out: usize): void {
  v128.store(PENDING + (pending << 4), bswap2(pair(<u64>aadLen << 3, <u64>ctLen << 3)));
  absorb(ctx + CTX_HT, PENDING, pending + 1);
  pending = 0;
  v128.store(out, v128.xor(bswap2(pair(gy1, gy0)), v128.load(mask)));
  gy1 = 0;
  gy0 = 0;
}
