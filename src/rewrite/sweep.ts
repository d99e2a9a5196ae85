// The rewrite sweep (SPEC §11): visits every stored version of the store
// in store-key order, and re-seals those under the target (a retired-to-be
// storage DEK, or cleartext bodies) under the active storage DEK, in place.
//
// Per batch, one store applyBatch carries the batch's `reseal` ops and the
// cursor row (the store key of the last version looked at), so a crash
// resumes exactly where the last written batch ended. The store does the
// sealing through its own encryption settings: nonces reserved on this
// thread, open-and-seal on the pool's workers when the batch is large. The
// plaintext never comes back to this file.
//
// Safety against the rest of the node (SPEC §11):
//   - a reseal is written only if the version's row is byte-identical to
//     the one read, checked inside the store's write queue: a version GC
//     removed is not resurrected, a version written again is not
//     overwritten (the op is counted as skipped);
//   - every batch carries the store generation read before the cursor: a
//     snapshot install (clear/restore) in between drops the batch whole, so
//     a stale cursor or done row never lands on restored data; the sweep
//     then starts again from the restored data's own cursor.
// Memory: at most two batches are in flight (one sealing, one writing),
// each bounded by `batchBytes` of values and `batchVersions` versions.

import { sealError } from '../errors/index.js';
import { STATE_CLEARTEXT, encodeStoreKey, type ApplyResult, type Store, type StoredVersion, type WriteOp } from '../store/index.js';
import { checkTarget, cursorKey, describeTarget, doneKey, encodeDone, readSweepState, type SweepDone, type SweepTarget } from './state.js';
import { Throttle, systemClock, type SweepClock } from './throttle.js';

const VALUE_HEADER_BYTES = 9;
// 4 MiB: a batch is cut into chunks of about 1 MiB for the pool, so each
// batch keeps both workers of a 2-core machine busy.
const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;
const DEFAULT_BATCH_VERSIONS = 8192;
// Rows per engine round trip while reading versions.
const READ_CAPACITY = 1024;
// Versions looked at without a reseal before the cursor is written anyway,
// so that a sweep over data mostly not under its target still resumes near
// where it stopped.
const SCAN_ONLY_CURSOR_EVERY = 16_384;

export interface SweepProgress {
  /** 'key_id 3' or 'cleartext'. */
  target: string;
  /** Versions looked at by this run (tombstones and other key_ids included). */
  scanned: number;
  /** Versions re-sealed. */
  rewritten: number;
  /** Reseals dropped because the version changed or was removed after it was read. */
  skipped: number;
  /** Stored value bytes (bodies) of the versions re-sealed. */
  rewrittenBytes: number;
  /** Versions the run expects to look at (from SweepOptions.totalEstimate). */
  totalEstimate?: number;
  elapsedMs: number;
  bytesPerSec: number;
  etaSeconds?: number;
  /** True once the done row is written; false when aborted. */
  done: boolean;
  /** key_id the versions are re-sealed under. */
  activeKeyId: number;
}

export interface SweepOptions {
  store: Store;
  target: SweepTarget;
  /** Stored value bytes per second, MiB; undefined or 0 = no limit. */
  rateMiBps?: number;
  /** Stops cleanly after the batches in flight; the cursor stays for a resume. */
  signal?: AbortSignal;
  onProgress?: (p: SweepProgress) => void;
  /** Awaited before each batch is written (e.g. the node's writer-registration gate). */
  beforeBatch?: () => Promise<void>;
  /** Value bytes per store batch; default 4 MiB. */
  batchBytes?: number;
  /** Versions re-sealed per store batch at most; default 8192. */
  batchVersions?: number;
  /** Versions expected (countVersions), for the ETA. */
  totalEstimate?: number;
  clock?: SweepClock;
}

/** Number of stored versions after `after` (all of them without it), for SweepOptions.totalEstimate. */
export async function countVersions(store: Store, after?: Uint8Array): Promise<number> {
  let n = 0;
  for await (const _ of store.versions(after === undefined ? {} : { after })) n++;
  return n;
}

/**
 * Refuses a sweep that cannot run: storage sealing off (ErrRewriteNotSealing)
 * or the target being the DEK new values are sealed under
 * (ErrRewriteTargetActive). Returns the active storage key_id.
 */
export function checkSweepable(store: Store, target: SweepTarget): number {
  checkTarget(target);
  const active = store.sealingKeyId;
  if (active === undefined) {
    throw sealError('ErrRewriteNotSealing', `cannot rewrite ${describeTarget(target)}: storage sealing is not active (enable-storage-envelope first)`);
  }
  if ('keyId' in target && target.keyId === active) {
    throw sealError('ErrRewriteTargetActive', `key_id ${active} is the active storage DEK: rotate-dek --purpose=storage first, then rewrite the old key_id`);
  }
  return active;
}

export async function runSweep(options: SweepOptions): Promise<SweepProgress> {
  const { store, target } = options;
  const activeKeyId = checkSweepable(store, target);
  const batchBytes = positive('batchBytes', options.batchBytes ?? DEFAULT_BATCH_BYTES);
  const batchVersions = positive('batchVersions', options.batchVersions ?? DEFAULT_BATCH_VERSIONS);
  const clock = options.clock ?? systemClock;
  const throttle = new Throttle(options.rateMiBps, clock);
  const started = clock.now();
  const counts = { scanned: 0, rewritten: 0, skipped: 0, rewrittenBytes: 0 };
  const matches = 'cleartext' in target ? (v: StoredVersion) => v.header.encryptionState === STATE_CLEARTEXT : (v: StoredVersion) => v.keyId === target.keyId;

  const progress = (done: boolean): SweepProgress => {
    const elapsedMs = clock.now() - started;
    const p: SweepProgress = { target: describeTarget(target), ...counts, elapsedMs, bytesPerSec: elapsedMs > 0 ? (counts.rewrittenBytes * 1000) / elapsedMs : 0, done, activeKeyId };
    if (options.totalEstimate !== undefined) {
      p.totalEstimate = options.totalEstimate;
      const left = Math.max(0, options.totalEstimate - counts.scanned);
      if (done) p.etaSeconds = 0;
      else if (counts.scanned > 0) p.etaSeconds = (left * elapsedMs) / counts.scanned / 1000;
    }
    return p;
  };

  // Every batch of this run is written under this owner: while nothing else
  // writes to the store (offline), the guards' re-reads are skipped.
  const owner = Symbol('sweep');
  // One pass from the stored cursor; 'stale' when a snapshot install
  // replaced the data under it.
  const pass = async (): Promise<'done' | 'stale' | 'aborted'> => {
    const generation = store.generation;
    // Taken before the iterator exists, so every row it yields was read after it.
    const quietSince = { seq: store.writeSeq, owner };
    const { cursor } = await readSweepState(store, target);
    let ops: WriteOp[] = [];
    let bytes = 0;
    let last: StoredVersion | undefined;
    let sinceCursor = 0;
    let inFlight: Promise<boolean> | undefined;
    let applying: Promise<ApplyResult> | undefined;
    let stale = false;

    const flush = async (): Promise<void> => {
      await throttle.take(bytes, options.signal);
      await options.beforeBatch?.();
      ops.push({ type: 'putInternal', key: cursorKey(target), value: encodeStoreKey(last!.key, last!.commitTs) });
      const batch = ops;
      const batchBytesNow = bytes;
      const reseals = batch.length - 1;
      ops = [];
      bytes = 0;
      sinceCursor = 0;
      const previous = applying;
      applying = store.applyBatch(batch, { ifGeneration: generation, quietSince, ...(previous === undefined ? {} : { ifSucceeded: previous }) });
      const written = applying.then((result) => {
        if (result.staleGeneration) return false;
        counts.rewritten += reseals - result.rewritesSkipped;
        counts.skipped += result.rewritesSkipped;
        counts.rewrittenBytes += batchBytesNow; // skipped reseals (rare) included
        options.onProgress?.(progress(false));
        return true;
      });
      written.catch(() => undefined);
      // Two batches in flight at most: this one sealing, the previous writing.
      const before = inFlight;
      inFlight = written;
      if (before !== undefined && !(await before)) stale = true;
    };

    try {
      for await (const version of store.versions({ capacity: READ_CAPACITY, ...(cursor === undefined ? {} : { after: cursor }) })) {
        counts.scanned++;
        sinceCursor++;
        last = version;
        if (!version.header.tombstone && matches(version)) {
          ops.push({ type: 'reseal', key: version.key, commitTs: version.commitTs, ifRow: version.row });
          bytes += version.row.length - VALUE_HEADER_BYTES;
        }
        if (bytes >= batchBytes || ops.length >= batchVersions || sinceCursor >= SCAN_ONLY_CURSOR_EVERY) {
          await flush();
          if (stale) return 'stale';
          if (options.signal?.aborted === true) return 'aborted';
        }
      }
      if (ops.length > 0 || sinceCursor > 0) await flush();
    } finally {
      // Settle what is in flight before returning (or rethrowing).
      if (inFlight !== undefined && !(await inFlight)) stale = true;
    }
    if (stale) return 'stale';
    if (options.signal?.aborted === true) return 'aborted';
    const done: SweepDone = {
      finished: new Date().toISOString(),
      scanned: counts.scanned,
      rewritten: counts.rewritten,
      skipped: counts.skipped,
      rewritten_bytes: counts.rewrittenBytes,
      // A rotation during an online sweep moves later reseals to the newer DEK.
      active_key_id: store.sealingKeyId ?? activeKeyId,
    };
    await options.beforeBatch?.();
    const result = await store.applyBatch(
      [
        { type: 'deleteInternal', key: cursorKey(target) },
        { type: 'putInternal', key: doneKey(target), value: encodeDone(done) },
      ],
      { ifGeneration: generation },
    );
    return result.staleGeneration ? 'stale' : 'done';
  };

  for (;;) {
    if (options.signal?.aborted === true) return progress(false);
    const outcome = await pass();
    if (outcome === 'stale') continue;
    const final = progress(outcome === 'done');
    options.onProgress?.(final);
    return final;
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
