// The RocksDB engine: rocksdb-native, embedded in the process.
//
// Durability: rocksdb-native has no synced write option. A write that
// resolved is in RocksDB's WAL in the OS page cache: it survives a process
// kill, not a power loss. The node's Raft log (fsynced) is the durable
// record; the store keeps the applied index in the same batch as each apply
// and the log replays from it on start (SPEC §6).

import { createRequire } from 'node:module';
import { sealError } from '../errors/index.js';
import type { Engine, EngineEntry, EngineOp, EngineRange, EngineReader, EngineSnapshot, IterateOptions } from './engine.js';

const require = createRequire(import.meta.url);

// rocksdb-native ships no type declarations; this is the part used here.
interface RocksBatch {
  tryPut(key: Uint8Array, value: Uint8Array): void;
  tryDelete(key: Uint8Array): void;
  tryDeleteRange(start: Uint8Array, end: Uint8Array): void;
  get(key: Uint8Array): Promise<Buffer | null>;
  flush(): Promise<void>;
  tryFlush(): void;
  destroy(): void;
}

interface RocksSession {
  ready(): Promise<void>;
  close(): Promise<void>;
  read(opts?: { capacity?: number; autoDestroy?: boolean }): RocksBatch;
  write(opts?: { capacity?: number; autoDestroy?: boolean }): RocksBatch;
  iterator(range: object, opts?: object): AsyncIterable<{ key: Buffer; value: Buffer }>;
  snapshot(): RocksSession;
  flush(): Promise<void>;
  compactRange(): Promise<void>;
}

type RocksCtor = new (path: string, opts?: object) => RocksSession;
const RocksDB = require('rocksdb-native') as RocksCtor;

// Entries fetched per iterator round trip: large enough to amortise the
// thread-pool hop, small enough to keep memory flat on big scans.
const ITERATOR_CAPACITY = 256;

class RocksReader implements EngineReader {
  constructor(protected readonly session: RocksSession) {}

  async getMany(keys: readonly Uint8Array[]): Promise<(Buffer | null)[]> {
    if (keys.length === 0) return [];
    const batch = this.session.read({ capacity: keys.length, autoDestroy: true });
    const pending = keys.map((key) => batch.get(key));
    batch.tryFlush();
    return Promise.all(pending);
  }

  iterate(range: EngineRange, options: IterateOptions = {}): AsyncIterable<EngineEntry> {
    const limit = options.limit ?? Infinity;
    const capacity = Math.max(1, Math.min(options.capacity ?? ITERATOR_CAPACITY, limit));
    return this.session.iterator({ gte: range.gte, lt: range.lt }, { limit, capacity });
  }
}

export interface RocksOptions {
  /**
   * Memtable size (RocksDB write_buffer_size; two may be in memory at once).
   * Default 64 MiB; a bulk rewrite that must stay within a memory bound
   * opens with less.
   */
  readonly writeBufferBytes?: number;
  /**
   * false: no block cache (index and filter blocks stay with their table
   * readers). A one-pass scan reads each block once, so a cache only costs
   * memory. Default on.
   */
  readonly blockCache?: boolean;
}

export class RocksEngine extends RocksReader implements Engine {
  readonly path: string;

  private constructor(session: RocksSession, path: string) {
    super(session);
    this.path = path;
  }

  /** Opens (creating if needed); ErrDataDirLocked when another process or handle holds it. */
  static async open(path: string, options: RocksOptions = {}): Promise<RocksEngine> {
    const session = new RocksDB(path, {
      ...(options.writeBufferBytes === undefined ? {} : { writeBufferSize: options.writeBufferBytes }),
      ...(options.blockCache === false ? { blockCache: false, tableCacheIndexAndFilterBlocks: false } : {}),
    });
    try {
      await session.ready();
    } catch (err) {
      // RocksDB reports its LOCK file being held only through the message.
      if (err instanceof Error && /\bLOCK\b|lock hold/i.test(err.message)) {
        throw sealError('ErrDataDirLocked', `the store at ${path} is open in another process or handle`, err);
      }
      throw err;
    }
    return new RocksEngine(session, path);
  }

  async write(ops: readonly EngineOp[]): Promise<void> {
    if (ops.length === 0) return;
    const batch = this.session.write({ capacity: ops.length, autoDestroy: true });
    for (const op of ops) {
      if (op.type === 'put') batch.tryPut(op.key, op.value);
      else if (op.type === 'del') batch.tryDelete(op.key);
      else batch.tryDeleteRange(op.gte, op.lt);
    }
    await batch.flush();
  }

  snapshot(): EngineSnapshot {
    const session = this.session.snapshot();
    const reader = new RocksReader(session);
    return Object.assign(reader, { release: () => session.close() });
  }

  /** Flushes memtables and compacts, so that disk usage reflects the data (benchmarks). */
  async compact(): Promise<void> {
    await this.session.flush();
    await this.session.compactRange();
  }

  /** Flushes the memtables to SST files, which RocksDB fsyncs with the MANIFEST. */
  async persist(): Promise<void> {
    await this.session.flush();
  }

  async close(): Promise<void> {
    await this.session.close();
  }
}
