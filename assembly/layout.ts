// Fixed linear-memory layout of the sealkv WASM crypto core.
//
//   0x00000 .. 0x10000   AssemblyScript static data (constants only)
//   0x10000 .. 0x11000   scratch: bitsliced state, 8 blocks in and out of
//                        AES, tag, pending GHASH blocks, key-schedule words
//   0x11000 .. 0x21000   MAX_CTX key contexts of CTX_BYTES each
//   0x30000 ..           I/O area, owned by the JavaScript side (inputs,
//                        records, outputs); it grows the memory as needed
//
// Nothing here is allocated at run time: every address is a constant, so no
// address can depend on secret data.

export const SCRATCH: usize = 0x10000;
/** Bitsliced AES state: 8 v128 words (8 blocks in two 64-bit lanes). */
export const Q: usize = SCRATCH;
/** 8 blocks into AES, 8 blocks out. */
export const CTR_IN: usize = SCRATCH + 0x080;
export const KS_OUT: usize = SCRATCH + 0x100;
/** The computed tag. */
export const TAG: usize = SCRATCH + 0x190;
/** Up to 4 GHASH blocks waiting to be absorbed with one reduction. */
export const PENDING: usize = SCRATCH + 0x1c0;
/** 60 expanded key words (AES-256) during key setup; zeroed after. */
export const KEY_WORDS: usize = SCRATCH + 0x200;
export const SCRATCH_BYTES: usize = 0x1000;

export const CTX_BASE: usize = 0x11000;
export const CTX_BYTES: usize = 0x1000;
export const MAX_CTX: u32 = 16;
/** Within a context: 15 bitsliced round keys (8 v128 each). */
export const CTX_RK: usize = 0;
/** Within a context: H, H^2, H^3, H^4 pre-split for ctmul (4 x 24 u64). */
export const CTX_HT: usize = 2048;
/** Bytes of one power of H in CTX_HT. */
export const HPOW_BYTES: usize = 24 * 8;

export const IO_BASE: usize = 0x30000;
