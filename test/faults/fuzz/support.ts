// Shared knobs of the fuzz tests (test/faults/fuzz): how many runs, which
// seed, and the one check every decoder must pass — a failure is a typed
// SealError, never anything else.
//
// SEALKV_FAULT_SOAK=1 multiplies every run count by SOAK_FACTOR (a long
// soak); SEALKV_FAULT_SEED=<n> replays one seed. fast-check prints the seed
// and the shrunk counterexample of a failing property.

import fc from 'fast-check';
import { isSealError, type ErrorCode } from '../../../src/errors/index.js';
import { soakOr } from '../support/soak.js';

const SOAK_FACTOR = 20;

/** `n` runs, or `n * SOAK_FACTOR` in soak mode. */
export function runs(n: number): number {
  return soakOr(n, n * SOAK_FACTOR);
}

/** fast-check parameters: run count and the seed (from SEALKV_FAULT_SEED when set). */
export function fcParams(n: number): fc.Parameters<unknown> {
  const seed = process.env.SEALKV_FAULT_SEED;
  return { numRuns: runs(n), ...(seed === undefined || seed === '' ? {} : { seed: Number(seed) }) };
}

/** The error code `fn` throws, or 'ok'; anything thrown that is not a SealError is rethrown (a bug). */
export function outcome(fn: () => unknown): ErrorCode | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (isSealError(err)) return err.code;
    throw err;
  }
}

/** outcome() for an async call. */
export async function outcomeAsync(fn: () => Promise<unknown>): Promise<ErrorCode | 'ok'> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    if (isSealError(err)) return err.code;
    throw err;
  }
}

/** A mutation of `bytes`: a flipped bit, a changed byte, a cut, an insertion or an appended tail. */
export function mutated(bytes: Uint8Array): fc.Arbitrary<Uint8Array> {
  const n = bytes.length;
  const copy = (): Uint8Array => new Uint8Array(bytes);
  return fc.oneof(
    fc.tuple(fc.nat({ max: Math.max(0, n - 1) }), fc.integer({ min: 0, max: 7 })).map(([i, bit]) => {
      const out = copy();
      if (n > 0) out[i]! ^= 1 << bit;
      return n > 0 ? out : new Uint8Array([1]);
    }),
    fc.tuple(fc.nat({ max: Math.max(0, n - 1) }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
      const out = copy();
      if (n > 0) out[i]! ^= x;
      return n > 0 ? out : new Uint8Array([x]);
    }),
    fc.nat({ max: Math.max(0, n - 1) }).map((cut) => bytes.slice(0, cut)),
    fc.tuple(fc.nat({ max: n }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([at, ins]) => {
      const out = new Uint8Array(n + ins.length);
      out.set(bytes.subarray(0, at), 0);
      out.set(ins, at);
      out.set(bytes.subarray(at), at + ins.length);
      return out;
    }),
  );
}

/** True when `a` and `b` hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
