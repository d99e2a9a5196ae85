// sealkv WASM crypto core: the exported ABI (SPEC §3.1, §3.2, §3.5).
//
// Keys live in context slots (0 .. MAX_CTX-1) of CTX_BYTES each; a slot holds
// the bitsliced AES-256 round keys and the GHASH H-power table. Batches are
// described by fixed-size records in the I/O area. A batch is three steps:
// writeCounters lays out the counter blocks of every value, AES-ECB turns
// them into keystream in place (ecbEncrypt here, for the `wasm` backend, or
// one node:crypto call, for `batch`), then one sealBatch or openBatch call
// does envelope headers, AAD assembly, flag checks, CTR XOR and GHASH for
// every value. Packing the counter blocks of all values into shared 8-block
// AES passes is what makes small values cheap.
//
// Seal batch header (HDR_BYTES, at `hdr`):
//   0 u32 slot   4 u32 key_id   8 [4] nonce prefix (node_id ‖ local_epoch)
//   16 u64 first write_count   24 u32 AAD scratch address (15 + max key)
// Seal record i (REC_BYTES, at recs + i * REC_BYTES):
//   0 u32 kind<<8 | flag (kind 0 storage, 1 raft)   4 plaintext addr
//   8 plaintext len   12 value-header addr (9 B)   16 store-key addr
//   20 store-key len   24 envelope out addr (len + 34 bytes)
//   28 keystream addr ((1 + ceil(len / 16)) blocks, see writeCounters)
// Open record i: 0 u32 kind   4 envelope addr   8 envelope len
//   12 value-header addr   16 store-key addr   20 store-key len
//   24 plaintext out addr (len - 34 bytes)   28 keystream addr   32 slot
//   (NO_SLOT: no DEK for this key_id); status byte i goes to `status`.
//
// Constant-time rules: see aes.ts, ghash.ts and gcm.ts. This file branches
// only on public framing (lengths, version and flag bytes, record kinds) and
// on the accept/reject outcome of a tag check.

import { aesEncrypt8, aesKeySchedule } from './aes';
import { gcmOpen, gcmSeal } from './gcm';
import { ghashSetKey } from './ghash';
import { CTR_IN, CTX_BASE, CTX_BYTES, IO_BASE, KEY_WORDS, KS_OUT, MAX_CTX, SCRATCH, SCRATCH_BYTES } from './layout';

/** ABI version of the exported functions; bumped on any incompatible change. */
export function abiVersion(): u32 {
  return 3;
}

export const HDR_BYTES: u32 = 32;
export const REC_BYTES: u32 = 40;
export const NO_SLOT: u32 = 0xffffffff;

export const STATUS_OK: u8 = 0;
export const STATUS_SHORT: u8 = 1;
export const STATUS_VERSION: u8 = 2;
export const STATUS_FLAG: u8 = 3;
export const STATUS_NO_KEY: u8 = 4;
export const STATUS_INTEGRITY: u8 = 5;

const VERSION: u8 = 0x01;
const RAFT_TAG: u8 = 0x52;
const HEADER: usize = 18;
const OVERHEAD: usize = 34;
const VALUE_HEADER: usize = 9;

export function ioBase(): usize {
  return IO_BASE;
}

/** Where slotSetKey's caller puts the 32-byte key (zeroed by slotSetKey). */
export function keyInput(): usize {
  return KEY_WORDS;
}

export function maxSlots(): u32 {
  return MAX_CTX;
}

// @ts-ignore: decorator
@inline function slotAddr(slot: u32): usize {
  return CTX_BASE + <usize>(slot % MAX_CTX) * CTX_BYTES;
}

function wipe(p: usize, n: usize): void {
  memory.fill(p, 0, n);
}

/** Zeroes the AES state and blocks, the tag and the pending GHASH blocks. */
function wipeScratch(): void {
  wipe(SCRATCH, KEY_WORDS - SCRATCH);
}

/** Zeroes all scratch memory (every call does it before returning; for callers recovering from a trap). */
export function scratchClear(): void {
  wipe(SCRATCH, SCRATCH_BYTES);
}

/** Installs a 32-byte key: round keys and H = E(K, 0^128). */
export function slotSetKey(slot: u32, key: usize): void {
  const ctx = slotAddr(slot);
  aesKeySchedule(ctx, key);
  wipe(CTR_IN, 128);
  aesEncrypt8(ctx, CTR_IN, KS_OUT);
  ghashSetKey(ctx, KS_OUT);
  wipeScratch();
}

/**
 * Encrypts `blocks` 16-byte blocks at `p` in place (AES-256-ECB under the
 * slot's key), 8 per bitsliced pass: turns counter blocks into keystream.
 */
export function ecbEncrypt(slot: u32, p: usize, blocks: u32): void {
  const rk = slotAddr(slot);
  let n = <usize>blocks << 4;
  for (; n >= 128; n -= 128, p += 128) aesEncrypt8(rk, p, p);
  if (n > 0) {
    wipe(CTR_IN, 128);
    memory.copy(CTR_IN, p, n);
    aesEncrypt8(rk, CTR_IN, KS_OUT);
    memory.copy(p, KS_OUT, n);
  }
  wipeScratch();
}

/** Zeroes a slot and all scratch memory. */
export function slotClear(slot: u32): void {
  wipe(slotAddr(slot), CTX_BYTES);
  wipe(SCRATCH, SCRATCH_BYTES);
}

/**
 * AES-256-GCM seal: ciphertext then tag at `out`; `ks` is the keystream of
 * the counter blocks counterRun laid out for the nonce.
 */
export function aeadSeal(slot: u32, aad: usize, aadLen: usize, pt: usize, len: usize, out: usize, ks: usize): void {
  gcmSeal(slotAddr(slot), aad, aadLen, pt, len, out, ks);
  wipeScratch();
}

/** AES-256-GCM open of ct (len bytes) ‖ tag; 1 and plaintext at `out`, or 0. */
export function aeadOpen(slot: u32, aad: usize, aadLen: usize, ct: usize, len: usize, out: usize, ks: usize): i32 {
  const ok = gcmOpen(slotAddr(slot), aad, aadLen, ct, len, out, ks);
  wipeScratch();
  return ok;
}

// Writes the storage or raft AAD for an envelope whose first 6 bytes
// (version, flag, key_id) are at `env`; returns its length.
// @ts-ignore: decorator
@inline function buildAad(dst: usize, raft: bool, env: usize, vh: usize, sk: usize, skLen: usize): usize {
  if (raft) {
    store<u8>(dst, RAFT_TAG);
    store<u8>(dst, VERSION, 1);
    store<u32>(dst, load<u32>(env, 2), 2);
    return 6;
  }
  store<u32>(dst, load<u32>(env));
  store<u16>(dst, load<u16>(env, 4), 4);
  memory.copy(dst + 6, vh, VALUE_HEADER);
  memory.copy(dst + 6 + VALUE_HEADER, sk, skLen);
  return 6 + VALUE_HEADER + skLen;
}

// Writes nonce i of the batch (prefix ‖ BE64(start + i)) at `dst`.
// @ts-ignore: decorator
@inline function writeNonce(dst: usize, hdr: usize, i: u32): void {
  store<u32>(dst, load<u32>(hdr, 8));
  store<u64>(dst, bswap<u64>(load<u64>(hdr, 16) + <u64>i), 4);
}

/**
 * Seals `count` values into envelopes, each over the keystream at its
 * record's keystream address (see writeCounters).
 */
export function sealBatch(count: u32, hdr: usize, recs: usize): void {
  const ctx = slotAddr(load<u32>(hdr));
  const keyIdBe = bswap<u32>(load<u32>(hdr, 4));
  const aad = <usize>load<u32>(hdr, 24);
  for (let i: u32 = 0; i < count; i++) {
    const r = recs + <usize>i * REC_BYTES;
    const kindFlag = load<u32>(r);
    const len = <usize>load<u32>(r, 8);
    const env = <usize>load<u32>(r, 24);
    store<u8>(env, VERSION);
    store<u8>(env, <u8>kindFlag, 1);
    store<u32>(env, keyIdBe, 2);
    writeNonce(env + 6, hdr, i);
    const aadLen = buildAad(aad, (kindFlag >> 8) == 1, env, load<u32>(r, 12), load<u32>(r, 16), load<u32>(r, 20));
    gcmSeal(ctx, aad, aadLen, load<u32>(r, 4), len, env + HEADER, load<u32>(r, 28));
  }
  wipeScratch();
}

/** Checks an envelope's framing; STATUS_OK or the failure. */
// @ts-ignore: decorator
@inline function frameStatus(env: usize, envLen: usize, raft: bool): u8 {
  if (envLen < OVERHEAD) return STATUS_SHORT;
  if (load<u8>(env) != VERSION) return STATUS_VERSION;
  const reserved: u8 = raft ? 0xff : 0xfe;
  if ((load<u8>(env, 1) & reserved) != 0) return STATUS_FLAG;
  return STATUS_OK;
}

/**
 * Opens `count` envelopes; writes one status byte per value at `status`.
 * A failing value marks only itself.
 */
export function openBatch(count: u32, recs: usize, status: usize, aad: usize): void {
  for (let i: u32 = 0; i < count; i++) {
    const r = recs + <usize>i * REC_BYTES;
    const raft = load<u32>(r) == 1;
    const env = <usize>load<u32>(r, 4);
    const envLen = <usize>load<u32>(r, 8);
    let st = frameStatus(env, envLen, raft);
    if (st == STATUS_OK) {
      const slot = load<u32>(r, 32);
      if (slot == NO_SLOT) {
        st = STATUS_NO_KEY;
      } else {
        const aadLen = buildAad(aad, raft, env, load<u32>(r, 12), load<u32>(r, 16), load<u32>(r, 20));
        const ok = gcmOpen(slotAddr(slot), aad, aadLen, env + HEADER, envLen - OVERHEAD, load<u32>(r, 24), load<u32>(r, 28));
        st = ok ? STATUS_OK : STATUS_INTEGRITY;
      }
    }
    store<u8>(status + i, st);
  }
  wipeScratch();
}

/** Writes the counter blocks J0, J0+1, ... (`blocks` of them) for `nonce`. */
export function counterRun(dst: usize, nonce: usize, blocks: u32): void {
  const n0 = load<u64>(nonce);
  const n1 = load<u32>(nonce, 8);
  for (let j: u32 = 0; j < blocks; j++) {
    const b = dst + (<usize>j << 4);
    store<u64>(b, n0);
    store<u32>(b, n1, 8);
    store<u32>(b, bswap<u32>(j + 1), 12);
  }
}

/**
 * Writes, at each record's keystream address, the counter blocks J0, J0+1, ... that AES-ECB turns into its keystream
 * (1 + ceil(len / 16) blocks). `open` selects open records, whose nonce is
 * read from the envelope; envelopes shorter than the overhead, or with no
 * slot, get none.
 */
export function writeCounters(count: u32, hdr: usize, recs: usize, open: bool): void {
  for (let i: u32 = 0; i < count; i++) {
    const r = recs + <usize>i * REC_BYTES;
    const ks = <usize>load<u32>(r, 28);
    if (open) {
      const envLen = load<u32>(r, 8);
      if (envLen < <u32>OVERHEAD || load<u32>(r, 32) == NO_SLOT) continue;
      counterRun(ks, <usize>load<u32>(r, 4) + 6, 1 + ((envLen - <u32>OVERHEAD + 15) >> 4));
    } else {
      writeNonce(CTR_IN, hdr, i);
      counterRun(ks, CTR_IN, 1 + ((load<u32>(r, 8) + 15) >> 4));
    }
  }
}
