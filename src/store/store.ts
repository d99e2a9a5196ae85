// The MVCC store (SPEC §5): versions of user keys at commit timestamps,
// sealed with the storage envelope (SPEC §3.1) when encryption is active,
// on an Engine (RocksDB in the node, memory in tests).
//
// Public methods validate, encode, seal and open; the engine only stores
// rows (layout in keys.ts, value header in value.ts).
//
// Writes are serialised: every write (apply batches, GC deletions,
// snapshot restore) joins one queue, in call order, so that RocksDB
// applies them in that order even though each is an async round trip.
// Sealing starts when a write is enqueued, on the caller's turn, which
// lets the apply loop seal batch N+1 while batch N is being written. With
// a pool (EncryptionSettings.pool) compression and sealing run on a worker
// thread: nonce reservation stays on the caller's turn (SPEC §3.3), and the
// queued write waits for its sealed rows, so writes keep call order
// whichever batch finishes sealing first.
//
// Guarded writes (the rewrite sweep, SPEC §11): `rewrite`/`reseal` ops are
// written only if their row is still the bytes the caller read, checked in
// the write's turn of the queue; a batch with `ifGeneration` is dropped
// whole if a clear() or restoreSnapshot() came in between; `quietSince`
// skips the re-read when only the caller's own batches were written since
// its reads.
//
// Invariant: the head row of a user key holds the largest commit_ts ever
// written for it. It holds as long as writes to one key arrive with
// increasing commit timestamps, which the Raft-replicated HLC guarantees
// for applies; rewrites and GC never touch head rows.

import snappy from 'snappy';
import { FLAG_COMPRESSED, VALUE_HEADER_BYTES, compressForSeal, envelopeKeyId, type Dek, type NonceRange, type OpenItem, type SealItem, type Sealer } from '../crypto/index.js';
import { isSealError, sealError, type SealError } from '../errors/index.js';
import type { Engine, EngineOp, EngineReader } from './engine.js';
import {
  APPLIED_INDEX_KEY,
  SPACE_END,
  SPACE_HEAD,
  SPACE_INTERNAL,
  SPACE_VERSION,
  TS_BYTES,
  checkTimestamp,
  decodeTs,
  encodeStoreKey,
  encodeTs,
  headRowKey,
  isReservedKey,
  prefixEnd,
  tagged,
  versionRowKey,
} from './keys.js';
import { STATE_CLEARTEXT, STATE_ENVELOPE, decodeValue, encodeValueHeader, isExpired, type ValueHeader } from './value.js';
import { readSnapshot, writeSnapshot, type SnapshotHeader, type SnapshotInfo } from './snapshot.js';

export type WriteOp =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array; readonly commitTs: bigint; readonly expireAt?: bigint }
  | { readonly type: 'delete'; readonly key: Uint8Array; readonly commitTs: bigint }
  /**
   * Re-writes an existing version in place (rewrite sweep): no new version,
   * head untouched, and only if the version's row is still byte-identical
   * to `ifRow` when the batch reaches the write queue — so a sweep never
   * resurrects a version GC removed nor overwrites one changed after it
   * was read (SPEC §11). Skipped rewrites are counted in the result.
   * The version keeps the expiry in `ifRow`; tombstones are not rewritten.
   */
  | { readonly type: 'rewrite'; readonly key: Uint8Array; readonly value: Uint8Array; readonly commitTs: bigint; readonly ifRow: Uint8Array }
  /**
   * A rewrite whose value comes from `ifRow` itself: its envelope is opened
   * and sealed again (same flag), or its cleartext body sealed, under the
   * active storage DEK — on the pool's workers when the batch is large, so
   * plaintext never reaches the caller. Guarded like `rewrite`; needs
   * sealing on (ErrRewriteNotSealing); an envelope that fails to open
   * rejects the batch with its typed error.
   */
  | { readonly type: 'reseal'; readonly key: Uint8Array; readonly commitTs: bigint; readonly ifRow: Uint8Array }
  | { readonly type: 'putInternal'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'deleteInternal'; readonly key: Uint8Array };

/** One visible version, opened. */
export interface Entry {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly commitTs: bigint;
  /** ms since the epoch; 0n = never. */
  readonly expireAt: bigint;
}

export interface ReadOptions {
  /** Wall clock for TTL, ms since the epoch; default Date.now(). */
  readonly now?: bigint;
}

export type ScanRange = { readonly prefix: Uint8Array } | { readonly start?: Uint8Array; readonly end?: Uint8Array };

export interface ScanOptions extends ReadOptions {
  readonly limit?: number;
}

export interface EncryptionSettings {
  /** Opens envelopes on read, and seals on write when `active`. */
  readonly sealer: Sealer;
  /** SPEC §5.3: seal every write (storage_envelope_active and a storage DEK active). */
  readonly active: boolean;
  /** Snappy before sealing (SPEC §3.4); default on. Reads always honour the flag. */
  readonly compression?: boolean;
  /** Told of every envelope that fails to open (for sealkv_encryption_decrypt_failures_total). */
  readonly onOpenFailure?: (error: SealError) => void;
  /**
   * Seals write batches off the main thread (a CryptoPool). Nonces are
   * still reserved from `sealer`; reads still open through `sealer`. The
   * pool reads a batch's values after applyBatch returns (large batches
   * are packed chunk by chunk), so callers must not change them until the
   * batch resolves.
   */
  readonly pool?: BatchSealPool;
  /**
   * Batches whose values total fewer bytes are sealed in-thread even with a
   * pool: a pool round trip costs a few hundred µs, more than sealing a few
   * small values. Default 32 KiB.
   */
  readonly poolMinBytes?: number;
}

/**
 * What the store needs of a CryptoPool: CryptoBackend.sealBatch,
 * asynchronously, compressing first when told; and for `reseal` ops, open
 * and seal again in one worker call (else they are resealed in-thread).
 */
export interface BatchSealPool {
  sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[], options: { compress: boolean }): Promise<Uint8Array[]>;
  resealBatch?(dek: Dek, nonces: NonceRange, items: readonly OpenItem[]): Promise<({ ok: true; envelope: Uint8Array } | { ok: false; error: SealError })[]>;
}

/** One stored version as it is on disk, for the rewrite sweep and tools. */
export interface StoredVersion {
  readonly key: Buffer;
  readonly commitTs: bigint;
  readonly header: ValueHeader;
  /** key_id of the envelope; 0 for cleartext bodies (and envelopes too short to name one). */
  readonly keyId: number;
  /** The raw row (header ‖ body), for openVersions() and a rewrite's `ifRow`. */
  readonly row: Buffer;
}

export interface ApplyResult {
  /** Rewrite ops dropped because their version changed or was removed meanwhile. */
  readonly rewritesSkipped: number;
  /** True when `ifGeneration` no longer matched: nothing of the batch was written. */
  readonly staleGeneration: boolean;
}

export interface ApplyOptions {
  /** The Raft applied index, recorded in the same engine batch. */
  readonly appliedIndex?: bigint;
  /**
   * Write the batch only if the store's generation (bumped by clear() and
   * around restoreSnapshot()) is still this when the batch reaches the write
   * queue, and no restore is in progress: a sweep's cursor row read before a
   * snapshot install must never land on the restored data.
   */
  readonly ifGeneration?: number;
  /**
   * An earlier applyBatch of the caller's: if it failed, this batch fails
   * with the same error and writes nothing (a sweep's cursor must never
   * pass a batch that did not land).
   */
  readonly ifSucceeded?: Promise<unknown>;
  /**
   * For guarded ops: the caller read every `ifRow` of this batch after the
   * store's writeSeq was `seq`. If every store write since then was one of
   * the caller's own (batches with the same `owner`, which never touch the
   * rows of its later batches), the rows are known current and the guard's
   * re-read is skipped; any other write in between (apply, GC, restore)
   * keeps the re-read.
   */
  readonly quietSince?: { readonly seq: number; readonly owner: symbol };
}

interface EncodedBatch {
  readonly rows: EngineOp[];
  readonly guards: readonly { rowIndex: number; rowKey: Buffer; ifRow: Uint8Array }[];
  readonly ifGeneration?: number;
  readonly quietSince?: { readonly seq: number; readonly owner: symbol };
  /** Pool sealing in flight: resolves once every envelope row of `rows` is in place. */
  readonly sealed?: Promise<void>;
}

// Head rows fetched per scan page; their versions come in one multi-get and
// are opened in one batch call.
const SCAN_PAGE = 128;
const DEFAULT_POOL_MIN_BYTES = 32 * 1024;
const GC_DELETE_BATCH = 1024;
const WHOLE_VERSION_SPACE = { gte: Buffer.from([SPACE_VERSION]), lt: Buffer.from([SPACE_END]) };

interface ToSeal {
  readonly value: Uint8Array;
  readonly header: Uint8Array;
  readonly rowKey: Buffer;
  readonly rowIndex: number;
}

interface ToReseal {
  readonly envelope: Uint8Array;
  readonly header: Uint8Array;
  readonly rowKey: Buffer;
  readonly rowIndex: number;
}

interface RawVersion {
  readonly userKey: Buffer;
  readonly commitTs: bigint;
  readonly row: Buffer;
}

export class Store {
  readonly #engine: Engine;
  #sealer: Sealer | undefined;
  #pool: BatchSealPool | undefined;
  #poolMinBytes = DEFAULT_POOL_MIN_BYTES;
  #onOpenFailure: ((error: SealError) => void) | undefined;
  #sealing = false;
  #compression = true;
  #writeTail: Promise<void> = Promise.resolve();
  #writeFailure: unknown;
  #closed = false;
  // Invariant: changes only inside the write queue, so a guarded batch
  // compares it at the very point where it would be written.
  #generation = 0;
  #restoring = false;
  // Write steps executed so far, and the latest run of consecutive steps by
  // one owner (ApplyOptions.quietSince); changed only inside the write queue.
  #writeSeq = 0;
  #runOwner: symbol | undefined;
  #runStart = 0;

  constructor(engine: Engine, encryption?: EncryptionSettings) {
    this.#engine = engine;
    if (encryption !== undefined) this.setEncryption(encryption);
  }

  get engine(): Engine {
    return this.#engine;
  }

  /** Set by the rollout: which sealer opens and seals, and whether writes seal. */
  setEncryption(settings: EncryptionSettings): void {
    this.#sealer = settings.sealer;
    this.#pool = settings.pool;
    this.#poolMinBytes = settings.poolMinBytes ?? DEFAULT_POOL_MIN_BYTES;
    this.#sealing = settings.active;
    this.#onOpenFailure = settings.onOpenFailure;
    if (settings.compression !== undefined) this.#compression = settings.compression;
  }

  /** `--compression=off|on`: only decides new seals; reads follow each value's flag. */
  setCompression(on: boolean): void {
    this.#compression = on;
  }

  get sealing(): boolean {
    return this.#sealing && this.#sealer !== undefined;
  }

  /** key_id new seals go under; undefined when writes do not seal (or no storage DEK is active). */
  get sealingKeyId(): number | undefined {
    if (!this.sealing) return undefined;
    try {
      return this.#sealer!.activeDek('storage').keyId;
    } catch (err) {
      if (isSealError(err, 'ErrEncryptionNotBootstrapped')) return undefined;
      throw err;
    }
  }

  /**
   * Bumped by clear() and at the start and end of restoreSnapshot(), in
   * write-queue order: data read under one generation belongs to it
   * (see ApplyOptions.ifGeneration).
   */
  get generation(): number {
    return this.#generation;
  }

  /** Write steps the queue has executed so far (see ApplyOptions.quietSince). */
  get writeSeq(): number {
    return this.#writeSeq;
  }

  // ---- writes ------------------------------------------------------------

  async put(key: Uint8Array, value: Uint8Array, commitTs: bigint, options: { expireAt?: bigint } = {}): Promise<void> {
    await this.applyBatch([{ type: 'put', key, value, commitTs, ...(options.expireAt === undefined ? {} : { expireAt: options.expireAt }) }]);
  }

  async delete(key: Uint8Array, commitTs: bigint): Promise<void> {
    await this.applyBatch([{ type: 'delete', key, commitTs }]);
  }

  /**
   * Applies every op atomically, with the Raft applied index in the same
   * engine batch when given. All values of the batch are sealed in one
   * backend (or pool) call. Resolves once the engine has the batch. A
   * batch that fails to seal (ErrWorkerFailed from the pool, say) rejects
   * with that error and stores nothing of it; later writes go on.
   */
  applyBatch(ops: readonly WriteOp[], options: ApplyOptions = {}): Promise<ApplyResult> {
    let batch: EncodedBatch;
    try {
      this.#checkOpen();
      batch = this.#encodeBatch(ops);
      if (options.appliedIndex !== undefined) {
        checkTimestamp(options.appliedIndex, 'applied index');
        batch.rows.push({ type: 'put', key: APPLIED_INDEX_KEY, value: encodeTs(options.appliedIndex) });
      }
      if (options.ifGeneration !== undefined) {
        if (!Number.isSafeInteger(options.ifGeneration)) throw new RangeError('ifGeneration must be an integer');
        batch = { ...batch, ifGeneration: options.ifGeneration };
      }
      if (options.quietSince !== undefined) batch = { ...batch, quietSince: options.quietSince };
      if (options.ifSucceeded !== undefined) {
        // Settled before this batch's turn (it was queued earlier); a failure
        // fails this batch the way a seal failure does, without poisoning the store.
        const sealed = Promise.all([batch.sealed, options.ifSucceeded]).then(() => undefined);
        sealed.catch(() => undefined);
        batch = { ...batch, sealed };
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (batch.guards.length === 0 && batch.ifGeneration === undefined && batch.quietSince === undefined) {
      return this.#enqueue(() => this.#engine.write(batch.rows), batch.sealed).then(() => ({ rewritesSkipped: 0, staleGeneration: false }));
    }
    return this.#enqueueGuardedWrite(batch);
  }

  #encodeBatch(ops: readonly WriteOp[]): EncodedBatch {
    const rows: EngineOp[] = [];
    const guards: { rowIndex: number; rowKey: Buffer; ifRow: Uint8Array }[] = [];
    const heads = new Map<string, { key: Uint8Array; ts: bigint }>();
    const toSeal: ToSeal[] = [];
    const toReseal: ToReseal[] = [];
    const sealing = this.sealing;
    for (const op of ops) {
      if (op.type === 'putInternal' || op.type === 'deleteInternal') {
        const key = internalRowKey(op.key);
        rows.push(op.type === 'putInternal' ? { type: 'put', key, value: toBuffer(op.value) } : { type: 'del', key });
        continue;
      }
      checkUserKey(op.key);
      checkTimestamp(op.commitTs);
      const rowKey = versionRowKey(op.key, op.commitTs);
      if (op.type === 'rewrite' || op.type === 'reseal') guards.push({ rowIndex: rows.length, rowKey, ifRow: op.ifRow });
      if (op.type === 'reseal') {
        if (!sealing) throw sealError('ErrRewriteNotSealing', 'a reseal needs storage sealing on (storage envelope active and a storage DEK active)');
        const { header, headerBytes, body } = decodeValue(op.ifRow);
        if (header.tombstone) throw new RangeError('tombstones are not rewritten');
        if (header.encryptionState === STATE_ENVELOPE) {
          toReseal.push({ envelope: body, header: headerBytes, rowKey, rowIndex: rows.length });
        } else {
          const sealedHeader = encodeValueHeader({ tombstone: false, encryptionState: STATE_ENVELOPE, expireAt: header.expireAt });
          toSeal.push({ value: body, header: sealedHeader, rowKey, rowIndex: rows.length });
        }
        rows.push({ type: 'put', key: rowKey, value: EMPTY }); // replaced by #sealInto / #resealInto
        continue;
      }
      if (op.type === 'delete') {
        rows.push({ type: 'put', key: rowKey, value: encodeValueHeader({ tombstone: true, encryptionState: STATE_CLEARTEXT, expireAt: 0n }) });
      } else {
        const expireAt = op.type === 'rewrite' ? rewrittenExpiry(op.ifRow) : (op.expireAt ?? 0n);
        checkTimestamp(expireAt, 'expire_at');
        if (sealing) {
          const header = encodeValueHeader({ tombstone: false, encryptionState: STATE_ENVELOPE, expireAt });
          toSeal.push({ value: op.value, header, rowKey, rowIndex: rows.length });
          rows.push({ type: 'put', key: rowKey, value: header }); // the envelope is appended by #sealInto
        } else {
          const row = Buffer.allocUnsafe(VALUE_HEADER_BYTES + op.value.length);
          encodeValueHeader({ tombstone: false, encryptionState: STATE_CLEARTEXT, expireAt }, row, 0);
          row.set(op.value, VALUE_HEADER_BYTES);
          rows.push({ type: 'put', key: rowKey, value: row });
        }
      }
      if (op.type !== 'rewrite') {
        const id = Buffer.from(op.key.buffer, op.key.byteOffset, op.key.length).toString('latin1');
        const seen = heads.get(id);
        if (seen === undefined || seen.ts < op.commitTs) heads.set(id, { key: op.key, ts: op.commitTs });
      }
    }
    const pending = [toSeal.length > 0 ? this.#sealInto(rows, toSeal) : undefined, toReseal.length > 0 ? this.#resealInto(rows, toReseal) : undefined].filter(
      (p): p is Promise<void> => p !== undefined,
    );
    for (const { key, ts } of heads.values()) rows.push({ type: 'put', key: headRowKey(key), value: encodeTs(ts) });
    if (pending.length === 0) return { rows, guards };
    const sealed = pending.length === 1 ? pending[0]! : Promise.all(pending).then(() => undefined);
    sealed.catch(() => undefined);
    return { rows, guards, sealed };
  }

  // Compress-then-seal (SPEC §3.4, compressForSeal): the compressed form is
  // kept only when strictly smaller; the flag bit says which, and is in the
  // AAD. Without a pool the rows are complete on return; with one, once the
  // returned promise resolves (the DEK and nonces are taken now, in call
  // order), and the workers compress as well as seal.
  #sealInto(rows: EngineOp[], toSeal: readonly ToSeal[]): Promise<void> | undefined {
    let bytes = 0;
    for (const { value } of toSeal) bytes += value.length;
    const pool = bytes >= this.#poolMinBytes ? this.#pool : undefined;
    const compressHere = this.#compression && pool === undefined;
    const items: SealItem[] = new Array(toSeal.length);
    for (let i = 0; i < toSeal.length; i++) {
      const { value, header, rowKey } = toSeal[i]!;
      const { plaintext, flag } = compressHere ? compressForSeal(value) : { plaintext: value, flag: 0 };
      // The AAD's store_key is the row key without its space tag.
      items[i] = { plaintext, flag, aad: { kind: 'storage', valueHeader: header, storeKey: rowKey.subarray(1) } };
    }
    const place = (envelopes: readonly Uint8Array[]): void => placeEnvelopes(rows, toSeal, envelopes);
    const sealer = this.#sealer!;
    if (pool === undefined) {
      place(sealer.seal('storage', items).envelopes);
      return undefined;
    }
    const dek = sealer.activeDek('storage');
    const sealed = pool.sealBatch(dek, sealer.reserveNonces(dek, items.length), items, { compress: this.#compression }).then(place);
    // Awaited by the queued write; until then a failure must not count as unhandled.
    sealed.catch(() => undefined);
    return sealed;
  }

  // Open-then-seal of `reseal` ops, same flag, same AAD (the header keeps
  // its bytes, the store key its place). With a pool and enough bytes both
  // happen in one worker call per chunk; else in-thread, one open batch and
  // one seal batch, and the plaintexts are zeroed once sealed.
  #resealInto(rows: EngineOp[], toReseal: readonly ToReseal[]): Promise<void> | undefined {
    let bytes = 0;
    for (const { envelope } of toReseal) bytes += envelope.length;
    const items: OpenItem[] = toReseal.map(({ envelope, header, rowKey }) => ({ envelope, aad: { kind: 'storage', valueHeader: header, storeKey: rowKey.subarray(1) } }));
    const sealer = this.#sealer!;
    const dek = sealer.activeDek('storage');
    const pool = bytes >= this.#poolMinBytes ? this.#pool : undefined;
    if (pool?.resealBatch !== undefined) {
      const sealed = pool.resealBatch(dek, sealer.reserveNonces(dek, items.length), items).then((results) =>
        placeEnvelopes(
          rows,
          toReseal,
          results.map((result) => {
            if (!result.ok) {
              this.#onOpenFailure?.(result.error);
              throw result.error;
            }
            return result.envelope;
          }),
        ),
      );
      sealed.catch(() => undefined);
      return sealed;
    }
    const opened = sealer.open(items);
    const plaintexts: Uint8Array[] = [];
    try {
      const sealItems: SealItem[] = opened.map((result, i) => {
        if (!result.ok) {
          this.#onOpenFailure?.(result.error);
          throw result.error;
        }
        plaintexts.push(result.plaintext);
        return { plaintext: result.plaintext, flag: result.flag, aad: items[i]!.aad };
      });
      placeEnvelopes(rows, toReseal, sealer.backend.sealBatch(dek, sealer.reserveNonces(dek, sealItems.length), sealItems));
    } finally {
      for (const plaintext of plaintexts) plaintext.fill(0);
    }
    return undefined;
  }

  #enqueueWrite(rows: EngineOp[]): Promise<void> {
    return this.#enqueue(() => this.#engine.write(rows));
  }

  // The guard check runs inside the write queue, so no other store write
  // (apply, GC, another rewrite) can land between the check and the write.
  #enqueueGuardedWrite({ rows, guards, sealed, ifGeneration, quietSince }: EncodedBatch): Promise<ApplyResult> {
    const step = async (): Promise<ApplyResult> => {
      if (ifGeneration !== undefined && (ifGeneration !== this.#generation || this.#restoring)) return { rewritesSkipped: guards.length, staleGeneration: true };
      // This step is already counted: a run of the caller's own steps that
      // began right after `seq` means nobody else wrote since the reads.
      const quiet = quietSince !== undefined && this.#runOwner === quietSince.owner && this.#runStart <= quietSince.seq + 1;
      if (quiet || guards.length === 0) {
        await this.#engine.write(rows);
        return { rewritesSkipped: 0, staleGeneration: false };
      }
      const current = await this.#engine.getMany(guards.map((g) => g.rowKey));
      const skip = new Set<number>();
      guards.forEach((g, i) => {
        const row = current[i];
        if (row === null || row === undefined || Buffer.compare(row, g.ifRow) !== 0) skip.add(g.rowIndex);
      });
      await this.#engine.write(skip.size === 0 ? rows : rows.filter((_, i) => !skip.has(i)));
      return { rewritesSkipped: skip.size, staleGeneration: false };
    };
    return this.#enqueue(step, sealed, quietSince?.owner);
  }

  // `sealed` (pool sealing of this write's rows) is awaited in the write's
  // turn: a seal failure fails this write alone and leaves the store usable,
  // since nothing of it reached the engine.
  #enqueue<T>(step: () => Promise<T>, sealed?: Promise<void>, owner?: symbol): Promise<T> {
    const write = this.#writeTail.then(async () => {
      if (this.#writeFailure !== undefined) throw sealError('ErrStoreCorrupt', 'an earlier store write failed; reopen the store', this.#writeFailure);
      if (sealed !== undefined) await sealed;
      this.#writeSeq++;
      if (owner === undefined || owner !== this.#runOwner) {
        this.#runOwner = owner;
        this.#runStart = this.#writeSeq;
      }
      return step().catch((err: unknown) => {
        this.#writeFailure = err;
        throw err;
      });
    });
    this.#writeTail = write.then(
      () => undefined,
      () => undefined,
    );
    return write;
  }

  /**
   * Makes every batch applied so far (and its applied index) survive a power
   * loss; batches queued later are not covered. The Raft log is compacted
   * only past what this has made durable (SPEC §6).
   */
  async persist(): Promise<void> {
    await this.drain();
    await this.#engine.persist();
  }

  /** Waits for every write enqueued so far. */
  async drain(): Promise<void> {
    await this.#writeTail;
  }

  // ---- reads -------------------------------------------------------------

  /** The newest version of `key` at or below `readTs`, if visible (not a tombstone, not expired). */
  async get(key: Uint8Array, readTs: bigint, options: ReadOptions = {}): Promise<Entry | undefined> {
    return (await this.getMany([key], readTs, options))[0];
  }

  /** get() of many keys: two engine round trips and one batch open for all. */
  async getMany(keys: readonly Uint8Array[], readTs: bigint, options: ReadOptions = {}): Promise<(Entry | undefined)[]> {
    this.#checkOpen();
    checkTimestamp(readTs, 'read timestamp');
    const userKeys = keys.map((key) => {
      checkUserKey(key);
      return toBuffer(key);
    });
    const heads = await this.#engine.getMany(userKeys.map(headRowKey));
    const raws = await this.#resolve(this.#engine, userKeys, heads, readTs);
    return this.#materialize(raws, nowOf(options));
  }

  /** Visible entries of a prefix or a [start, end) range of user keys, in key order. */
  async *scan(range: ScanRange, readTs: bigint, options: ScanOptions = {}): AsyncGenerator<Entry> {
    this.#checkOpen();
    checkTimestamp(readTs, 'read timestamp');
    let remaining = options.limit ?? Infinity;
    if (remaining <= 0) return;
    const now = nowOf(options);
    const bounds = scanBounds(range);
    const snapshot = this.#engine.snapshot();
    try {
      let page: { userKey: Buffer; head: Buffer }[] = [];
      const flush = async (): Promise<Entry[]> => {
        const raws = await this.#resolve(snapshot, page.map((p) => p.userKey), page.map((p) => p.head), readTs);
        page = [];
        return (await this.#materialize(raws, now)).filter((e): e is Entry => e !== undefined);
      };
      for await (const { key, value } of snapshot.iterate(bounds)) {
        page.push({ userKey: key.subarray(1), head: value });
        if (page.length < SCAN_PAGE) continue;
        for (const entry of await flush()) {
          yield entry;
          if (--remaining <= 0) return;
        }
      }
      if (page.length > 0) {
        for (const entry of await flush()) {
          yield entry;
          if (--remaining <= 0) return;
        }
      }
    } finally {
      await snapshot.release();
    }
  }

  /** scan() collected into an array. */
  async scanAll(range: ScanRange, readTs: bigint, options: ScanOptions = {}): Promise<Entry[]> {
    const out: Entry[] = [];
    for await (const entry of this.scan(range, readTs, options)) out.push(entry);
    return out;
  }

  // Finds the row of the newest version <= readTs of each key: an exact get
  // when the head is visible (the common case), else a seek.
  async #resolve(reader: EngineReader, userKeys: readonly Buffer[], heads: readonly (Buffer | null)[], readTs: bigint): Promise<(RawVersion | undefined)[]> {
    const out: (RawVersion | undefined)[] = new Array(userKeys.length).fill(undefined);
    const exact: number[] = [];
    const seek: number[] = [];
    heads.forEach((head, i) => {
      if (head === null) return;
      if (decodeTs(head) <= readTs) exact.push(i);
      else seek.push(i);
    });
    if (exact.length > 0) {
      const rows = await reader.getMany(exact.map((i) => versionRowKey(userKeys[i]!, decodeTs(heads[i]!))));
      exact.forEach((i, j) => {
        const row = rows[j];
        // A missing head version means GC raced this read below its horizon; seek instead.
        if (row === null || row === undefined) seek.push(i);
        else out[i] = { userKey: userKeys[i]!, commitTs: decodeTs(heads[i]!), row };
      });
    }
    for (const i of seek) out[i] = await seekVersion(reader, userKeys[i]!, readTs);
    return out;
  }

  // Decodes headers, opens every envelope in one batch call, then drops
  // tombstones and expired versions.
  async #materialize(raws: readonly (RawVersion | undefined)[], now: bigint): Promise<(Entry | undefined)[]> {
    const opened = this.#openRows(raws);
    return raws.map((raw, i) => {
      const o = opened[i];
      if (raw === undefined || o === undefined || o.value === undefined || isExpired(o.header, now)) return undefined;
      return { key: raw.userKey, value: o.value, commitTs: raw.commitTs, expireAt: o.header.expireAt };
    });
  }

  // Envelopes are opened before their header is believed: a header flipped
  // to "deleted" or "expired" on a sealed value fails authentication
  // instead of hiding the value. A failed open throws its typed error; it is
  // never turned into "not found". `value` is undefined for tombstones.
  #openRows(raws: readonly (RawVersion | undefined)[]): ({ header: ValueHeader; value: Buffer | undefined } | undefined)[] {
    const out: ({ header: ValueHeader; value: Buffer | undefined } | undefined)[] = new Array(raws.length).fill(undefined);
    const sealed: { index: number; item: OpenItem }[] = [];
    raws.forEach((raw, index) => {
      if (raw === undefined) return;
      const { header, headerBytes, body } = decodeValue(raw.row);
      const clear = header.tombstone ? undefined : Buffer.from(body.buffer, body.byteOffset, body.length);
      out[index] = { header, value: header.encryptionState === STATE_ENVELOPE ? undefined : clear };
      if (header.encryptionState === STATE_ENVELOPE) {
        const storeKey = encodeStoreKey(raw.userKey, raw.commitTs);
        sealed.push({ index, item: { envelope: body, aad: { kind: 'storage', valueHeader: headerBytes, storeKey } } });
      }
    });
    if (sealed.length === 0) return out;
    const results = this.#opener().open(sealed.map((s) => s.item));
    sealed.forEach(({ index }, i) => {
      const result = results[i]!;
      if (!result.ok) {
        this.#onOpenFailure?.(result.error);
        throw result.error;
      }
      const slot = out[index]!;
      if (!slot.header.tombstone) out[index] = { header: slot.header, value: decompress(result.plaintext, result.flag) };
    });
    return out;
  }

  #opener(): Sealer {
    if (this.#sealer === undefined) throw sealError('ErrUnknownKeyId', 'an encrypted value was read but no keystore is loaded');
    return this.#sealer;
  }

  /**
   * Every stored version (tombstones included), in store-key order, with
   * its header; for the rewrite sweep. `after` (a store_key, e.g. from a
   * rewrite cursor) resumes strictly after that version; `capacity` is
   * how many rows to fetch per engine round trip.
   */
  async *versions(options: { after?: Uint8Array; capacity?: number } = {}): AsyncGenerator<StoredVersion> {
    this.#checkOpen();
    const gte = options.after === undefined ? WHOLE_VERSION_SPACE.gte : Buffer.concat([tagged(SPACE_VERSION, options.after), Buffer.from([0])]);
    const range = { gte, lt: WHOLE_VERSION_SPACE.lt };
    for await (const { key, value } of this.#engine.iterate(range, options.capacity === undefined ? {} : { capacity: options.capacity })) {
      const { header, body } = decodeValue(value);
      const userKey = key.subarray(1, key.length - TS_BYTES);
      const commitTs = (1n << 64n) - 1n - key.readBigUInt64BE(key.length - TS_BYTES);
      const keyId = header.encryptionState === STATE_ENVELOPE ? (envelopeKeyId(body) ?? 0) : 0;
      yield { key: userKey, commitTs, header, keyId, row: value };
    }
  }

  /**
   * Opens stored versions (from versions()) in one batch call, whatever
   * their TTL; undefined for tombstones. Failures throw their typed error.
   */
  openVersions(versions: readonly StoredVersion[]): (Buffer | undefined)[] {
    this.#checkOpen();
    return this.#openRows(versions.map((v) => ({ userKey: v.key, commitTs: v.commitTs, row: v.row }))).map((o) => o?.value);
  }

  // ---- internal rows (outside MVCC) ---------------------------------------

  async getInternal(key: Uint8Array): Promise<Buffer | undefined> {
    this.#checkOpen();
    return (await this.#engine.getMany([internalRowKey(key)]))[0] ?? undefined;
  }

  async scanInternal(prefix: Uint8Array): Promise<{ key: Buffer; value: Buffer }[]> {
    this.#checkOpen();
    const gte = internalRowKey(prefix);
    const out: { key: Buffer; value: Buffer }[] = [];
    for await (const { key, value } of this.#engine.iterate({ gte, lt: prefixEnd(gte)! })) out.push({ key: key.subarray(1), value });
    return out;
  }

  /** The Raft index of the last applied batch that carried one; 0n when none. */
  async appliedIndex(): Promise<bigint> {
    this.#checkOpen();
    const [row] = await this.#engine.getMany([APPLIED_INDEX_KEY]);
    return row === null || row === undefined ? 0n : decodeTs(row);
  }

  // ---- garbage collection ------------------------------------------------

  /**
   * Removes versions older than `minRetainedTS`, keeping for each key the
   * newest version at or below it (and every version above it). Tombstones
   * are versions like any other here.
   */
  async gc(minRetainedTS: bigint): Promise<{ removed: number }> {
    this.#checkOpen();
    checkTimestamp(minRetainedTS, 'minRetainedTS');
    // Versions of one key come newest first, but versions of keys that
    // extend it ("a" and "ab") can interleave: each key stays open until
    // the iteration passes its last possible row.
    const open = new Map<string, Buffer>(); // user key → end of its rows
    let removed = 0;
    let pending: EngineOp[] = [];
    const snapshot = this.#engine.snapshot();
    try {
      for await (const { key } of snapshot.iterate(WHOLE_VERSION_SPACE)) {
        for (const [id, end] of open) if (Buffer.compare(end, key) < 0) open.delete(id);
        const userKey = key.subarray(1, key.length - TS_BYTES);
        const commitTs = (1n << 64n) - 1n - key.readBigUInt64BE(key.length - TS_BYTES);
        if (commitTs > minRetainedTS) continue;
        const id = userKey.toString('latin1');
        if (!open.has(id)) {
          open.set(id, versionRowKey(userKey, 0n));
          continue;
        }
        pending.push({ type: 'del', key });
        removed++;
        if (pending.length >= GC_DELETE_BATCH) {
          await this.#enqueueWrite(pending);
          pending = [];
        }
      }
      if (pending.length > 0) await this.#enqueueWrite(pending);
    } finally {
      await snapshot.release();
    }
    return { removed };
  }

  // ---- snapshots (SPEC §5.4) --------------------------------------------

  /** A stream of the store's raw rows (ciphertext stays ciphertext); header null = legacy stream. */
  snapshotStream(header: SnapshotHeader | null): AsyncGenerator<Buffer> {
    this.#checkOpen();
    return writeSnapshot(this.#engine, header);
  }

  /** Removes every row (before installing a snapshot over old state). */
  async clear(): Promise<void> {
    this.#checkOpen();
    await this.#enqueue(() => {
      this.#generation++;
      return this.#engine.write([{ type: 'delRange', gte: Buffer.from([0]), lt: Buffer.from([SPACE_END]) }]);
    });
  }

  /** Restores a snapshot stream into this (empty) store. */
  async restoreSnapshot(source: AsyncIterable<Uint8Array>): Promise<SnapshotInfo> {
    this.#checkOpen();
    await this.drain();
    for await (const row of this.#engine.iterate({ gte: Buffer.from([0]), lt: Buffer.from([SPACE_END]) }, { limit: 1 })) {
      throw new RangeError(`restore needs an empty store (found row 0x${row.key.subarray(0, 8).toString('hex')})`);
    }
    // Guarded batches are dropped from the first restored row until the
    // restore has ended, and those read before it are stale after it.
    await this.#enqueue(async () => {
      this.#generation++;
      this.#restoring = true;
    });
    try {
      return await readSnapshot(source, (ops) => this.#enqueueWrite(ops));
    } finally {
      await this.#enqueue(async () => {
        this.#generation++;
        this.#restoring = false;
      }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.drain();
    await this.#engine.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw sealError('ErrStoreClosed', 'the store is closed');
  }
}

async function seekVersion(reader: EngineReader, userKey: Buffer, readTs: bigint): Promise<RawVersion | undefined> {
  const lt = prefixEnd(tagged(SPACE_VERSION, userKey))!;
  // Usually the first row is the answer: fetch a few per round trip, not a page.
  for await (const { key, value } of reader.iterate({ gte: versionRowKey(userKey, readTs), lt }, { capacity: 4 })) {
    // Rows of longer keys that start with userKey sort in between: skip them.
    if (key.length !== 1 + userKey.length + TS_BYTES) continue;
    return { userKey, commitTs: (1n << 64n) - 1n - key.readBigUInt64BE(key.length - TS_BYTES), row: value };
  }
  return undefined;
}

const EMPTY = Buffer.alloc(0);

// The rows of one batch share one allocation (the engine copies them into
// its write batch): thousands of small buffers per batch cost more in
// allocation and GC than the copy itself.
function placeEnvelopes(rows: EngineOp[], targets: readonly { header: Uint8Array; rowKey: Buffer; rowIndex: number }[], envelopes: readonly Uint8Array[]): void {
  let total = 0;
  for (const envelope of envelopes) total += VALUE_HEADER_BYTES + envelope.length;
  const all = Buffer.allocUnsafeSlow(total);
  let at = 0;
  for (let i = 0; i < targets.length; i++) {
    const { header, rowKey, rowIndex } = targets[i]!;
    const envelope = envelopes[i]!;
    const row = all.subarray(at, at + VALUE_HEADER_BYTES + envelope.length);
    at += row.length;
    row.set(header, 0);
    row.set(envelope, VALUE_HEADER_BYTES);
    rows[rowIndex] = { type: 'put', key: rowKey, value: row };
  }
}

function rewrittenExpiry(ifRow: Uint8Array): bigint {
  const { header } = decodeValue(ifRow);
  if (header.tombstone) throw new RangeError('tombstones are not rewritten');
  return header.expireAt;
}

function decompress(plaintext: Uint8Array, flag: number): Buffer {
  if ((flag & FLAG_COMPRESSED) === 0) return Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.length);
  try {
    return snappy.uncompressSync(plaintext, { asBuffer: true }) as Buffer;
  } catch (err) {
    // The bytes were authenticated, so this is a bug in the writer, not tampering.
    throw sealError('ErrStoreCorrupt', 'an authenticated value does not decompress', err);
  }
}

function scanBounds(range: ScanRange): { gte: Buffer; lt: Buffer } {
  const whole = Buffer.from([SPACE_HEAD + 1]);
  if ('prefix' in range) {
    const gte = headRowKey(range.prefix);
    return { gte, lt: prefixEnd(gte) ?? whole };
  }
  return {
    gte: headRowKey(range.start ?? Buffer.alloc(0)),
    lt: range.end === undefined ? whole : headRowKey(range.end),
  };
}

function checkUserKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array)) throw new TypeError('a user key must be a Uint8Array');
  if (isReservedKey(key)) throw sealError('ErrReservedKey', 'user keys under "!encryption|" are reserved for internal rows');
}

function internalRowKey(key: Uint8Array): Buffer {
  if (!(key instanceof Uint8Array) || !isReservedKey(key)) throw new RangeError('internal row keys start with "!encryption|"');
  return tagged(SPACE_INTERNAL, key);
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function nowOf(options: ReadOptions): bigint {
  return options.now ?? BigInt(Date.now());
}
