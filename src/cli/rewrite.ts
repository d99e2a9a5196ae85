// `sealkv encryption rewrite --offline` (SPEC §11): parses the flags, runs
// rewriteOffline on a stopped node's data dir, and shows progress on stderr
// — a progress bar with rate and ETA redrawn in place on a terminal, plain
// lines (no ANSI, at most one a second) otherwise — then a summary on
// stdout (`--json`: the result as JSON). SIGINT/SIGTERM stop the sweep after
// the batches in flight; the cursor stays for the next run.

import { rewriteOffline, type OfflineRewriteResult, type SweepProgress, type SweepTarget } from '../rewrite/index.js';
import { isBackendName, type BackendName } from '../crypto/index.js';
import { progressBar, progressFraction } from './progress.js';

export interface RewriteCliOptions {
  offline?: boolean;
  dataDir?: string;
  raftId?: string;
  kekUri?: string;
  kekFile?: string;
  keyId?: string;
  cleartext?: boolean;
  rate?: string;
  workers?: string;
  cryptoBackend?: string;
  compression?: string;
  json?: boolean;
}

/** A usage mistake: the caller exits 2 with ErrBadRequest. */
export class RewriteUsageError extends Error {}

const MIB = 1024 * 1024;
const BAR_WIDTH = 30;
const LINE_EVERY_MS = 1000;

/** Runs the offline rewrite; throws RewriteUsageError for bad flags and the sweep's typed errors. */
export async function runOfflineRewrite(options: RewriteCliOptions, io: { stdout: ProgressStream; stderr: ProgressStream } = process): Promise<OfflineRewriteResult> {
  const target = parseTarget(options);
  if (options.dataDir === undefined) throw new RewriteUsageError('--offline needs --data-dir (the stopped node\'s data directory)');
  if (options.raftId === undefined) throw new RewriteUsageError('--offline needs --raft-id (the node\'s id: it goes into every nonce)');
  if ((options.kekUri === undefined) === (options.kekFile === undefined)) throw new RewriteUsageError('--offline needs exactly one of --kek-uri and --kek-file');
  const rateMiBps = options.rate === undefined ? undefined : parseNumber(options.rate, '--rate', 'MiB/s');
  const workers = options.workers === undefined ? undefined : parseNumber(options.workers, '--workers', 'worker threads (0 = seal on the main thread)');
  if (workers !== undefined && !Number.isInteger(workers)) throw new RewriteUsageError(`--workers: "${options.workers}" is not a whole number`);
  const backend = options.cryptoBackend ?? 'auto';
  if (!isBackendName(backend) || backend === 'noble') throw new RewriteUsageError(`--crypto-backend: "${backend}" is not one of aesni, batch, wasm, auto`);
  if (options.compression !== undefined && options.compression !== 'on' && options.compression !== 'off') throw new RewriteUsageError('--compression is on or off');

  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const view = new ProgressView(io.stderr);
  try {
    const result = await rewriteOffline({
      dataDir: options.dataDir,
      raftId: options.raftId,
      ...(options.kekUri === undefined ? {} : { kekUri: options.kekUri }),
      ...(options.kekFile === undefined ? {} : { kekFile: options.kekFile }),
      target,
      ...(rateMiBps === undefined ? {} : { rateMiBps }),
      ...(workers === undefined ? {} : { workers }),
      cryptoBackend: backend as BackendName,
      compression: options.compression !== 'off',
      signal: abort.signal,
      estimate: true,
      onCounting: () => view.note('counting stored versions for the ETA'),
      onProgress: (p) => view.update(p),
    });
    view.finish(result);
    io.stdout.write(options.json === true ? `${JSON.stringify(result, null, 2)}\n` : summary(result));
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function parseTarget(options: RewriteCliOptions): SweepTarget {
  if (options.keyId !== undefined && options.cleartext === true) throw new RewriteUsageError('give one of --key-id and --cleartext, not both');
  if (options.cleartext === true) return { cleartext: true };
  if (options.keyId === undefined) throw new RewriteUsageError('give --key-id=<old storage key_id> or --cleartext');
  if (!/^[1-9]\d{0,9}$/.test(options.keyId) || Number(options.keyId) > 0xffffffff) throw new RewriteUsageError(`--key-id: "${options.keyId}" is not a key_id (uint32, not 0)`);
  return { keyId: Number(options.keyId) };
}

function parseNumber(text: string, flag: string, what: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0) throw new RewriteUsageError(`${flag}: "${text}" is not a number of ${what}`);
  return value;
}

/** The final lines: what was done, under which key, how fast. */
function summary(r: OfflineRewriteResult): string {
  const state = r.done ? 'done' : 'interrupted (cursor kept: run the same command to resume)';
  return [
    `rewrite ${r.target}: ${state}${r.resumed ? ', resumed from its cursor' : ''}`,
    `versions scanned: ${r.scanned}, re-sealed: ${r.rewritten} (${mib(r.rewrittenBytes)} MiB) under key_id ${r.activeKeyId}, skipped: ${r.skipped}`,
    `time: ${(r.elapsedMs / 1000).toFixed(1)} s, ${mib(r.bytesPerSec)} MiB/s, ${r.workers === 0 ? 'sealing in-thread' : `${r.workers} worker${r.workers === 1 ? '' : 's'}`}`,
  ]
    .map((line) => `${line}\n`)
    .join('');
}

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Where progress goes: stderr, or a test's stand-in. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/** Progress on a terminal (one line redrawn) or a log (plain lines, at most one per second). */
export class ProgressView {
  readonly #out: ProgressStream;
  readonly #tty: boolean;
  readonly #now: () => number;
  #lastLine = -Infinity;
  #drawn = false;

  constructor(out: ProgressStream, now: () => number = Date.now) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#now = now;
  }

  note(message: string): void {
    this.#out.write(`${message}\n`);
  }

  update(p: SweepProgress): void {
    if (p.done) return;
    if (this.#tty) {
      this.#out.write(`\r\x1b[2K${this.#bar(p)}`);
      this.#drawn = true;
      return;
    }
    const now = this.#now();
    if (now - this.#lastLine < LINE_EVERY_MS) return;
    this.#lastLine = now;
    this.#out.write(`${line(p)}\n`);
  }

  finish(p: SweepProgress): void {
    if (this.#tty && this.#drawn) this.#out.write(`\r\x1b[2K${this.#bar(p)}\n`);
    else if (!this.#tty) this.#out.write(`${line(p)}\n`);
  }

  #bar(p: SweepProgress): string {
    const fraction = progressFraction(p, p.done);
    const eta = p.etaSeconds === undefined ? '' : ` ETA ${duration(p.etaSeconds)}`;
    return `rewrite ${p.target} ${progressBar(fraction, BAR_WIDTH)} ${(fraction * 100).toFixed(1)}% ${mib(p.bytesPerSec)} MiB/s${eta} re-sealed ${p.rewritten}`;
  }
}

function line(p: SweepProgress): string {
  const of = p.totalEstimate === undefined ? '' : `/${p.totalEstimate}`;
  const eta = p.etaSeconds === undefined ? '' : `, eta ${duration(p.etaSeconds)}`;
  return `rewrite ${p.target}: scanned ${p.scanned}${of}, re-sealed ${p.rewritten} (${mib(p.rewrittenBytes)} MiB), skipped ${p.skipped}, ${mib(p.bytesPerSec)} MiB/s${eta}${p.done ? ', done' : ''}`;
}
