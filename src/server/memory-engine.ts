// MemoryEngine: a single-node Engine over an in-memory ordered map. It runs
// the same applyRequests as the replicated state machine, one batch at a
// time, so its behaviour is the cluster's minus replication. Used for
// `sealkv serve-memory`, tests and the RESP benchmark.

import { applyRequests, isWriteRequest, type KvRangeReader, type KvReply, type KvRequest, type VisibleValue } from '../kv/index.js';
import { sealError } from '../errors/index.js';
import type { Engine, EngineStatus, ReadOptions } from './engine.js';

export interface MemoryEngineOptions {
  /** Clock for expiry; tests pass a fake one. Default Date.now. */
  now?: () => number;
}

/** Batches between sweeps of expired keys (each sweep is O(keys)). */
const SWEEP_EVERY_BATCHES = 1024;

/**
 * Keys are held as latin1 strings: their code units compare exactly as the
 * bytes do. Stored buffers are the parser's (small ones share Node's 8 KiB
 * pool slabs, which they keep alive); copying each into its own allocation
 * cost about 1.8x in SET throughput, too much for what a dev engine saves.
 */
export class MemoryEngine implements Engine {
  readonly #now: () => number;
  readonly #data = new Map<string, { key: Buffer; value: VisibleValue }>();
  /** Sorted keys, rebuilt lazily after the key set changes. */
  #sorted: string[] | null = [];
  /** Serialises batches, reads included. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  #applied = 0;

  constructor(options: MemoryEngineOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  readonly #reader: KvRangeReader = {
    get: async (key) => this.#data.get(key.toString('latin1'))?.value,
    scan: async (after, limit) => {
      const sorted = this.#sortedKeys();
      let i = 0;
      if (after !== null) {
        const start = after.toString('latin1');
        let lo = 0;
        let hi = sorted.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (sorted[mid]! <= start) lo = mid + 1;
          else hi = mid;
        }
        i = lo;
      }
      return sorted.slice(i, i + limit).map((id) => this.#data.get(id)!);
    },
  };

  #sortedKeys(): string[] {
    if (this.#sorted === null) this.#sorted = [...this.#data.keys()].sort();
    return this.#sorted;
  }

  /** Drops expired keys; reads already hide them, this only frees their memory. */
  #sweepExpired(): void {
    const now = this.#now();
    for (const [id, entry] of this.#data) {
      if (entry.value.expireAt !== 0 && entry.value.expireAt <= now) {
        this.#data.delete(id);
        this.#sorted = null;
      }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw sealError('ErrStoreClosed', 'the memory engine is closed');
  }

  /** Runs `task` after every batch queued before it, as the apply loop of a real node does. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  execute(requests: readonly KvRequest[]): Promise<KvReply[]> {
    return this.#serial(async () => {
      this.#checkOpen();
      const { replies, writes } = await applyRequests(this.#reader, requests, this.#now());
      for (const write of writes) {
        const id = write.key.toString('latin1');
        const existed = this.#data.has(id);
        if (write.kind === 'put') this.#data.set(id, { key: write.key, value: { value: write.value, expireAt: write.expireAt } });
        else this.#data.delete(id);
        if (existed !== (write.kind === 'put')) this.#sorted = null;
      }
      if (++this.#applied % SWEEP_EVERY_BATCHES === 0) this.#sweepExpired();
      return replies;
    });
  }

  /**
   * Reads queue behind writes so a batch never sees half of another (an MGET
   * racing an MSET). Single node: every read is linearizable, so the option
   * changes nothing.
   */
  read(requests: readonly KvRequest[], _options?: ReadOptions): Promise<KvReply[]> {
    if (requests.some(isWriteRequest)) return Promise.reject(new TypeError('read() was given a write request'));
    return this.#serial(async () => {
      this.#checkOpen();
      return (await applyRequests(this.#reader, requests, this.#now())).replies;
    });
  }

  status(): EngineStatus {
    return { engine: 'memory', role: 'standalone', raft_wired: false, applied_batches: this.#applied, keys_stored: this.#data.size };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#tail;
  }
}
