// `sealkv encryption rewrite` without --offline (SPEC §11, §12): asks one
// node's admin API to start the sweep on every member, then follows every
// member's progress until all are done (or at once with --no-wait).
//
// Display: on a terminal, one progress bar per member with its rate and ETA,
// redrawn in place; otherwise plain lines: a member's new state at once,
// its progress within a state at most every PLAIN_EVERY_MS. A member whose
// sweep is not running (it restarted before resuming, or is unreachable and
// comes back) is asked again: starting is idempotent on every member.
//
// Touches nothing but the admin API it is given (`call`) and `out`.

import { progressBar, progressFraction } from './progress.js';

export interface OnlineRewriteOptions {
  /** 'cleartext' or the decimal key_id. */
  target: string;
  /** MiB/s; null = unthrottled. */
  rate: number | null;
  wait: boolean;
  json: boolean;
  /** Poll interval, ms. */
  intervalMs: number;
}

export type AdminCall = (method: 'GET' | 'POST', path: string) => Promise<Record<string, unknown>>;

/** What the CLI reads of a member's sweep report (src/node/sweeps.ts SweepReport). */
interface Report {
  target?: string;
  phase?: string;
  error?: string;
  progress?: { scanned?: number; rewritten?: number; totalEstimate?: number; bytesPerSec?: number; etaSeconds?: number } | null;
  done?: { rewritten?: number; scanned?: number } | null;
}

interface Out {
  write(text: string): unknown;
  isTTY?: boolean;
}

const BAR = 28;
const PLAIN_EVERY_MS = 2_000;
const RESTART_EVERY_MS = 5_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Per member: its report for `target` (a status answer's `sweeps`, or a start answer), or why there is none. */
function reportsFor(status: Record<string, unknown>, target: string): Map<string, Report | { error: string }> {
  const out = new Map<string, Report | { error: string }>();
  const nodes = (status.nodes ?? {}) as Record<string, unknown>;
  for (const [node, answer] of Object.entries(nodes)) {
    const a = (answer ?? {}) as { sweeps?: unknown; phase?: unknown; error?: unknown };
    if (Array.isArray(a.sweeps)) out.set(node, (a.sweeps as Report[]).find((r) => r.target === target) ?? { error: 'no sweep of this target' });
    else if (typeof a.phase === 'string') out.set(node, a as Report);
    else out.set(node, { error: String(a.error ?? 'no answer') });
  }
  return out;
}

function mib(bytesPerSec: number | undefined): string {
  return `${((bytesPerSec ?? 0) / (1024 * 1024)).toFixed(1)} MiB/s`;
}

function eta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** One member's line: a bar on a terminal, plain words otherwise. */
function line(node: string, r: Report | { error: string }, tty: boolean): string {
  if (!('phase' in r) || r.phase === undefined) return `${node}: ${'error' in r ? r.error : 'unknown'}`;
  if (r.phase === 'done') return `${node}: done (${r.done?.rewritten ?? r.progress?.rewritten ?? 0} versions re-sealed)`;
  const f = progressFraction(r.progress, false);
  const p = r.progress;
  const counts = `${p?.scanned ?? 0}/${p?.totalEstimate ?? '?'} scanned, ${p?.rewritten ?? 0} re-sealed`;
  const why = r.error === undefined ? '' : ` (${r.error})`;
  if (!tty) return `${node}: ${r.phase} ${(f * 100).toFixed(0)}% ${counts}, ${mib(p?.bytesPerSec)}, ETA ${eta(p?.etaSeconds)}${why}`;
  return `${node.padEnd(8)} ${progressBar(f, BAR)} ${(f * 100).toFixed(0).padStart(3)}%  ${mib(p?.bytesPerSec)}  ETA ${eta(p?.etaSeconds)}  ${r.phase}${why}`;
}

/**
 * Starts the fan-out and follows it. Resolves with the exit status: 0 when
 * every member finished (or started, with --no-wait), 1 when a member's
 * sweep failed (its error is shown).
 */
export async function runOnlineRewrite(options: OnlineRewriteOptions, call: AdminCall, out: Out): Promise<number> {
  const query = new URLSearchParams(options.target === 'cleartext' ? { cleartext: '1' } : { key_id: options.target });
  if (options.rate !== null) query.set('rate', String(options.rate));
  const start = (): Promise<Record<string, unknown>> => call('POST', `/encryption/rewrite?${query.toString()}`);
  const started = await start();
  if (!options.wait) {
    out.write(options.json ? `${JSON.stringify(started, null, 2)}\n` : [...reportsFor({ nodes: started.nodes }, options.target)].map(([n, r]) => `${line(n, r, false)}\n`).join(''));
    return 0;
  }
  const tty = out.isTTY === true && !options.json;
  const shown = new Map<string, { text: string; state: string; at: number }>();
  let drawn = 0;
  let lastStart = Date.now();
  for (;;) {
    const status = await call('GET', '/encryption/rewrite/status');
    const reports = reportsFor(status, options.target);
    const lines = [...reports].map(([node, r]) => ({ node, text: line(node, r, tty), state: 'phase' in r && r.phase !== undefined ? r.phase : 'error' }));
    if (tty) {
      out.write(`${drawn > 0 ? `\x1b[${drawn}A` : ''}${lines.map((l) => `\x1b[2K${l.text}\n`).join('')}`);
      drawn = lines.length;
    } else if (!options.json) {
      const now = Date.now();
      for (const { node, text, state } of lines) {
        const last = shown.get(node);
        // A new state at once; progress within one state at most every PLAIN_EVERY_MS.
        if (last?.text === text || (last?.state === state && now - last.at < PLAIN_EVERY_MS)) continue;
        shown.set(node, { text, state, at: now });
        out.write(`${text}\n`);
      }
    }
    const phases = [...reports.values()].map((r) => ('phase' in r ? r.phase : undefined));
    const failed = [...reports].filter(([, r]) => 'phase' in r && r.phase === 'failed');
    if (failed.length > 0) {
      if (options.json) out.write(`${JSON.stringify(status, null, 2)}\n`);
      for (const [node, r] of failed) out.write(`${node}: sweep failed: ${'error' in r ? r.error : ''}\n`);
      return 1;
    }
    if (reports.size > 0 && phases.every((p) => p === 'done')) {
      if (options.json) out.write(`${JSON.stringify(status, null, 2)}\n`);
      return 0;
    }
    // A member with no running sweep (restarted, or back from being unreachable): ask again.
    if (phases.some((p) => p === undefined || p === 'stopped') && Date.now() - lastStart >= RESTART_EVERY_MS) {
      lastStart = Date.now();
      await start().catch(() => undefined);
    }
    await sleep(options.intervalMs);
  }
}
