// AES-256 (FIPS 197) key schedule and encryption, bitsliced, 8 blocks per
// pass on WASM SIMD.
//
// Technique: bitslicing as in BearSSL aes_ct64 (T. Pornin) and Käsper–
// Schwabe ("Faster and timing-attack resistant AES-GCM", CHES 2009), on
// 128-bit words: 8 blocks are transposed (the aes_ct64 swap network, on
// v128) so that word i holds bit i of every state byte of all 8 blocks, byte
// k of the word being state byte k and bit j within it block j. One pass of
// the round function then encrypts 8 blocks; the S-box is the Boyar–Peralta
// circuit (eprint 2009/191, "A new combinational logic minimization
// technique with applications to cryptology"); ShiftRows and the row
// rotations of MixColumns are constant byte shuffles, one per word, which
// is what fixslicing buys on 64-bit words.
//
// Constant-time rules kept in this file:
// - no table lookup at all: the S-box is boolean gates on whole words;
// - no branch and no memory address depends on the key or the data: every
//   loop bound and every address is a constant or a public length;
// - the key schedule runs SubWord through the same bitsliced circuit and
//   zeroes its scratch words before returning.

import { KEY_WORDS, Q } from './layout';

const M1: v128 = i64x2(0x5555555555555555, 0x5555555555555555);
const M1H: v128 = i64x2(0xaaaaaaaaaaaaaaaa, 0xaaaaaaaaaaaaaaaa);
const M2: v128 = i64x2(0x3333333333333333, 0x3333333333333333);
const M2H: v128 = i64x2(0xcccccccccccccccc, 0xcccccccccccccccc);
const M4: v128 = i64x2(0x0f0f0f0f0f0f0f0f, 0x0f0f0f0f0f0f0f0f);
const M4H: v128 = i64x2(0xf0f0f0f0f0f0f0f0, 0xf0f0f0f0f0f0f0f0);

// @ts-ignore: decorator
@inline function swapn(pa: usize, pb: usize, lo: v128, hi: v128, s: i32): void {
  const a = v128.load(pa);
  const b = v128.load(pb);
  v128.store(pa, v128.or(v128.and(a, lo), i64x2.shl(v128.and(b, lo), s)));
  v128.store(pb, v128.or(i64x2.shr_u(v128.and(a, hi), s), v128.and(b, hi)));
}

/** Transposes the 8 words at Q in place: blocks to bit planes and back. */
function ortho(): void {
  swapn(Q, Q + 16, M1, M1H, 1);
  swapn(Q + 32, Q + 48, M1, M1H, 1);
  swapn(Q + 64, Q + 80, M1, M1H, 1);
  swapn(Q + 96, Q + 112, M1, M1H, 1);
  swapn(Q, Q + 32, M2, M2H, 2);
  swapn(Q + 16, Q + 48, M2, M2H, 2);
  swapn(Q + 64, Q + 96, M2, M2H, 2);
  swapn(Q + 80, Q + 112, M2, M2H, 2);
  swapn(Q, Q + 64, M4, M4H, 4);
  swapn(Q + 16, Q + 80, M4, M4H, 4);
  swapn(Q + 32, Q + 96, M4, M4H, 4);
  swapn(Q + 48, Q + 112, M4, M4H, 4);
}

/**
 * SubBytes then ShiftRows on the state (the S-box is the Boyar–Peralta
 * circuit; ShiftRows is one byte shuffle per word, fused into the stores).
 */
function subBytesShiftRows(): void {
  // x0 is the high bit, x7 the low bit, as in the paper.
  const x0 = v128.load(Q + 112);
  const x1 = v128.load(Q + 96);
  const x2 = v128.load(Q + 80);
  const x3 = v128.load(Q + 64);
  const x4 = v128.load(Q + 48);
  const x5 = v128.load(Q + 32);
  const x6 = v128.load(Q + 16);
  const x7 = v128.load(Q);

  // Top linear transformation.
  const y14 = v128.xor(x3, x5);
  const y13 = v128.xor(x0, x6);
  const y9 = v128.xor(x0, x3);
  const y8 = v128.xor(x0, x5);
  const t0 = v128.xor(x1, x2);
  const y1 = v128.xor(t0, x7);
  const y4 = v128.xor(y1, x3);
  const y12 = v128.xor(y13, y14);
  const y2 = v128.xor(y1, x0);
  const y5 = v128.xor(y1, x6);
  const y3 = v128.xor(y5, y8);
  const t1 = v128.xor(x4, y12);
  const y15 = v128.xor(t1, x5);
  const y20 = v128.xor(t1, x1);
  const y6 = v128.xor(y15, x7);
  const y10 = v128.xor(y15, t0);
  const y11 = v128.xor(y20, y9);
  const y7 = v128.xor(x7, y11);
  const y17 = v128.xor(y10, y11);
  const y19 = v128.xor(y10, y8);
  const y16 = v128.xor(t0, y11);
  const y21 = v128.xor(y13, y16);
  const y18 = v128.xor(x0, y16);

  // Non-linear section.
  const t2 = v128.and(y12, y15);
  const t3 = v128.and(y3, y6);
  const t4 = v128.xor(t3, t2);
  const t5 = v128.and(y4, x7);
  const t6 = v128.xor(t5, t2);
  const t7 = v128.and(y13, y16);
  const t8 = v128.and(y5, y1);
  const t9 = v128.xor(t8, t7);
  const t10 = v128.and(y2, y7);
  const t11 = v128.xor(t10, t7);
  const t12 = v128.and(y9, y11);
  const t13 = v128.and(y14, y17);
  const t14 = v128.xor(t13, t12);
  const t15 = v128.and(y8, y10);
  const t16 = v128.xor(t15, t12);
  const t17 = v128.xor(t4, t14);
  const t18 = v128.xor(t6, t16);
  const t19 = v128.xor(t9, t14);
  const t20 = v128.xor(t11, t16);
  const t21 = v128.xor(t17, y20);
  const t22 = v128.xor(t18, y19);
  const t23 = v128.xor(t19, y21);
  const t24 = v128.xor(t20, y18);

  const t25 = v128.xor(t21, t22);
  const t26 = v128.and(t21, t23);
  const t27 = v128.xor(t24, t26);
  const t28 = v128.and(t25, t27);
  const t29 = v128.xor(t28, t22);
  const t30 = v128.xor(t23, t24);
  const t31 = v128.xor(t22, t26);
  const t32 = v128.and(t31, t30);
  const t33 = v128.xor(t32, t24);
  const t34 = v128.xor(t23, t33);
  const t35 = v128.xor(t27, t33);
  const t36 = v128.and(t24, t35);
  const t37 = v128.xor(t36, t34);
  const t38 = v128.xor(t27, t36);
  const t39 = v128.and(t29, t38);
  const t40 = v128.xor(t25, t39);

  const t41 = v128.xor(t40, t37);
  const t42 = v128.xor(t29, t33);
  const t43 = v128.xor(t29, t40);
  const t44 = v128.xor(t33, t37);
  const t45 = v128.xor(t42, t41);
  const z0 = v128.and(t44, y15);
  const z1 = v128.and(t37, y6);
  const z2 = v128.and(t33, x7);
  const z3 = v128.and(t43, y16);
  const z4 = v128.and(t40, y1);
  const z5 = v128.and(t29, y7);
  const z6 = v128.and(t42, y11);
  const z7 = v128.and(t45, y17);
  const z8 = v128.and(t41, y10);
  const z9 = v128.and(t44, y12);
  const z10 = v128.and(t37, y3);
  const z11 = v128.and(t33, y4);
  const z12 = v128.and(t43, y13);
  const z13 = v128.and(t40, y5);
  const z14 = v128.and(t29, y2);
  const z15 = v128.and(t42, y9);
  const z16 = v128.and(t45, y14);
  const z17 = v128.and(t41, y8);

  // Bottom linear transformation.
  const t46 = v128.xor(z15, z16);
  const t47 = v128.xor(z10, z11);
  const t48 = v128.xor(z5, z13);
  const t49 = v128.xor(z9, z10);
  const t50 = v128.xor(z2, z12);
  const t51 = v128.xor(z2, z5);
  const t52 = v128.xor(z7, z8);
  const t53 = v128.xor(z0, z3);
  const t54 = v128.xor(z6, z7);
  const t55 = v128.xor(z16, z17);
  const t56 = v128.xor(z12, t48);
  const t57 = v128.xor(t50, t53);
  const t58 = v128.xor(z4, t46);
  const t59 = v128.xor(z3, t54);
  const t60 = v128.xor(t46, t57);
  const t61 = v128.xor(z14, t57);
  const t62 = v128.xor(t52, t58);
  const t63 = v128.xor(t49, t58);
  const t64 = v128.xor(z4, t59);
  const t65 = v128.xor(t61, t62);
  const t66 = v128.xor(z1, t63);
  const s0 = v128.xor(t59, t63);
  const s6 = v128.xor(t56, v128.not(t62));
  const s7 = v128.xor(t48, v128.not(t60));
  const t67 = v128.xor(t64, t65);
  const s3 = v128.xor(t53, t66);
  const s4 = v128.xor(t51, t66);
  const s5 = v128.xor(t47, t65);
  const s1 = v128.xor(t64, v128.not(s3));
  const s2 = v128.xor(t55, v128.not(t67));

  v128.store(Q + 112, shiftRows(s0));
  v128.store(Q + 96, shiftRows(s1));
  v128.store(Q + 80, shiftRows(s2));
  v128.store(Q + 64, shiftRows(s3));
  v128.store(Q + 48, shiftRows(s4));
  v128.store(Q + 32, shiftRows(s5));
  v128.store(Q + 16, shiftRows(s6));
  v128.store(Q, shiftRows(s7));
}

// State byte k is row k & 3 of column k >> 2; ShiftRows moves row r left by r.
// @ts-ignore: decorator
@inline function shiftRows(x: v128): v128 {
  return i8x16.shuffle(x, x, 0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11);
}

// Row r of every column takes row r + 1 (and r + 2).
// @ts-ignore: decorator
@inline function rot1(x: v128): v128 {
  return i8x16.shuffle(x, x, 1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
}

// @ts-ignore: decorator
@inline function rot2(x: v128): v128 {
  return i8x16.shuffle(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
}

/** MixColumns then AddRoundKey with the round key at `rk`. */
function mixColumnsAddRoundKey(rk: usize): void {
  const q0 = v128.load(Q);
  const q1 = v128.load(Q + 16);
  const q2 = v128.load(Q + 32);
  const q3 = v128.load(Q + 48);
  const q4 = v128.load(Q + 64);
  const q5 = v128.load(Q + 80);
  const q6 = v128.load(Q + 96);
  const q7 = v128.load(Q + 112);
  const r0 = rot1(q0);
  const r1 = rot1(q1);
  const r2 = rot1(q2);
  const r3 = rot1(q3);
  const r4 = rot1(q4);
  const r5 = rot1(q5);
  const r6 = rot1(q6);
  const r7 = rot1(q7);
  const a0 = v128.xor(q0, r0);
  const a1 = v128.xor(q1, r1);
  const a2 = v128.xor(q2, r2);
  const a3 = v128.xor(q3, r3);
  const a4 = v128.xor(q4, r4);
  const a5 = v128.xor(q5, r5);
  const a6 = v128.xor(q6, r6);
  const a7 = v128.xor(q7, r7);
  v128.store(Q, v128.xor(v128.xor(a7, r0), v128.xor(rot2(a0), v128.load(rk))));
  v128.store(Q + 16, v128.xor(v128.xor(a0, a7), v128.xor(v128.xor(r1, rot2(a1)), v128.load(rk, 16))));
  v128.store(Q + 32, v128.xor(v128.xor(a1, r2), v128.xor(rot2(a2), v128.load(rk, 32))));
  v128.store(Q + 48, v128.xor(v128.xor(a2, a7), v128.xor(v128.xor(r3, rot2(a3)), v128.load(rk, 48))));
  v128.store(Q + 64, v128.xor(v128.xor(a3, a7), v128.xor(v128.xor(r4, rot2(a4)), v128.load(rk, 64))));
  v128.store(Q + 80, v128.xor(v128.xor(a4, r5), v128.xor(rot2(a5), v128.load(rk, 80))));
  v128.store(Q + 96, v128.xor(v128.xor(a5, r6), v128.xor(rot2(a6), v128.load(rk, 96))));
  v128.store(Q + 112, v128.xor(v128.xor(a6, r7), v128.xor(rot2(a7), v128.load(rk, 112))));
}

// @ts-ignore: decorator
@inline function addRoundKey(rk: usize): void {
  for (let i: usize = 0; i < 128; i += 16) v128.store(Q + i, v128.xor(v128.load(Q + i), v128.load(rk + i)));
}

/** Loads 8 blocks into the state, as bit planes. */
function loadBlocks(src: usize): void {
  for (let i: usize = 0; i < 128; i += 16) v128.store(Q + i, v128.load(src + i));
  ortho();
}

function storeBlocks(dst: usize): void {
  ortho();
  for (let i: usize = 0; i < 128; i += 16) v128.store(dst + i, v128.load(Q + i));
}

/** Encrypts the 8 blocks at `src` into `dst` under round keys `rk`. */
export function aesEncrypt8(rk: usize, src: usize, dst: usize): void {
  loadBlocks(src);
  addRoundKey(rk);
  for (let r: usize = 1; r < 14; r++) {
    subBytesShiftRows();
    mixColumnsAddRoundKey(rk + (r << 7));
  }
  subBytesShiftRows();
  addRoundKey(rk + (14 << 7));
  storeBlocks(dst);
}

function zeroState(): void {
  for (let p = Q; p < Q + 128; p += 16) v128.store(p, i64x2.splat(0));
}

// SubWord through the bitsliced S-box. The word's bytes go to state bytes
// 0, 5, 10, 15 of block 0, which ShiftRows gathers into bytes 0..3.
function subWord(x: u32): u32 {
  zeroState();
  store<u8>(Q, <u8>x);
  store<u8>(Q, <u8>(x >> 8), 5);
  store<u8>(Q, <u8>(x >> 16), 10);
  store<u8>(Q, <u8>(x >> 24), 15);
  ortho();
  subBytesShiftRows();
  ortho();
  return load<u32>(Q);
}

/**
 * Expands the 32-byte key at `key` into 15 bitsliced round keys at `rk`
 * (8 v128 words each: the round key as all 8 blocks, as bit planes).
 */
export function aesKeySchedule(rk: usize, key: usize): void {
  const w = KEY_WORDS;
  for (let i: usize = 0; i < 8; i++) store<u32>(w + (i << 2), load<u32>(key + (i << 2)));
  let tmp = load<u32>(w + 28);
  let rcon: u32 = 1;
  for (let i: usize = 8; i < 60; i++) {
    // Branches on the word index only.
    if ((i & 7) == 0) {
      tmp = subWord(rotr<u32>(tmp, 8)) ^ rcon;
      rcon = (rcon << 1) ^ (0x11b & -(rcon >> 7));
    } else if ((i & 7) == 4) {
      tmp = subWord(tmp);
    }
    tmp ^= load<u32>(w + ((i - 8) << 2));
    store<u32>(w + (i << 2), tmp);
  }
  for (let r: usize = 0; r < 15; r++) {
    const k = v128.load(w + (r << 4));
    for (let i: usize = 0; i < 128; i += 16) v128.store(Q + i, k);
    ortho();
    for (let i: usize = 0; i < 128; i += 16) v128.store(rk + (r << 7) + i, v128.load(Q + i));
  }
  for (let i: usize = 0; i < 240; i += 16) v128.store(w + i, i64x2.splat(0));
  zeroState();
}
