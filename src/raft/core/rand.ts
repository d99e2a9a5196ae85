// A small seeded generator (sfc32 seeded through splitmix32) for election
// timeouts and the simulator: deterministic, so a seed replays a whole run.

import type { RandInt } from './raft.js';

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Returns a generator of floats in [0, 1) determined by `seed`. */
export function seededRandom(seed: number): () => number {
  const st = { s: seed | 0 };
  let a = splitmix32(st);
  let b = splitmix32(st);
  let c = splitmix32(st);
  let d = splitmix32(st);
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

/** Integer generator in [0, n) for RaftConfig.rand. */
export function seededRandInt(seed: number): RandInt {
  const r = seededRandom(seed);
  return (n) => Math.floor(r() * n);
}
