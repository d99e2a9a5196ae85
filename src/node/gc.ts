// The node's garbage-collection scheduler: every `--gc-interval-ms` it runs
// the store's GC (SPEC §5.3) at a horizon `--gc-retention-ms` behind the last
// applied commit timestamp, so old versions of keys do not pile up forever.
//
// minRetainedTS = packHlc(max(0, physical(lastCommitTs) − retention)). The
// store keeps, for every key, the newest version at or below it and every
// version above it, so a read at any timestamp ≥ minRetainedTS sees exactly
// what it saw before the GC. The node's read views read at the last applied
// commit timestamp (replication.ts `openReader`), which is ≥ minRetainedTS by
// construction (packHlc drops the logical counter and the retention only
// subtracts; `minRetainedTimestamp` also clamps to it). A read view opened
// earlier reads at an older commit timestamp: it stays whole as long as it
// lives less than the retention.
//
// Runs never overlap (a tick that finds one running is skipped), none starts
// after close, and close waits for a running one, so the store is never
// closed under a GC. A failed run is logged and the next tick tries again:
// GC only reclaims space, so it never stops the node.
//
// The horizon (`minRetainedTS`, the admin /status `min_retained_ts` and the
// gauge sealkv_store_min_retained_ts) moves when a run completes, so it is
// the horizon up to which GC has finished: the node's minRetainedTS of SPEC
// §4.2's retire-dek criterion.

import type { Logger } from '../log/index.js';
import type { SealkvMetrics } from '../metrics/index.js';
import type { Store } from '../store/index.js';
import { hlcPhysicalMs, packHlc } from '../fsm/index.js';

export const DEFAULT_GC_INTERVAL_MS = 60_000;
export const DEFAULT_GC_RETENTION_MS = 600_000;

/** Timers, injectable so that tests tick by hand. */
export interface GcTimers {
  setInterval(run: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface GcSchedulerOptions {
  store: Pick<Store, 'gc'>;
  /** The last applied commit timestamp (the node's read views read there). */
  lastCommitTs: () => bigint;
  intervalMs: number;
  retentionMs: number;
  logger: Logger;
  metrics?: SealkvMetrics;
  timers?: GcTimers;
}

const realTimers: GcTimers = {
  setInterval: (run, ms) => setInterval(run, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/**
 * The GC horizon `retentionMs` behind `lastCommitTs`, never above it: GC at
 * this horizon leaves a read at `lastCommitTs` unchanged.
 */
export function minRetainedTimestamp(lastCommitTs: bigint, retentionMs: number): bigint {
  const horizon = packHlc(Math.max(0, hlcPhysicalMs(lastCommitTs) - retentionMs));
  return horizon < lastCommitTs ? horizon : lastCommitTs;
}

export class GcScheduler {
  readonly #options: GcSchedulerOptions;
  readonly #timers: GcTimers;
  readonly #handle: unknown;
  #running: Promise<void> | undefined;
  #closed = false;
  #minRetainedTS = 0n;
  #lastRemoved = 0;

  /** Starts ticking at once; the first run is one interval away. */
  constructor(options: GcSchedulerOptions) {
    if (!Number.isSafeInteger(options.intervalMs) || options.intervalMs < 1) throw new RangeError(`GC interval must be a positive integer of ms: ${options.intervalMs}`);
    if (!Number.isSafeInteger(options.retentionMs) || options.retentionMs < 0) throw new RangeError(`GC retention must be a non-negative integer of ms: ${options.retentionMs}`);
    this.#options = options;
    this.#timers = options.timers ?? realTimers;
    this.#handle = this.#timers.setInterval(() => void this.runOnce(), options.intervalMs);
  }

  /** Horizon of the last completed run (0 before the first). */
  get minRetainedTS(): bigint {
    return this.#minRetainedTS;
  }

  /** Versions the last completed run removed. */
  get lastRemoved(): number {
    return this.#lastRemoved;
  }

  /** Facts for the engine status (a decimal string: the value is a uint64). */
  status(): { min_retained_ts: string } {
    return { min_retained_ts: this.#minRetainedTS.toString() };
  }

  /**
   * One GC run now, unless one is running (its promise is returned) or the
   * scheduler is closed. Never rejects: failures are logged.
   */
  runOnce(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Stops ticking and waits for a running GC to finish. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#timers.clearInterval(this.#handle);
    }
    await this.#running;
  }

  async #run(): Promise<void> {
    const { store, lastCommitTs, retentionMs, logger, metrics } = this.#options;
    const lastCommit = lastCommitTs();
    const minRetainedTS = minRetainedTimestamp(lastCommit, retentionMs);
    try {
      const { removed } = await store.gc(minRetainedTS);
      if (minRetainedTS > this.#minRetainedTS) this.#minRetainedTS = minRetainedTS;
      this.#lastRemoved = removed;
      metrics?.storeMinRetainedTs.set(Number(this.#minRetainedTS));
      metrics?.storeGcRemoved.inc(removed);
      if (removed > 0) logger.debug({ min_retained_ts: minRetainedTS.toString(), removed }, 'store GC');
    } catch (err) {
      logger.warn({ err, min_retained_ts: minRetainedTS.toString() }, 'store GC failed; retrying at the next interval');
    }
  }
}
