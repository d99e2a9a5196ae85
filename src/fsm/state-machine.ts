// The replicated state machine: applies committed Raft entries to the store.
//
// Determinism. Everything an apply decides comes from the store's contents
// and the entry bytes: the commit timestamp (hlc.ts), the "now" used for TTL
// arithmetic (the commit timestamp's milliseconds), dedupe hits (a window
// measured in commit-timestamp milliseconds, not wall time). Same log → same
// store on every replica, however the driver groups entries into calls.
//
// Atomicity and replay. One `applyEntries` call is one store batch that also
// records the applied index of its last entry, so a crash leaves the store at
// a batch boundary, and entries at or below the applied index are skipped on
// replay. The clock state and dedupe records live in the store's internal
// rows (keys below) and are written in the same batch.
//
// Dedupe. Raft may commit the same proposal twice (a driver re-proposes after
// a leader change). A request entry whose non-zero proposal id was applied
// within DEDUPE_WINDOW_MS (commit-time) is not applied again: the first
// result is returned and no commit timestamp is consumed.
//
// Halting. A payload that cannot be decoded or applied throws a SealError
// (`ErrApplyPayload`, `ErrEncryptionApply`, ...). The entries before it in the
// same call are written with their applied index, then the machine refuses
// every further apply: nothing is ever skipped, and a restart replays from
// the failed entry.

import { isSealError, sealError, type SealError } from '../errors/index.js';
import { HybridClock, commitTimestamp, hlcPhysicalMs } from './hlc.js';
import {
  PayloadHandlers,
  TAG_BATCH,
  TAG_HLC_CEILING,
  TAG_REQUEST,
  decodeCorePayload,
  packValue,
  payloadTag,
  unpackValue,
} from './payload.js';
import type { FsmStore, FsmStoreOp, KvReader, KvWrite, RequestExecutor, VisibleValue } from './ports.js';

// The state machine's own rows live in the store's internal (non-MVCC)
// namespace, which is the reserved prefix of SPEC §5.1, under `fsm|`.
/** Internal row holding ceiling(8 BE) ‖ last_commit_ts(8 BE). */
export const CLOCK_ROW_KEY = Buffer.from('!encryption|fsm|clock');
/** Prefix of dedupe rows: prefix ‖ proposal_id(8 BE) → msgpack([commit_ms, result]). */
export const DEDUPE_ROW_PREFIX = Buffer.from('!encryption|fsm|dedupe|');
/**
 * How long (commit-time ms) a proposal id is remembered. A proposer retries
 * one id for at most 15 s (src/node PROPOSE_DEADLINE_MS), so a duplicate
 * commits well inside this window; it bounds the dedupe rows to about two
 * minutes of writes. A protocol constant: it decides replicated state, so
 * every replica of a cluster must use the same value.
 */
export const DEDUPE_WINDOW_MS = 2 * 60_000;

/**
 * A committed entry handed to the state machine, in log order. Indexes
 * increase but may skip entries that do not reach the state machine (a new
 * leader's empty entry, membership changes). `payload` null = such an entry
 * handed over anyway (it only advances the applied index).
 */
export interface EntryToApply {
  index: number;
  /** 0n = not deduplicated (internal entries). */
  proposalId: bigint;
  payload: Uint8Array | null;
}

export type EntryOutcome =
  | { kind: 'request'; commitTs: bigint; result: unknown; duplicate: false }
  | { kind: 'request'; result: unknown; duplicate: true }
  | { kind: 'ceiling'; ceiling: bigint }
  | { kind: 'extension'; tag: number; result: unknown }
  | { kind: 'noop' }
  | { kind: 'replayed' };

export interface EntryResult {
  index: number;
  proposalId: bigint;
  outcome: EntryOutcome;
}

/** What an extension handler (tags 0x03..0x05) may touch during its apply. */
export interface ApplyTx {
  readonly index: number;
  /** Milliseconds of the last commit timestamp: a deterministic "now". */
  readonly nowMs: number;
  get(key: Buffer): Promise<VisibleValue | undefined>;
  getInternal(key: Buffer): Promise<Buffer | undefined>;
  /** Internal rows under `prefix` as stored (an extension entry is its own store batch: nothing is staged before it). */
  scanInternal(prefix: Buffer): Promise<[Buffer, Buffer][]>;
  putInternal(key: Buffer, value: Buffer): void;
  deleteInternal(key: Buffer): void;
}

export interface StateMachineOptions {
  clock?: HybridClock;
  dedupeWindowMs?: number;
  /**
   * Called before the writes of a request entry are staged; a throw halts
   * apply (the encryption part: a node that must seal but is not a
   * registered writer, SPEC §5.3).
   */
  writeGate?: (writes: number) => void;
  /** The Phase 2 cutover index once applied: snapshots then use header v2 (SPEC §5.4). */
  snapshotCutover?: () => bigint | undefined;
  /**
   * Called after a snapshot was installed, with its header's cutover; a
   * throw halts (ErrEnvelopeCutoverDivergence, or keys that cannot load).
   */
  afterRestore?: (info: { appliedIndex: number; cutover: bigint | undefined }) => Promise<void>;
}

function dedupeRowKey(proposalId: bigint): Buffer {
  const key = Buffer.allocUnsafe(DEDUPE_ROW_PREFIX.length + 8);
  DEDUPE_ROW_PREFIX.copy(key);
  key.writeBigUInt64BE(proposalId, DEDUPE_ROW_PREFIX.length);
  return key;
}

function encodeClockRow(ceiling: bigint, lastCommitTs: bigint): Buffer {
  const row = Buffer.allocUnsafe(16);
  row.writeBigUInt64BE(ceiling, 0);
  row.writeBigUInt64BE(lastCommitTs, 8);
  return row;
}

function decodeDedupeRow(row: Buffer): { commitMs: number; result: unknown } {
  const decoded = unpackValue(row);
  if (!Array.isArray(decoded) || typeof decoded[0] !== 'number') {
    throw sealError('ErrApplyPayload', 'dedupe row is malformed');
  }
  return { commitMs: decoded[0], result: decoded[1] };
}

/** Staged writes of one `applyEntries` call, readable before they are written. */
class Batch implements KvReader {
  readonly ops: FsmStoreOp[] = [];
  readonly #kv = new Map<string, VisibleValue | null>();
  readonly #internal = new Map<string, Buffer | null>();
  nowMs = 0;

  constructor(readonly store: FsmStore) {}

  async get(key: Buffer): Promise<VisibleValue | undefined> {
    const staged = this.#kv.get(key.toString('hex'));
    if (staged === undefined) return this.store.getLatest(key, this.nowMs);
    if (staged === null || (staged.expireAt !== 0 && staged.expireAt <= this.nowMs)) return undefined;
    return { value: Buffer.from(staged.value), expireAt: staged.expireAt };
  }

  async getInternal(key: Buffer): Promise<Buffer | undefined> {
    const staged = this.#internal.get(key.toString('hex'));
    if (staged === undefined) return this.store.getInternal(key);
    return staged === null ? undefined : Buffer.from(staged);
  }

  write(write: KvWrite, commitTs: bigint): void {
    this.ops.push({ ...write, commitTs });
    this.#kv.set(write.key.toString('hex'), write.kind === 'put' ? { value: write.value, expireAt: write.expireAt } : null);
  }

  putInternal(key: Buffer, value: Buffer): void {
    this.ops.push({ kind: 'internal-put', key, value });
    this.#internal.set(key.toString('hex'), value);
  }

  deleteInternal(key: Buffer): void {
    this.ops.push({ kind: 'internal-delete', key });
    this.#internal.set(key.toString('hex'), null);
  }
}

function isExtension(entry: EntryToApply): boolean {
  const tag = entry.payload?.[0];
  return tag !== undefined && tag !== TAG_REQUEST && tag !== TAG_BATCH && tag !== TAG_HLC_CEILING;
}

export class StateMachine {
  readonly clock: HybridClock;
  readonly handlers = new PayloadHandlers<ApplyTx>();
  readonly #store: FsmStore;
  readonly #executor: RequestExecutor;
  readonly #dedupeWindowMs: number;
  readonly #options: StateMachineOptions;
  // Proposal id (hex) → commit ms, in apply order (so commit ms never decreases).
  readonly #dedupe = new Map<string, { id: bigint; commitMs: number }>();
  #appliedIndex = 0;
  #halted: SealError | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(store: FsmStore, executor: RequestExecutor, options: StateMachineOptions) {
    this.#store = store;
    this.#executor = executor;
    this.clock = options.clock ?? new HybridClock();
    this.#dedupeWindowMs = options.dedupeWindowMs ?? DEDUPE_WINDOW_MS;
    this.#options = options;
  }

  /** Opens over a store, loading the applied index, clock and dedupe window. */
  static async open(store: FsmStore, executor: RequestExecutor, options: StateMachineOptions = {}): Promise<StateMachine> {
    const machine = new StateMachine(store, executor, options);
    await machine.#load();
    return machine;
  }

  /** Index of the last applied entry. */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** The error that stopped apply, if any. */
  get halted(): SealError | undefined {
    return this.#halted;
  }

  /**
   * Applies consecutive committed entries as one store batch; returns one
   * result per entry, in order. Entries at or below the applied index are
   * reported as `replayed` and not applied again.
   */
  applyEntries(entries: readonly EntryToApply[]): Promise<EntryResult[]> {
    return this.#serial(() => this.#applyEntries(entries));
  }

  /**
   * A snapshot of the state at the current applied index: the store's
   * stream, with the applied ceiling in its header. The stream's read view
   * is taken between two applies (its first chunk is pulled here), so the
   * index, the ceiling and the rows agree.
   */
  snapshot(): Promise<{ appliedIndex: number; stream: AsyncIterable<Uint8Array> }> {
    return this.#serial(async () => {
      this.#checkRunning();
      const appliedIndex = this.#appliedIndex;
      const cutover = this.#options.snapshotCutover?.();
      const header = cutover === undefined ? { ceiling: this.clock.appliedCeiling } : { ceiling: this.clock.appliedCeiling, cutover };
      const rows = this.#store.snapshotStream(header)[Symbol.asyncIterator]();
      const first = await rows.next();
      async function* stream(): AsyncGenerator<Uint8Array> {
        try {
          if (first.done === true) return;
          yield first.value;
          for (let next = await rows.next(); next.done !== true; next = await rows.next()) yield next.value;
        } finally {
          // Releases the store's read view when the consumer stops early.
          await rows.return?.();
        }
      }
      return { appliedIndex, stream: stream() };
    });
  }

  /** Replaces the state with a snapshot (taken at `appliedIndex`, checked when given). */
  restoreSnapshot(stream: AsyncIterable<Uint8Array>, appliedIndex?: number): Promise<void> {
    return this.#serial(async () => {
      this.#checkRunning();
      try {
        const { ceiling, cutover } = await this.#store.restoreSnapshot(stream, { appliedIndex });
        this.#dedupe.clear();
        await this.#load();
        this.clock.observeCeiling(ceiling);
        await this.#options.afterRestore?.({ appliedIndex: this.#appliedIndex, cutover });
      } catch (err) {
        // The store may be half restored (or emptied): nothing may apply on top of it.
        this.#halted = isSealError(err) ? err : sealError('ErrSnapshotCorrupt', 'snapshot install failed', err);
        throw err;
      }
    });
  }

  /**
   * Runs `work` between two applies, with the applied index: nothing
   * applies until it resolves, so the store and everything an apply
   * changes with it (the sidecar) agree there. A backup takes its point
   * here; `work` must be short (it holds apply up).
   */
  atApplyPoint<T>(work: (appliedIndex: number) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      this.#checkRunning();
      return work(this.#appliedIndex);
    });
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #checkRunning(): void {
    if (this.#halted) throw sealError(this.#halted.code, `apply is halted: ${this.#halted.message}`, this.#halted);
  }

  async #load(): Promise<void> {
    this.#appliedIndex = await this.#store.appliedIndex();
    const clockRow = await this.#store.getInternal(CLOCK_ROW_KEY);
    if (clockRow !== undefined) {
      if (clockRow.length !== 16) throw sealError('ErrApplyPayload', 'clock row is malformed');
      this.clock.observeCeiling(clockRow.readBigUInt64BE(0));
      this.clock.observeCommit(clockRow.readBigUInt64BE(8));
    }
    const records: { id: bigint; commitMs: number }[] = [];
    for await (const [key, row] of this.#store.scanInternal(DEDUPE_ROW_PREFIX)) {
      records.push({ id: key.readBigUInt64BE(DEDUPE_ROW_PREFIX.length), commitMs: decodeDedupeRow(row).commitMs });
    }
    records.sort((a, b) => a.commitMs - b.commitMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const record of records) this.#dedupe.set(record.id.toString(16), record);
  }

  async #applyEntries(entries: readonly EntryToApply[]): Promise<EntryResult[]> {
    this.#checkRunning();
    const batch = new Batch(this.#store);
    batch.nowMs = hlcPhysicalMs(this.clock.lastCommitTs);
    let ceiling = this.clock.appliedCeiling;
    let lastCommitTs = this.clock.lastCommitTs;
    let lastIndex = this.#appliedIndex;
    const results: EntryResult[] = [];

    const flush = async (): Promise<void> => {
      if (lastIndex === this.#appliedIndex) return;
      if (ceiling !== this.clock.appliedCeiling || lastCommitTs !== this.clock.lastCommitTs) {
        batch.putInternal(CLOCK_ROW_KEY, encodeClockRow(ceiling, lastCommitTs));
      }
      this.#pruneDedupe(batch, hlcPhysicalMs(lastCommitTs));
      await this.#store.applyBatch(batch.ops, { appliedIndex: lastIndex });
      batch.ops.length = 0;
      this.#appliedIndex = lastIndex;
      this.clock.observeCeiling(ceiling);
      this.clock.observeCommit(lastCommitTs);
    };

    for (const entry of entries) {
      if (entry.index <= lastIndex) {
        if (lastIndex !== this.#appliedIndex) throw new RangeError(`entry ${entry.index} out of order after ${lastIndex}`);
        results.push({ index: entry.index, proposalId: entry.proposalId, outcome: { kind: 'replayed' } });
        continue;
      }
      // An extension entry (0x03..0x05) is a store batch of its own, so what
      // it switches (sealing, keys) takes effect exactly from the next entry.
      const extension = isExtension(entry);
      if (extension) await flush();
      const mark = batch.ops.length;
      let outcome: EntryOutcome;
      try {
        outcome = await this.#applyOne(entry, batch, {
          ceiling,
          lastCommitTs,
          setCeiling: (c) => (ceiling = c > ceiling ? c : ceiling),
          setCommit: (ts) => (lastCommitTs = ts),
        });
      } catch (err) {
        // The failed entry's partial writes are dropped; the ones before it are kept.
        batch.ops.length = mark;
        const halt = isSealError(err) ? err : sealError('ErrApplyPayload', `entry ${entry.index} failed to apply`, err);
        this.#halted = halt;
        await flush();
        throw halt;
      }
      lastIndex = entry.index;
      results.push({ index: entry.index, proposalId: entry.proposalId, outcome });
      if (extension) await flush();
    }
    try {
      await flush();
    } catch (err) {
      // The in-memory dedupe window already holds this batch: never apply again in this process.
      this.#halted = isSealError(err) ? err : sealError('ErrStoreClosed', 'apply batch could not be written', err);
      throw err;
    }
    return results;
  }

  async #applyOne(
    entry: EntryToApply,
    batch: Batch,
    state: {
      ceiling: bigint;
      lastCommitTs: bigint;
      setCeiling: (ceiling: bigint) => void;
      setCommit: (ts: bigint) => void;
    },
  ): Promise<EntryOutcome> {
    if (entry.payload === null || entry.payload.length === 0) return { kind: 'noop' };
    const tag = payloadTag(entry.payload);
    if (tag !== TAG_REQUEST && tag !== TAG_BATCH && tag !== TAG_HLC_CEILING) {
      const handler = this.handlers.lookup(tag);
      batch.nowMs = hlcPhysicalMs(state.lastCommitTs);
      if (entry.proposalId !== 0n) {
        // Committed twice (a retried admin proposal): the first result stands.
        const first = await this.#dedupeHit(entry.proposalId, batch.nowMs, batch);
        if (first !== undefined) return { kind: 'extension', tag, result: first.result };
      }
      const tx: ApplyTx = {
        index: entry.index,
        nowMs: batch.nowMs,
        get: (key) => batch.get(key),
        getInternal: (key) => batch.getInternal(key),
        scanInternal: async (prefix) => {
          const rows: [Buffer, Buffer][] = [];
          for await (const row of this.#store.scanInternal(prefix)) rows.push(row);
          return rows;
        },
        putInternal: (key, value) => batch.putInternal(key, value),
        deleteInternal: (key) => batch.deleteInternal(key),
      };
      let result: unknown;
      try {
        result = await handler(entry.payload, tx);
      } catch (err) {
        throw isSealError(err) ? err : sealError('ErrEncryptionApply', `tag 0x${tag.toString(16)} entry ${entry.index} failed`, err);
      }
      if (entry.proposalId !== 0n) this.#remember(entry.proposalId, batch.nowMs, result, batch);
      return { kind: 'extension', tag, result };
    }
    const payload = decodeCorePayload(entry.payload);
    if (payload.tag === TAG_HLC_CEILING) {
      state.setCeiling(payload.ceiling);
      return { kind: 'ceiling', ceiling: payload.ceiling > state.ceiling ? payload.ceiling : state.ceiling };
    }
    const commitTs = commitTimestamp(state.lastCommitTs, state.ceiling, payload.proposedTs);
    const nowMs = hlcPhysicalMs(commitTs);
    if (entry.proposalId !== 0n) {
      const first = await this.#dedupeHit(entry.proposalId, nowMs, batch);
      if (first !== undefined) return { kind: 'request', result: first.result, duplicate: true };
    }
    batch.nowMs = nowMs;
    const requests = payload.tag === TAG_REQUEST ? [payload.request] : payload.requests;
    let executed: { writes: KvWrite[]; results: unknown[] };
    try {
      executed = await this.#executor.execute(batch, requests, nowMs);
    } catch (err) {
      // A committed request the executor refuses (malformed, written by an incompatible build) halts apply.
      throw sealError('ErrApplyPayload', `entry ${entry.index}: request could not be executed`, err);
    }
    // Later writes to a key in one entry replace earlier ones: one version per key and commit ts.
    const lastWrite = new Map<string, KvWrite>();
    for (const write of executed.writes) {
      const hex = write.key.toString('hex');
      lastWrite.delete(hex);
      lastWrite.set(hex, write);
    }
    if (lastWrite.size > 0) this.#options.writeGate?.(lastWrite.size);
    for (const write of lastWrite.values()) batch.write(write, commitTs);
    const result = payload.tag === TAG_REQUEST ? executed.results[0] : executed.results;
    state.setCommit(commitTs);
    if (entry.proposalId !== 0n) this.#remember(entry.proposalId, nowMs, result, batch);
    return { kind: 'request', commitTs, result, duplicate: false };
  }

  #remember(proposalId: bigint, nowMs: number, result: unknown, batch: Batch): void {
    batch.putInternal(dedupeRowKey(proposalId), packValue([nowMs, result]));
    const hex = proposalId.toString(16);
    this.#dedupe.delete(hex);
    this.#dedupe.set(hex, { id: proposalId, commitMs: nowMs });
  }

  async #dedupeHit(proposalId: bigint, nowMs: number, batch: Batch): Promise<{ result: unknown } | undefined> {
    const record = this.#dedupe.get(proposalId.toString(16));
    // The window is judged in commit time, so a hit does not depend on when pruning ran.
    if (record === undefined || record.commitMs < nowMs - this.#dedupeWindowMs) return undefined;
    const row = await batch.getInternal(dedupeRowKey(proposalId));
    if (row === undefined) throw sealError('ErrApplyPayload', `dedupe row for proposal ${proposalId} is missing`);
    return { result: decodeDedupeRow(row).result };
  }

  #pruneDedupe(batch: Batch, nowMs: number): void {
    const cutoff = nowMs - this.#dedupeWindowMs;
    for (const [hex, record] of this.#dedupe) {
      if (record.commitMs >= cutoff) break;
      batch.deleteInternal(dedupeRowKey(record.id));
      this.#dedupe.delete(hex);
    }
  }
}
