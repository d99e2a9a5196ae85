// Shared measuring helpers of the bench suites: medians over rounds,
// percentiles of latencies, and `openssl speed` as the reference for
// AES-256-GCM throughput.

import { execFileSync } from 'node:child_process';

/** The element whose key is the median (the upper one for an even count). */
export function medianBy<T>(xs: readonly T[], key: (x: T) => number): T {
  if (xs.length === 0) throw new Error('median of nothing');
  return [...xs].sort((a, b) => key(a) - key(b))[Math.floor(xs.length / 2)]!;
}

export const median = (xs: readonly number[]): number => medianBy(xs, (x) => x);

/** The p-th percentile of ascending `sorted` (nearest rank); 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Field by field median of rows that share their keys (rounds of one case). */
export function medianFields<T extends { [K in keyof T]: number }>(rows: readonly T[]): T {
  const keys = Object.keys(rows[0]!) as (keyof T)[];
  return Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k]))])) as T;
}

/**
 * `openssl speed -evp aes-256-gcm` for one block size, in bytes per second:
 * per user CPU second by default (as openssl times itself), per wall second
 * with `elapsed`. Throws when openssl is missing or its output is not understood.
 */
export function opensslSpeed(bytes: number, options: { seconds?: number; elapsed?: boolean } = {}): number {
  const args = ['speed', ...(options.elapsed === true ? ['-elapsed'] : []), '-seconds', String(options.seconds ?? 1), '-bytes', String(bytes), '-mr', '-evp', 'aes-256-gcm'];
  const out = execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  // Machine-readable: "+F:<n>:AES-256-GCM:<bytes per second>".
  const line = out.split('\n').find((l) => l.startsWith('+F:'));
  const value = line === undefined ? Number.NaN : Number(line.split(':').at(-1));
  if (!Number.isFinite(value)) throw new Error(`cannot parse openssl speed output:\n${out}`);
  return value;
}
