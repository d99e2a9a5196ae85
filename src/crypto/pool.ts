// The crypto worker pool (SPEC §3.5): seals, opens and re-seals large
// batches (rewrite sweeps, big scans, bulk loads) on piscina worker threads,
// off the main thread. The protocol is in pool-protocol.ts; the worker is
// workers/crypto-worker.ts.
//
// A batch is cut into chunks (by item count and bytes), each packed into a
// few buffers that are moved, not copied, to a worker and back; chunks run
// on all workers at once. Results are views into the packed result buffer
// of their chunk: one ArrayBuffer holds the envelopes (or plaintexts) of up
// to `chunkItems` values, so keep a copy of a value that must outlive the
// others.
//
// Nonces: the caller reserves the whole batch's range on the main thread
// (SPEC §3.3, Sealer.reserveNonces); chunk i gets the matching sub-range.
// Keys: workers ask for a DEK by key_id the first time they need it and the
// pool answers from its KeyLookup; a DEK retired from that lookup must be
// dropped from the workers with forgetKey().
//
// Failures: a typed error of a whole chunk (unknown sealing key) rejects the
// call with that error; per-item failures of open and reseal mark only their
// item; a worker that dies or throws fails the call with ErrWorkerFailed,
// and piscina starts a replacement.

import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel, type Worker } from 'node:worker_threads';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { Piscina } from 'piscina';
import { isSealError, sealError, type SealError } from '../errors/index.js';
import { checkPurpose, isBackendName, type BackendName, type OpenItem, type OpenResult, type SealItem } from './backend.js';
import { checkSealFlag } from './envelope.js';
import type { Dek, KeyLookup } from './keystore.js';
import type { NonceRange } from './nonce.js';
import {
  fromWire,
  packAads,
  packValues,
  transferablesOf,
  unpackValues,
  type CryptoTask,
  type CryptoTaskResult,
  type ItemFailure,
  type KeyMessage,
  type PackedAads,
  type PackedValues,
  type WorkerConfig,
} from './pool-protocol.js';

export interface CryptoPoolOptions {
  /** Where workers' DEKs come from (the node's Keystore). */
  readonly keys: KeyLookup;
  /** Worker threads; default min(2, available parallelism). */
  readonly threads?: number;
  /** Backend each worker runs; default 'auto'. */
  readonly backend?: BackendName;
  /** Most values per chunk; default 1024. */
  readonly chunkItems?: number;
  /** Chunk size target in plaintext or envelope bytes; default 1 MiB. */
  readonly chunkBytes?: number;
  /** How long a worker waits for a DEK it asked for; default 10 s. */
  readonly keyWaitMs?: number;
}

export interface PoolCallOptions {
  readonly signal?: AbortSignal;
}

export interface PoolSealOptions extends PoolCallOptions {
  /** Compress-then-seal storage items of flag 0 in the worker (compressForSeal, SPEC §3.4). */
  readonly compress?: boolean;
}

export type ResealResult = { readonly ok: true; readonly envelope: Uint8Array } | { readonly ok: false; readonly error: SealError };

const DEFAULT_CHUNK_ITEMS = 1024;
const DEFAULT_CHUNK_BYTES = 1 << 20;
const DEFAULT_KEY_WAIT_MS = 10_000;

export class CryptoPool {
  readonly #piscina: Piscina;
  readonly #channel: BroadcastChannel;
  readonly #keys: KeyLookup;
  readonly #chunkItems: number;
  readonly #chunkBytes: number;
  #closing: Promise<void> | undefined;
  #keyRequests = 0;
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Input buffers handed back by workers, reused for packing (see pool-protocol.ts). */
  readonly #spares: ArrayBuffer[] = [];
  readonly #maxSpares: number;

  constructor(options: CryptoPoolOptions) {
    const threads = options.threads ?? Math.min(2, os.availableParallelism());
    checkPositiveInteger('threads', threads);
    this.#chunkItems = options.chunkItems ?? DEFAULT_CHUNK_ITEMS;
    checkPositiveInteger('chunkItems', this.#chunkItems);
    this.#chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    checkPositiveInteger('chunkBytes', this.#chunkBytes);
    const keyWaitMs = options.keyWaitMs ?? DEFAULT_KEY_WAIT_MS;
    checkPositiveInteger('keyWaitMs', keyWaitMs);
    const backend = options.backend ?? 'auto';
    if (!isBackendName(backend)) throw new RangeError(`unknown crypto backend "${String(backend)}"`);
    this.#keys = options.keys;
    this.#maxSpares = 2 * threads + 2;

    const config: WorkerConfig = { backend, channel: `sealkv-crypto-pool-${randomUUID()}`, keyWaitMs };
    this.#channel = new BroadcastChannel(config.channel);
    this.#channel.unref();
    this.#channel.onmessage = (event: unknown) => this.#answer((event as { data: KeyMessage }).data);
    this.#piscina = new Piscina({ filename: workerFile(), minThreads: threads, maxThreads: threads, idleTimeout: Infinity, workerData: config });
    // A worker that dies while idle has no batch to fail; piscina replaces it.
    this.#piscina.on('error', () => undefined);
  }

  get threads(): number {
    return this.#piscina.maxThreads;
  }

  /** The live worker threads (health checks, tests). */
  get workers(): readonly Worker[] {
    return this.#piscina.threads;
  }

  /** DEK requests workers have made (each worker asks once per key_id it meets). */
  get keyRequests(): number {
    return this.#keyRequests;
  }

  /**
   * Seals item i under `dek` with nonce i of `nonces`, like
   * CryptoBackend.sealBatch; with `compress`, storage items of flag 0 are
   * first put through compressForSeal in the worker.
   */
  async sealBatch(dek: Dek, nonces: NonceRange, items: readonly SealItem[], options: PoolSealOptions = {}): Promise<Uint8Array[]> {
    this.#checkSealKey(dek, nonces, items);
    return this.#inChunks(items, (item) => item.plaintext, async (slice, values, aads, from) => {
      const flags = new Uint8Array(slice.length);
      for (let i = 0; i < slice.length; i++) flags[i] = slice[i]!.flag;
      const compress = options.compress === true;
      const task = { op: 'seal', keyId: dek.keyId, nonces: subRange(nonces, from, slice.length), flags, values, aads, compress } as const;
      return unpackValues(expectOp(await this.#run(task, [values, aads, flags], options), 'seal').envelopes);
    });
  }

  /** Opens every item, like CryptoBackend.openBatch; one failure marks only its item. */
  async openBatch(items: readonly OpenItem[], options: PoolCallOptions = {}): Promise<OpenResult[]> {
    return this.#inChunks(items, (item) => item.envelope, async (_slice, values, aads) => {
      const result = expectOp(await this.#run({ op: 'open', values, aads }, [values, aads], options), 'open');
      const failed = failuresByIndex(result.failures);
      return unpackValues(result.values).map((plaintext, i): OpenResult => {
        const failure = failed.get(i);
        return failure ?? { ok: true, plaintext, flag: result.flags[i]!, keyId: result.keyIds[i]! };
      });
    });
  }

  /**
   * Opens each envelope (under whichever DEK its key_id names) and seals its
   * plaintext again under `dek`, at the same location and with the same
   * flag. `nonces` must cover every item; the counters of items that fail to
   * open are left unused.
   */
  async resealBatch(dek: Dek, nonces: NonceRange, items: readonly OpenItem[], options: PoolCallOptions = {}): Promise<ResealResult[]> {
    this.#checkSealKey(dek, nonces, items);
    return this.#inChunks(items, (item) => item.envelope, async (slice, values, aads, from) => {
      const task = { op: 'reseal', keyId: dek.keyId, nonces: subRange(nonces, from, slice.length), values, aads } as const;
      const result = expectOp(await this.#run(task, [values, aads], options), 'reseal');
      const failed = failuresByIndex(result.failures);
      return unpackValues(result.envelopes).map((envelope, i): ResealResult => failed.get(i) ?? { ok: true, envelope });
    });
  }

  /** Makes every worker zero and forget a DEK (call when it is retired). */
  forgetKey(keyId: number): void {
    this.#channel.postMessage({ type: 'drop', keyId } satisfies KeyMessage);
  }

  /** Lets running batches finish, then stops the workers. New calls fail with ErrCryptoPoolClosed. */
  close(): Promise<void> {
    // piscina's close() lets only the chunks already inside a worker finish,
    // so the pool waits for every chunk it has handed over.
    this.#closing ??= Promise.allSettled(this.#inFlight)
      .then(() => this.#piscina.close())
      .finally(() => this.#channel.close());
    return this.#closing;
  }

  #answer(message: KeyMessage): void {
    if (message.type !== 'need') return;
    this.#keyRequests++;
    const dek = this.#keys.get(message.keyId);
    if (dek === undefined) {
      this.#channel.postMessage({ type: 'unknown', keyId: message.keyId } satisfies KeyMessage);
      return;
    }
    // postMessage clones synchronously: the copy made here is zeroed at once.
    const key = Uint8Array.from(dek.key);
    this.#channel.postMessage({ type: 'key', keyId: dek.keyId, purpose: dek.purpose, key } satisfies KeyMessage);
    key.fill(0);
  }

  #checkSealKey(dek: Dek, nonces: NonceRange, items: readonly (SealItem | OpenItem)[]): void {
    if (nonces.count !== items.length) throw new RangeError(`${items.length} items but ${nonces.count} nonces`);
    for (const item of items) {
      if ('flag' in item) checkSealFlag(item.aad, item.flag);
      checkPurpose(dek, item.aad);
    }
    // Workers fetch the DEK by key_id from the pool's lookup: it must be this very key.
    const known = this.#keys.get(dek.keyId);
    if (known === undefined) throw sealError('ErrUnknownKeyId', `DEK ${dek.keyId} is not in the pool's keystore`);
    if (known !== dek && (known.purpose !== dek.purpose || known.key.length !== dek.key.length || !timingSafeEqual(known.key, dek.key))) {
      throw new RangeError(`DEK ${dek.keyId} differs from the pool keystore's DEK of that key_id`);
    }
  }

  /**
   * Packs each chunk of `items` (bytes and AADs) and runs `work` on it, with
   * at most two chunks per worker in flight: each worker always has its next
   * chunk waiting, and a chunk is packed only when one comes back (into the
   * buffer that came back with it). Results are joined in order.
   */
  async #inChunks<Item extends SealItem | OpenItem, R>(
    items: readonly Item[],
    bytesOf: (item: Item) => Uint8Array,
    work: (slice: readonly Item[], values: PackedValues, aads: PackedAads, from: number) => Promise<R[]>,
  ): Promise<R[]> {
    const ranges = this.#chunks(items.map((item) => bytesOf(item).length));
    const results: R[][] = new Array(ranges.length);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < ranges.length) {
        const k = next++;
        const [from, to] = ranges[k]!;
        const slice = items.slice(from, to);
        try {
          results[k] = await work(slice, packValues(slice.map(bytesOf), this.#alloc), packAads(slice.map((item) => item.aad)), from);
        } catch (err) {
          // The call has failed: the other lanes take no further chunks.
          next = ranges.length;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(2 * this.threads, ranges.length) }, lane));
    return results.flat();
  }

  /** A spare buffer big enough (and not much bigger) when there is one, else a fresh one. */
  readonly #alloc = (bytes: number): Uint8Array => {
    const index = this.#spares.findIndex((spare) => spare.byteLength >= bytes && spare.byteLength <= 2 * bytes + 4096);
    if (index < 0) return new Uint8Array(bytes);
    const [spare] = this.#spares.splice(index, 1);
    return new Uint8Array(spare!, 0, bytes);
  };

  /** [from, to) index ranges of at most chunkItems values and about chunkBytes bytes. */
  #chunks(lengths: readonly number[]): [number, number][] {
    const out: [number, number][] = [];
    let from = 0;
    let bytes = 0;
    for (let i = 0; i < lengths.length; i++) {
      if (i > from && (i - from >= this.#chunkItems || bytes + lengths[i]! > this.#chunkBytes)) {
        out.push([from, i]);
        from = i;
        bytes = 0;
      }
      bytes += lengths[i]!;
    }
    if (lengths.length > from) out.push([from, lengths.length]);
    return out;
  }

  async #run(task: CryptoTask, buffers: Parameters<typeof transferablesOf>[0], options: PoolCallOptions): Promise<CryptoTaskResult> {
    if (this.#closing !== undefined) throw sealError('ErrCryptoPoolClosed', 'the crypto pool is closed');
    let result: CryptoTaskResult;
    const running = this.#piscina.run(task, { transferList: transferablesOf(buffers), signal: options.signal ?? null });
    this.#inFlight.add(running);
    try {
      result = (await running) as CryptoTaskResult;
    } catch (err) {
      if ((err as Error | undefined)?.name === 'AbortError') throw err;
      throw sealError('ErrWorkerFailed', `crypto worker failed: ${(err as Error | undefined)?.message ?? String(err)}`, err);
    } finally {
      this.#inFlight.delete(running);
    }
    // Only chunk-sized buffers are kept: one huge value must not pin its buffer.
    const spare = result.spare;
    if (spare !== undefined && spare.byteLength <= 2 * this.#chunkBytes && this.#spares.length < this.#maxSpares) this.#spares.push(spare);
    if (result.op === 'error') throw fromWire(result.error);
    return result;
  }
}

function expectOp<Op extends CryptoTaskResult['op']>(result: CryptoTaskResult, op: Op): Extract<CryptoTaskResult, { op: Op }> {
  if (result.op !== op) throw sealError('ErrWorkerFailed', `crypto worker answered ${result.op} to ${op}`);
  return result as Extract<CryptoTaskResult, { op: Op }>;
}

function subRange(nonces: NonceRange, from: number, count: number): NonceRange {
  return { prefix: nonces.prefix, start: nonces.start + BigInt(from), count };
}

function failuresByIndex(failures: readonly ItemFailure[]): Map<number, { ok: false; error: SealError }> {
  return new Map(failures.map((failure) => [failure.index, { ok: false, error: fromWire(failure) }]));
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
}

/** The compiled worker: beside this file under dist/, or dist/ of the source tree (tests run from src). */
function workerFile(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '../../..') : path.resolve(here, '../..');
  return path.join(root, 'dist', 'workers', 'crypto-worker.js');
}
