// The small engine interface the MVCC store runs on, and an in-memory
// engine. The same store test suite runs on this engine and on RocksDB
// (rocksdb.ts), in the manner of abstract-level: the store validates,
// encodes and seals; the engine only stores bytes.
//
// Buffers: values an engine returns belong to the caller; keys and values
// handed to write() must not be changed by the caller afterwards.

export type EngineOp =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: Uint8Array }
  | { readonly type: 'delRange'; readonly gte: Uint8Array; readonly lt: Uint8Array };

export interface EngineRange {
  readonly gte: Uint8Array;
  readonly lt: Uint8Array;
}

export interface EngineEntry {
  readonly key: Buffer;
  readonly value: Buffer;
}

export interface IterateOptions {
  readonly limit?: number;
  readonly capacity?: number;
}

export interface EngineReader {
  /** Exact gets in one round trip; null where a key is absent. */
  getMany(keys: readonly Uint8Array[]): Promise<(Buffer | null)[]>;
  /** Entries of [gte, lt) in key order, at most `limit`; `capacity` hints how many to fetch per round trip. */
  iterate(range: EngineRange, options?: IterateOptions): AsyncIterable<EngineEntry>;
}

export interface EngineSnapshot extends EngineReader {
  release(): Promise<void>;
}

export interface Engine extends EngineReader {
  /** Applies every op atomically, in order. */
  write(ops: readonly EngineOp[]): Promise<void>;
  /** A consistent read view until release(). */
  snapshot(): EngineSnapshot;
  /**
   * Makes every write completed so far survive a power loss (RocksDB: flush
   * the memtables to fsynced SST files). Writes alone survive a process kill
   * only.
   */
  persist(): Promise<void>;
  close(): Promise<void>;
}

interface Row {
  key: Buffer;
  value: Buffer;
}

/** Index of the first row whose key is >= `key`. */
function lowerBound(rows: readonly Row[], key: Uint8Array): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(rows[mid]!.key, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

class MemoryReader implements EngineReader {
  constructor(protected rows: Row[]) {}

  async getMany(keys: readonly Uint8Array[]): Promise<(Buffer | null)[]> {
    return keys.map((key) => {
      const i = lowerBound(this.rows, key);
      const row = this.rows[i];
      return row !== undefined && Buffer.compare(row.key, key) === 0 ? Buffer.from(row.value) : null;
    });
  }

  async *iterate(range: EngineRange, options: IterateOptions = {}): AsyncIterable<EngineEntry> {
    // Iterates a frozen copy of the row list, as a RocksDB iterator sees the
    // state at its creation.
    const rows = this.rows;
    let remaining = options.limit ?? Infinity;
    for (let i = lowerBound(rows, range.gte); i < rows.length && remaining > 0; i++, remaining--) {
      const row = rows[i]!;
      if (Buffer.compare(row.key, range.lt) >= 0) return;
      yield { key: Buffer.from(row.key), value: Buffer.from(row.value) };
    }
  }
}

/** A sorted-array engine for tests: copy-on-write, so snapshots are cheap to hold. */
export class MemoryEngine extends MemoryReader implements Engine {
  #closed = false;

  constructor() {
    super([]);
  }

  async write(ops: readonly EngineOp[]): Promise<void> {
    if (this.#closed) throw new Error('engine is closed');
    const rows = this.rows.slice();
    for (const op of ops) {
      if (op.type === 'delRange') {
        const from = lowerBound(rows, op.gte);
        rows.splice(from, lowerBound(rows, op.lt) - from);
        continue;
      }
      const i = lowerBound(rows, op.key);
      const hit = rows[i] !== undefined && Buffer.compare(rows[i]!.key, op.key) === 0;
      if (op.type === 'put') {
        const row = { key: Buffer.from(op.key), value: Buffer.from(op.value) };
        if (hit) rows[i] = row;
        else rows.splice(i, 0, row);
      } else if (hit) {
        rows.splice(i, 1);
      }
    }
    this.rows = rows;
  }

  snapshot(): EngineSnapshot {
    const reader = new MemoryReader(this.rows);
    return Object.assign(reader, { release: async () => undefined });
  }

  /** Nothing to make durable: memory holds it. */
  async persist(): Promise<void> {}

  async close(): Promise<void> {
    this.#closed = true;
  }
}
