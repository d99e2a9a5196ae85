// Deterministic nonces (SPEC §3.3).
//
//   nonce = node_id(2 B BE) ‖ local_epoch(2 B BE) ‖ write_count(8 B BE)
//
// One NonceFactory per DEK per process. node_id separates nodes (uniqueness
// across nodes is enforced by the writer registry, SPEC §8.4), local_epoch
// separates process lifetimes (the sidecar bumps it durably before the first
// seal of each start), and write_count separates seals within one lifetime.
// Nonces are never random. Worker threads never invent them: the main thread
// reserves a contiguous range of counters for a batch and sends the range.

import { sealError } from '../errors/index.js';
import { NONCE_BYTES } from './envelope.js';

/** SPEC §3.3: seals allowed per (DEK, process). */
export const WRITE_CEILING = 2 ** 32;
/** Fraction of the ceiling at which the node proposes an automatic rotation. */
export const ROTATE_AT_FRACTION = 0.9;
export const MAX_LOCAL_EPOCH = 0xffff;

const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

/** FNV-1a-64 of the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): bigint {
  let hash = FNV64_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * FNV64_PRIME) & MASK64;
  }
  return hash;
}

/** node_id of SPEC §3.3: the low 16 bits of FNV-1a-64 of the `--raft-id`. */
export function nodeId16(raftId: string): number {
  if (raftId.length === 0) throw new RangeError('raft id must not be empty');
  return Number(fnv1a64(raftId) & 0xffffn);
}

/**
 * A contiguous run of nonces: item i of a batch uses `prefix ‖ (start + i)`.
 * Plain data, so it crosses to worker threads as it is.
 */
export interface NonceRange {
  /** node_id(2 BE) ‖ local_epoch(2 BE). */
  readonly prefix: Uint8Array;
  readonly start: bigint;
  readonly count: number;
}

/** The i-th nonce of a range, as a fresh 12-byte array. */
export function nonceAt(range: NonceRange, i: number): Uint8Array {
  if (!Number.isInteger(i) || i < 0 || i >= range.count) {
    throw new RangeError(`nonce index ${i} outside a range of ${range.count}`);
  }
  const nonce = new Uint8Array(NONCE_BYTES);
  writeNonce(nonce, 0, range.prefix, range.start + BigInt(i));
  return nonce;
}

/** Writes `prefix ‖ uint64_BE(counter)` at `offset`. */
export function writeNonce(out: Uint8Array, offset: number, prefix: Uint8Array, counter: bigint): void {
  out.set(prefix, offset);
  const view = new DataView(out.buffer, out.byteOffset + offset + 4, 8);
  view.setBigUint64(0, counter, false);
}

export interface NonceFactoryOptions {
  nodeId: number;
  localEpoch: number;
  /** Seals allowed in this process; tests lower it. Default 2^32. */
  ceiling?: number;
  /** Called once when write_count crosses 90% of the ceiling. */
  onNearCeiling?: () => void;
}

export class NonceFactory {
  readonly #prefix: Uint8Array;
  readonly #ceiling: bigint;
  readonly #rotateAt: bigint;
  readonly #onNearCeiling: (() => void) | undefined;
  // Invariant: #next <= #ceiling; every counter below #next has been handed out once.
  #next = 0n;
  #warned = false;

  constructor(options: NonceFactoryOptions) {
    const { nodeId, localEpoch } = options;
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > 0xffff) throw new RangeError(`node_id ${nodeId} is not a uint16`);
    if (!Number.isInteger(localEpoch) || localEpoch < 0 || localEpoch > MAX_LOCAL_EPOCH) {
      throw new RangeError(`local_epoch ${localEpoch} is not a uint16`);
    }
    const ceiling = options.ceiling ?? WRITE_CEILING;
    if (!Number.isInteger(ceiling) || ceiling < 1 || ceiling > WRITE_CEILING) throw new RangeError(`ceiling ${ceiling} out of range`);
    this.#prefix = Uint8Array.of(nodeId >>> 8, nodeId & 0xff, localEpoch >>> 8, localEpoch & 0xff);
    this.#ceiling = BigInt(ceiling);
    this.#rotateAt = BigInt(Math.floor(ceiling * ROTATE_AT_FRACTION));
    this.#onNearCeiling = options.onNearCeiling;
  }

  /** Counters handed out so far in this process. */
  get writeCount(): bigint {
    return this.#next;
  }

  /** Reserves `count` consecutive nonces for one batch. */
  reserve(count: number): NonceRange {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`cannot reserve ${count} nonces`);
    const start = this.#next;
    const end = start + BigInt(count);
    if (end > this.#ceiling) {
      throw sealError('ErrWriteCeilingReached', `DEK write ceiling of ${this.#ceiling} seals reached in this process; rotate the DEK`);
    }
    this.#next = end;
    if (!this.#warned && end >= this.#rotateAt) {
      this.#warned = true;
      this.#onNearCeiling?.();
    }
    return { prefix: this.#prefix, start, count };
  }

  /** One nonce. */
  next(): Uint8Array {
    return nonceAt(this.reserve(1), 0);
  }
}
