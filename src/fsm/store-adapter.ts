// Fits the MVCC store (src/store) to the state machine's FsmStore port.
//
// Reads at apply use read timestamp 2^64 − 1 (the newest committed version)
// and the entry's commit time for expiry. Snapshots use header v1 (ceiling)
// until the node has applied the Phase 2 cutover, then v2 (ceiling and
// cutover index, SPEC §5.4).
// Installing a snapshot first empties the store, since the store restores
// only into an empty one; the snapshot carries its own applied-index row.

import { sealError } from '../errors/index.js';
import type { Store, WriteOp } from '../store/index.js';
import type { FsmStore, FsmStoreOp } from './ports.js';

/** Read timestamp that sees every committed version. */
export const LATEST_TS = (1n << 64n) - 1n;

function toWriteOp(op: FsmStoreOp): WriteOp {
  switch (op.kind) {
    case 'put':
      return { type: 'put', key: op.key, value: op.value, commitTs: op.commitTs, expireAt: BigInt(op.expireAt) };
    case 'delete':
      return { type: 'delete', key: op.key, commitTs: op.commitTs };
    case 'internal-put':
      return { type: 'putInternal', key: op.key, value: op.value };
    case 'internal-delete':
      return { type: 'deleteInternal', key: op.key };
  }
}

export function fsmStoreOver(store: Store): FsmStore {
  return {
    appliedIndex: async () => Number(await store.appliedIndex()),
    getLatest: async (key, nowMs) => {
      const entry = await store.get(key, LATEST_TS, { now: BigInt(nowMs) });
      return entry === undefined ? undefined : { value: entry.value, expireAt: Number(entry.expireAt) };
    },
    getInternal: (key) => store.getInternal(key),
    scanInternal: async function* (prefix) {
      for (const { key, value } of await store.scanInternal(prefix)) yield [key, value];
    },
    applyBatch: async (ops, options) => {
      await store.applyBatch(ops.map(toWriteOp), { appliedIndex: BigInt(options.appliedIndex) });
    },
    snapshotStream: (header) =>
      store.snapshotStream(header.cutover === undefined ? { version: 1, ceiling: header.ceiling } : { version: 2, ceiling: header.ceiling, cutover: header.cutover }),
    restoreSnapshot: async (stream, options) => {
      await store.clear();
      const info = await store.restoreSnapshot(stream);
      const restoredIndex = Number(await store.appliedIndex());
      if (options.appliedIndex !== undefined && restoredIndex !== options.appliedIndex) {
        throw sealError('ErrSnapshotCorrupt', `snapshot holds applied index ${restoredIndex}, expected ${options.appliedIndex}`);
      }
      return info.cutover === undefined ? { ceiling: info.ceiling ?? 0n } : { ceiling: info.ceiling ?? 0n, cutover: info.cutover };
    },
  };
}
