// A node's own online rewrite sweeps (SPEC §11): each member re-seals its own
// copy with its own nonces, so the sweep engine (src/rewrite) runs here over
// this node's store, one sweep per target at a time.
//
// - Gate: before every batch, `gate` (the runtime's sweepGate: this process's
//   writer registration under the active storage DEK, SPEC §5.3) must pass;
//   ErrWriterNotRegistered and other retryable failures wait and resume from
//   the cursor, as does a sweep the node asked to pause.
// - Stops: on close (shutdown) and around a snapshot install (`pause`): the
//   install replaces the store, cursor and done rows included, so the sweep
//   must not write a cursor into the new store; `resume` starts it again over
//   the installed rows (they describe the installed data).
// - Requests are kept in <data-dir>/rewrite-requests.json (durable writes)
//   until the sweep is done, so a sweep a crash interrupted resumes at the
//   next start from its cursor, at the rate it was asked for.
//
// Touches: the store through runSweep/readSweepState, and its requests file.

import fs from 'node:fs';
import path from 'node:path';
import { writeFileDurablySync } from '../durable/index.js';
import { isSealError, sealError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { countVersions, describeTarget, listSweepStates, readSweepState, runSweep, type SweepProgress, type SweepTarget } from '../rewrite/index.js';
import type { Store } from '../store/index.js';

export const REWRITE_START_METHOD = 'RewriteStart';
export const REWRITE_STATUS_METHOD = 'RewriteStatus';
const REQUESTS_FILE = 'rewrite-requests.json';
const RETRY_MS = 500;

/** What one target's sweep on this node is doing. */
export type SweepPhase = 'running' | 'waiting' | 'done' | 'stopped' | 'failed';

export interface SweepReport {
  /** 'cleartext' or the decimal key_id. */
  readonly target: string;
  readonly phase: SweepPhase;
  readonly rate_mib_s: number | null;
  readonly progress: SweepProgress | null;
  /** Why the sweep waits (retryable) or failed. */
  readonly error?: string;
  /** What the done row records, once finished. */
  readonly done?: unknown;
}

interface Request {
  readonly target: string;
  readonly rate: number | null;
}

interface Run {
  readonly request: Request;
  phase: SweepPhase;
  progress: SweepProgress | null;
  error?: string;
  readonly abort: AbortController;
  finished: Promise<void>;
}

export interface NodeSweepsOptions {
  store: Store;
  dataDir: string;
  /** Throws (ErrWriterNotRegistered, retryable) while this process may not seal outside apply. */
  gate: () => void;
  logger: Logger;
}

/** 'cleartext' or the decimal key_id → target; ErrBadRequest otherwise. */
export function parseTarget(name: string): SweepTarget {
  if (name === 'cleartext') return { cleartext: true };
  if (/^[1-9]\d{0,9}$/.test(name) && Number(name) <= 0xffffffff) return { keyId: Number(name) };
  throw sealError('ErrBadRequest', `a rewrite target is a key_id (uint32, not 0) or "cleartext", not ${JSON.stringify(name)}`);
}

function targetName(target: SweepTarget): string {
  return 'cleartext' in target ? 'cleartext' : String(target.keyId);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export class NodeSweeps {
  readonly #options: NodeSweepsOptions;
  readonly #file: string;
  readonly #runs = new Map<string, Run>();
  #requests: Request[] = [];
  #paused = false;
  #closed = false;

  constructor(options: NodeSweepsOptions) {
    this.#options = options;
    this.#file = path.join(options.dataDir, REQUESTS_FILE);
  }

  /** Starts the sweeps a crash or a stop interrupted (called once the node runs). */
  resumeRequested(): void {
    this.#requests = readRequests(this.#file);
    this.#launchRequested();
  }

  #launchRequested(): void {
    for (const request of this.#requests) this.#launch(request);
  }

  /**
   * Starts the sweep of `target` at `rate` MiB/s (null: unthrottled), or
   * reports the one already running (one sweep per target per node).
   */
  async start(target: SweepTarget, rate: number | null): Promise<SweepReport> {
    if (this.#closed) throw sealError('ErrRaftStopped', 'the node is stopping');
    if (rate !== null && !(Number.isFinite(rate) && rate > 0)) throw sealError('ErrBadRequest', `--rate must be a positive number of MiB/s, not ${rate}`);
    const name = targetName(target);
    const running = this.#runs.get(name);
    if (running !== undefined && (running.phase === 'running' || running.phase === 'waiting')) return this.#report(name, running);
    // A key_id target that finished stays finished (its DEK seals nothing new); a cleartext sweep may run again.
    const state = 'keyId' in target ? await readSweepState(this.#options.store, target) : {};
    if (state.done !== undefined && state.cursor === undefined) return { target: name, phase: 'done', rate_mib_s: rate, progress: null, done: state.done };
    const request = { target: name, rate };
    this.#requests = [...this.#requests.filter((r) => r.target !== name), request];
    this.#saveRequests();
    this.#launch(request);
    const run = this.#runs.get(name);
    if (run === undefined || this.#paused) return { target: name, phase: 'waiting', rate_mib_s: rate, progress: null, error: 'a snapshot install is in progress; the sweep starts after it' };
    return this.#report(name, run);
  }

  /** Every sweep this node knows of: running ones, and finished or interrupted ones from the store's rows. */
  async status(): Promise<SweepReport[]> {
    const out = new Map<string, SweepReport>();
    for (const state of await listSweepStates(this.#options.store)) {
      const name = targetName(state.target);
      out.set(name, { target: name, phase: state.done !== undefined ? 'done' : 'stopped', rate_mib_s: null, progress: null, ...(state.done === undefined ? {} : { done: state.done }) });
    }
    for (const [name, run] of this.#runs) out.set(name, await this.#report(name, run));
    return [...out.values()];
  }

  /** Stops every sweep and waits for their batches to end (snapshot install); `resume` starts them again. */
  async pause(): Promise<void> {
    this.#paused = true;
    await this.#stopAll();
  }

  resume(): void {
    this.#paused = false;
    this.#launchRequested();
  }

  /** Stops every sweep for good (shutdown); the requests stay for the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stopAll();
  }

  async #stopAll(): Promise<void> {
    const runs = [...this.#runs.values()];
    for (const run of runs) run.abort.abort();
    await Promise.all(runs.map((r) => r.finished));
  }

  async #report(name: string, run: Run): Promise<SweepReport> {
    const { done } = run.phase === 'done' ? await readSweepState(this.#options.store, parseTarget(name)) : {};
    return {
      target: name,
      phase: run.phase,
      rate_mib_s: run.request.rate,
      progress: run.progress,
      ...(run.error === undefined ? {} : { error: run.error }),
      ...(done === undefined ? {} : { done }),
    };
  }

  #launch(request: Request): void {
    if (this.#paused || this.#closed) return;
    const existing = this.#runs.get(request.target);
    if (existing !== undefined && (existing.phase === 'running' || existing.phase === 'waiting')) return;
    const run: Run = { request, phase: 'running', progress: null, abort: new AbortController(), finished: Promise.resolve() };
    this.#runs.set(request.target, run);
    run.finished = this.#drive(run);
  }

  /** Runs the sweep to its end, waiting and resuming from the cursor after retryable failures. */
  async #drive(run: Run): Promise<void> {
    const { store, gate, logger } = this.#options;
    const target = parseTarget(run.request.target);
    const signal = run.abort.signal;
    logger.info({ target: describeTarget(target), rate_mib_s: run.request.rate }, 'rewrite sweep started');
    while (!signal.aborted) {
      try {
        // What is left to look at, for the ETA.
        const { cursor } = await readSweepState(store, target);
        const totalEstimate = await countVersions(store, cursor);
        run.progress = await runSweep({
          store,
          target,
          ...(run.request.rate === null ? {} : { rateMiBps: run.request.rate }),
          signal,
          totalEstimate,
          ...(run.request.rate === null ? {} : { batchBytes: batchBytesFor(run.request.rate) }),
          beforeBatch: async () => gate(),
          onProgress: (p: SweepProgress) => {
            run.progress = p;
            run.phase = 'running';
            delete run.error;
          },
        });
        if (signal.aborted) break;
        run.phase = 'done';
        this.#requests = this.#requests.filter((r) => r.target !== run.request.target);
        this.#saveRequests();
        logger.info({ target: describeTarget(target), progress: run.progress }, 'rewrite sweep done');
        return;
      } catch (err) {
        if (signal.aborted) break;
        run.error = isSealError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
        if (!isSealError(err) || !err.retryable) {
          run.phase = 'failed';
          this.#requests = this.#requests.filter((r) => r.target !== run.request.target);
          this.#saveRequests();
          logger.warn({ err, target: describeTarget(target) }, 'rewrite sweep failed');
          return;
        }
        run.phase = 'waiting';
        logger.debug({ err, target: describeTarget(target) }, 'rewrite sweep waits; resuming from its cursor');
        await sleep(RETRY_MS, signal);
      }
    }
    run.phase = 'stopped';
    logger.info({ target: describeTarget(target) }, 'rewrite sweep stopped');
  }

  #saveRequests(): void {
    writeFileDurablySync(this.#file, JSON.stringify(this.#requests));
  }
}

/**
 * Value bytes per batch at `rate` MiB/s: a sixty-fourth of a second's worth
 * (within 8 KiB..1 MiB), so that the throttle spreads the sweep's sealing
 * and writes evenly and no batch holds the event loop or the store's write
 * queue long enough to show in client latency.
 */
function batchBytesFor(rate: number): number {
  return Math.round(Math.min(1024 * 1024, Math.max(8 * 1024, (rate * 1024 * 1024) / 64)));
}

function readRequests(file: string): Request[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw sealError('ErrStoreCorrupt', `${file} is not a list of rewrite requests`);
  return parsed.map((r: unknown) => {
    const { target, rate } = (r ?? {}) as { target?: unknown; rate?: unknown };
    if (typeof target !== 'string' || (rate !== null && typeof rate !== 'number')) throw sealError('ErrStoreCorrupt', `${file} holds a malformed rewrite request`);
    parseTarget(target);
    return { target, rate };
  });
}
