// What the state machine needs from its neighbours, written as narrow
// interfaces so that the apply logic stays testable over an in-memory model.
// Adapters in this folder fit the real store (src/store) and request model
// (src/kv) to these shapes.
//
// Buffers passed in are owned by the caller until the call returns; buffers
// returned are owned by the receiver.

import type { KvWrite, VisibleValue } from '../kv/types.js';

// The request model's value and write shapes are the store port's too.
export type { KvWrite, VisibleValue };

/** One operation of an atomic store batch. MVCC writes carry their commit ts. */
export type FsmStoreOp =
  | (KvWrite & { commitTs: bigint })
  | { kind: 'internal-put'; key: Buffer; value: Buffer }
  | { kind: 'internal-delete'; key: Buffer };

/** The store as the state machine sees it. */
export interface FsmStore {
  /** Index of the last Raft entry whose effects are in the store (0 = none). */
  appliedIndex(): Promise<number>;
  /** Newest committed version of `key`, or undefined if absent, deleted or expired at `nowMs`. */
  getLatest(key: Buffer, nowMs: number): Promise<VisibleValue | undefined>;
  /** An internal (non-MVCC) row. */
  getInternal(key: Buffer): Promise<Buffer | undefined>;
  /** Internal rows whose key starts with `prefix`, in key order. */
  scanInternal(prefix: Buffer): AsyncIterable<[Buffer, Buffer]>;
  /** Writes `ops` and the applied index in one atomic batch. */
  applyBatch(ops: readonly FsmStoreOp[], options: { appliedIndex: number }): Promise<void>;
  /**
   * A snapshot stream of the whole store as of its applied index. With a
   * cutover index the header is v2 (SPEC §5.4), else v1.
   */
  snapshotStream(header: { ceiling: bigint; cutover?: bigint }): AsyncIterable<Uint8Array>;
  /**
   * Replaces the store's contents with a snapshot stream (which carries its
   * own applied index, checked against `appliedIndex` when given); returns
   * the header's ceiling and, for a v2 header, its cutover index.
   */
  restoreSnapshot(stream: AsyncIterable<Uint8Array>, options: { appliedIndex?: number }): Promise<{ ceiling: bigint; cutover?: bigint }>;
}

/** Reads as of the apply in progress (earlier entries of the batch included). */
export interface KvReader {
  get(key: Buffer): Promise<VisibleValue | undefined>;
}

/**
 * Executes decoded requests deterministically: same reader contents, same
 * requests, same `nowMs` → same writes and results. Results must be
 * msgpack-encodable (they are kept for proposal-id dedupe).
 */
export interface RequestExecutor {
  execute(
    reader: KvReader,
    requests: readonly unknown[],
    nowMs: number,
  ): Promise<{ writes: KvWrite[]; results: unknown[] }>;
}
