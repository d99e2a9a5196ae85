// Crypto benchmark (SPEC §14, issue 3): every backend × value size × batch
// size, seal and open, in this process (OpenSSL as it comes: AES-NI on this
// host) and again in a child process with OPENSSL_ia32cap masking AES-NI and
// PCLMULQDQ (SPEC §3.5). Each pass also runs `openssl speed -evp
// aes-256-gcm` at the same sizes with the same environment: the hardware
// limit the figures are compared with. Then the worker pool seals 64 MiB of
// 1 KiB values with 1 and with 2 workers.
//
// `npm run bench -- crypto [--quick] [--no-masked] [--pool-only]`. Writes JSON, an SVG
// chart and a Markdown table (pasted into the README) to bench/results/.
// Every figure is compared only with figures of the same run.
//
// Nonces are reused across iterations here: nothing sealed is kept, and
// the cost of sealing does not depend on the nonce.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import {
  CryptoPool,
  Keystore,
  NonceFactory,
  createBackend,
  opensslHardwareAes,
  type AadContext,
  type BackendName,
  type CryptoBackend,
  type NonceRange,
  type SealItem,
} from '../src/crypto/index.js';
import { median, opensslSpeed } from './lib/measure.js';
import { writeResults } from './lib/results.js';
import { barChartSvg, type ChartPanel } from './lib/svg.js';

const SIZES = [64, 256, 1024, 16 * 1024, 1 << 20];
const BATCHES = [1, 64, 1024];
const BACKENDS: BackendName[] = ['aesni', 'batch', 'wasm', 'auto'];
/** Work per benchmark iteration is capped so the full run stays within minutes. */
const MAX_BYTES_PER_OP = 16 << 20;
/** noble is a peer figure, not a data-path backend: single values only. */
const NOBLE_BATCHES = [1];
/** Extra seal-only points (sizes × batch sizes) where auto's thresholds fall. */
const PROBE_SIZES = [64, 256, 1024, 2048, 4096, 16 * 1024];
const PROBE_BATCHES = [1, 2, 4, 8, 64];
const PROBE_BACKENDS: BackendName[] = ['aesni', 'batch', 'wasm'];
const BOTH = ['seal', 'open'] as const;
const SEAL_ONLY = ['seal'] as const;
const MIN_BYTES_PER_ITERATION = 64 * 1024;
const MASK_AES_NI = '~0x200000200000000';
const POOL_VALUES = 65536;
const POOL_VALUE_BYTES = 1024;
const PASS_MARKER = 'CRYPTO_BENCH_PASS ';

type Pass = 'hardware' | 'masked';

interface BackendRow {
  pass: Pass;
  backend: BackendName;
  op: 'seal' | 'open';
  size: number;
  batch: number;
  valuesPerSec: number;
  MBps: number;
  rmePercent: number;
}

interface OpensslRow {
  pass: Pass;
  size: number;
  /** bytes/s over OpenSSL's user CPU time (its default), as MB/s. */
  MBps: number;
  /** bytes/s over wall-clock time (`-elapsed`), as MB/s. */
  wallMBps: number;
}

interface PassResult {
  pass: Pass;
  opensslAes: 'AES-NI' | 'software';
  rows: BackendRow[];
  openssl: OpensslRow[];
}

interface PoolResult {
  values: number;
  valueBytes: number;
  /** Median wall ms to seal all values: in this thread (auto backend), and with 1 and 2 workers. */
  inThreadMs: number;
  workersMs: Record<string, number>;
  /** The fastest repetition of each, the figure least disturbed by other load on the host. */
  bestMs: Record<string, number>;
  /** Median process CPU time / wall time per run: below ~2 for 2 workers, the host did not give the pool two cores. */
  coresUsed: Record<string, number>;
  reps: number;
}

const KEY_ID = 1;

/** This process's user + system CPU time in ms. */
function cpuNow(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function fixture(): { keys: Keystore; aad: (i: number) => AadContext } {
  const keys = new Keystore();
  keys.install(KEY_ID, 'storage', crypto.randomBytes(32));
  keys.setActive('storage', KEY_ID);
  const valueHeader = new Uint8Array(9);
  return { keys, aad: (i) => ({ kind: 'storage', valueHeader, storeKey: Buffer.from(`bench:key:${String(i).padStart(10, '0')}`) }) };
}

function sealItems(size: number, count: number, aad: (i: number) => AadContext): SealItem[] {
  const blob = crypto.randomBytes(size * count);
  return Array.from({ length: count }, (_, i) => ({ plaintext: blob.subarray(i * size, (i + 1) * size), flag: 0, aad: aad(i) }));
}

async function measureBackends(pass: Pass, quick: boolean): Promise<BackendRow[]> {
  const { keys, aad } = fixture();
  const dek = keys.get(KEY_ID)!;
  const reference = createBackend('aesni');
  const backends = new Map<BackendName, CryptoBackend>([...BACKENDS, 'noble' as const].map((name) => [name, createBackend(name)]));
  // Timed by this process's CPU time, as `openssl speed` times itself: the
  // host is shared, and wall time would charge other processes' load to the
  // figures. Each iteration repeats the call until it covers
  // MIN_BYTES_PER_ITERATION, far above the clock's microsecond resolution.
  const bench = new Bench({ name: `crypto ${pass}`, now: cpuNow, time: quick ? 40 : 150, warmupTime: quick ? 10 : 30, iterations: quick ? 2 : 3, warmupIterations: 1 });
  const meta = new Map<string, Omit<BackendRow, 'valuesPerSec' | 'MBps' | 'rmePercent'> & { reps: number }>();
  const combos = [
    ...SIZES.flatMap((size) => BATCHES.map((batch) => ({ size, batch, names: [...backends.keys()].filter((n) => n !== 'noble' || NOBLE_BATCHES.includes(batch)), ops: BOTH }))),
    // The probes behind auto's thresholds: seal only, the three data-path backends.
    ...PROBE_SIZES.flatMap((size) => PROBE_BATCHES.map((batch) => ({ size, batch, names: PROBE_BACKENDS, ops: SEAL_ONLY }))),
  ].filter(({ size, batch }, i, all) => size * batch <= MAX_BYTES_PER_OP && all.findIndex((c) => c.size === size && c.batch === batch) === i);
  for (const { size, batch, names, ops } of combos) {
    const items = sealItems(size, batch, aad);
    const nonces: NonceRange = new NonceFactory({ nodeId: 1, localEpoch: 1 }).reserve(batch);
    const opens = reference.sealBatch(dek, nonces, items).map((envelope, i) => ({ envelope, aad: items[i]!.aad }));
    const reps = Math.max(1, Math.floor(MIN_BYTES_PER_ITERATION / (size * batch)));
    for (const name of names) {
      const backend = backends.get(name)!;
      for (const op of ops) {
        const label = `${name} ${op} ${size} B x${batch}`;
        meta.set(label, { pass, backend: name, op, size, batch, reps });
        bench.add(
          label,
          op === 'seal'
            ? () => {
                for (let r = 0; r < reps; r++) backend.sealBatch(dek, nonces, items);
              }
            : () => {
                for (let r = 0; r < reps; r++) backend.openBatch(keys, opens);
              },
        );
      }
    }
  }
  await bench.run();
  for (const backend of backends.values()) backend.close?.();
  return bench.tasks.map((task) => {
    const { reps, ...row } = meta.get(task.name)!;
    const result = task.result;
    if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}`);
    const valuesPerSec = (1000 / result.period) * row.batch * reps;
    return { ...row, valuesPerSec: Math.round(valuesPerSec), MBps: round((valuesPerSec * row.size) / 1e6), rmePercent: round(result.latency.rme) };
  });
}

/** `openssl speed -evp aes-256-gcm` at each size, by CPU time and by wall time. */
function opensslRows(pass: Pass, quick: boolean): OpensslRow[] {
  const speed = (size: number, elapsed: boolean): number => round(opensslSpeed(size, { elapsed }) / 1e6);
  return SIZES.map((size) => ({ pass, size, MBps: speed(size, false), wallMBps: quick ? 0 : speed(size, true) }));
}

async function measurePool(quick: boolean): Promise<PoolResult> {
  const { keys, aad } = fixture();
  const dek = keys.get(KEY_ID)!;
  const values = quick ? POOL_VALUES / 4 : POOL_VALUES;
  const items = sealItems(POOL_VALUE_BYTES, values, aad);
  const factory = new NonceFactory({ nodeId: 1, localEpoch: 1 });
  const reps = quick ? 2 : 5;
  const inThread = createBackend('auto');
  const pools = new Map([1, 2].map((threads) => [threads, new CryptoPool({ keys, threads, backend: 'auto' })]));
  const times = new Map<string, number[]>();
  const cores = new Map<string, number[]>();
  const time = async (label: string, work: () => unknown): Promise<void> => {
    const start = performance.now();
    const cpuStart = cpuNow();
    await work();
    const ms = performance.now() - start;
    times.set(label, [...(times.get(label) ?? []), ms]);
    // CPU time over wall time: how many cores the run actually got.
    cores.set(label, [...(cores.get(label) ?? []), (cpuNow() - cpuStart) / ms]);
  };
  // The pool's own chunking (1024 values) is what the in-thread run does too.
  const inThreadSeal = (): void => {
    for (let from = 0; from < items.length; from += 1024) {
      const chunk = items.slice(from, from + 1024);
      inThread.sealBatch(dek, factory.reserve(chunk.length), chunk);
    }
  };
  for (const pool of pools.values()) await pool.sealBatch(dek, factory.reserve(4096), items.slice(0, 4096));
  for (let rep = 0; rep < reps; rep++) {
    await time('inThread', inThreadSeal);
    for (const [threads, pool] of pools) await time(String(threads), () => pool.sealBatch(dek, factory.reserve(items.length), items));
  }
  await Promise.all([...pools.values()].map((pool) => pool.close()));
  inThread.close?.();
  const medianMs = (label: string): number => round(median(times.get(label)!));
  const best = (label: string): number => round(Math.min(...times.get(label)!));
  return {
    values,
    valueBytes: POOL_VALUE_BYTES,
    inThreadMs: medianMs('inThread'),
    workersMs: { '1': medianMs('1'), '2': medianMs('2') },
    bestMs: { inThread: best('inThread'), '1': best('1'), '2': best('2') },
    coresUsed: Object.fromEntries([...cores].map(([label, list]) => [label, Math.round(median(list) * 100) / 100])),
    reps,
  };
}

async function measurePass(pass: Pass, quick: boolean): Promise<PassResult> {
  const rows = await measureBackends(pass, quick);
  return { pass, opensslAes: opensslHardwareAes() ? 'AES-NI' : 'software', rows, openssl: opensslRows(pass, quick) };
}

/**
 * One pass in a child process: OpenSSL reads OPENSSL_ia32cap when it
 * starts, and --single-threaded-gc keeps V8's garbage collection on the
 * measured thread, so the process CPU time the figures are timed by is the
 * work of one core, like `openssl speed`'s user time.
 */
function childPass(pass: Pass, quick: boolean): PassResult {
  const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), 'index.js');
  const env = pass === 'masked' ? { ...process.env, OPENSSL_ia32cap: MASK_AES_NI } : process.env;
  const child = spawnSync(process.execPath, ['--single-threaded-gc', entry, 'crypto', `--pass=${pass}`, ...(quick ? ['--quick'] : [])], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const line = child.stdout.split('\n').find((l) => l.startsWith(PASS_MARKER));
  if (child.status !== 0 || line === undefined) throw new Error(`${pass} pass failed (exit ${child.status})`);
  return JSON.parse(line.slice(PASS_MARKER.length)) as PassResult;
}

const round = (x: number): number => Math.round(x * 10) / 10;
const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;

function find(pass: PassResult, backend: BackendName, op: 'seal' | 'open', size: number, batch: number): BackendRow | undefined {
  return pass.rows.find((r) => r.backend === backend && r.op === op && r.size === size && r.batch === batch);
}

/** The issue's targets, each as a ratio of two figures of this run. */
function targets(hw: PassResult, pool: PoolResult): Record<string, { ratio: number; target: number; figures: string }> {
  const out: Record<string, { ratio: number; target: number; figures: string }> = {};
  const openssl = (size: number): number => hw.openssl.find((o) => o.size === size)!.MBps;
  const batch64 = find(hw, 'batch', 'seal', 64, 1024)!;
  const aesni64 = find(hw, 'aesni', 'seal', 64, 1024)!;
  out['batch seal 64 B x1024 / aesni (one node:crypto call per value)'] = { ratio: ratio(batch64.valuesPerSec, aesni64.valuesPerSec), target: 4, figures: `${batch64.valuesPerSec} vs ${aesni64.valuesPerSec} values/s` };
  const openssl64ops = (openssl(64) * 1e6) / 64;
  out['batch seal 64 B x1024 / openssl speed 64-byte ops'] = { ratio: ratio(batch64.valuesPerSec, openssl64ops), target: 0.4, figures: `${batch64.valuesPerSec} vs ${Math.round(openssl64ops)} ops/s` };
  for (const size of [16 * 1024, 1 << 20]) {
    const auto = find(hw, 'auto', 'seal', size, 1)!;
    out[`auto (default path) seal ${size} B / openssl speed`] = { ratio: ratio(auto.MBps, openssl(size)), target: 0.85, figures: `${auto.MBps} vs ${openssl(size)} MB/s` };
  }
  const wasm16 = find(hw, 'wasm', 'seal', 16 * 1024, 1)!;
  const noble16 = find(hw, 'noble', 'seal', 16 * 1024, 1)!;
  out['wasm seal 16 KiB / noble'] = { ratio: ratio(wasm16.MBps, noble16.MBps), target: 3, figures: `${wasm16.MBps} vs ${noble16.MBps} MB/s` };
  const poolMiB = (pool.values * pool.valueBytes) >> 20;
  out[`pool: ${poolMiB} MiB of 1 KiB, 1 worker / 2 workers (medians)`] = { ratio: ratio(pool.workersMs['1']!, pool.workersMs['2']!), target: 1.6, figures: `${pool.workersMs['1']} vs ${pool.workersMs['2']} ms` };
  out[`pool: ${poolMiB} MiB of 1 KiB, 1 worker / 2 workers (best of ${pool.reps})`] = { ratio: ratio(pool.bestMs['1']!, pool.bestMs['2']!), target: 1.6, figures: `${pool.bestMs['1']} vs ${pool.bestMs['2']} ms` };
  return out;
}

function markdown(passes: PassResult[], pool: PoolResult, goals: ReturnType<typeof targets>, cpu: string): string {
  const lines: string[] = [];
  const sizeLabel = (size: number): string => (size >= 1 << 20 ? `${size >> 20} MiB` : size >= 1024 ? `${size >> 10} KiB` : `${size} B`);
  const names: BackendName[] = [...BACKENDS, 'noble'];
  for (const pass of passes) {
    lines.push(`Seal / open MB/s, ${pass.pass === 'hardware' ? 'OpenSSL with AES-NI' : `AES-NI masked (\`OPENSSL_ia32cap="${MASK_AES_NI}"\`)`} — ${cpu}:`, '');
    lines.push(`| size | batch | ${names.join(' | ')} | openssl speed |`, `|---|---|${names.map(() => '---|').join('')}---|`);
    for (const size of SIZES) {
      for (const batch of BATCHES) {
        if (size * batch > MAX_BYTES_PER_OP) continue;
        const cells = names.map((name) => {
          const seal = find(pass, name, 'seal', size, batch);
          const open = find(pass, name, 'open', size, batch);
          return seal === undefined || open === undefined ? '–' : `${seal.MBps} / ${open.MBps}`;
        });
        const openssl = batch === 1 ? String(pass.openssl.find((o) => o.size === size)!.MBps) : '';
        lines.push(`| ${sizeLabel(size)} | ${batch} | ${cells.join(' | ')} | ${openssl} |`);
      }
    }
    lines.push('');
  }
  for (const pass of passes) {
    lines.push(`Where \`auto\` switches (seal MB/s, aesni / batch / wasm), ${pass.pass === 'hardware' ? 'with AES-NI' : 'AES-NI masked'}:`, '');
    lines.push(`| size | ${PROBE_BATCHES.map((n) => `n=${n}`).join(' | ')} |`, `|---|${PROBE_BATCHES.map(() => '---|').join('')}`);
    for (const size of PROBE_SIZES) {
      const cells = PROBE_BATCHES.map((batch) => PROBE_BACKENDS.map((name) => find(pass, name, 'seal', size, batch)?.MBps ?? '–').join(' / '));
      lines.push(`| ${sizeLabel(size)} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push(
    `Worker pool, ${pool.values} values of ${pool.valueBytes} B sealed (auto backend), median (best) of ${pool.reps}: ` +
      `in the main thread ${pool.inThreadMs} (${pool.bestMs.inThread}) ms, 1 worker ${pool.workersMs['1']} (${pool.bestMs['1']}) ms, ` +
      `2 workers ${pool.workersMs['2']} (${pool.bestMs['2']}) ms; cores used (CPU time / wall time) ${pool.coresUsed['1']} with 1 worker, ${pool.coresUsed['2']} with 2.`,
    '',
  );
  lines.push('| target | ratio | goal | figures |', '|---|---|---|---|');
  for (const [name, goal] of Object.entries(goals)) lines.push(`| ${name} | ${goal.ratio} | ${goal.target} | ${goal.figures} |`);
  return lines.join('\n') + '\n';
}

function chart(passes: PassResult[]): string {
  const sizeLabel = (size: number): string => (size >= 1 << 20 ? `${size >> 20} MiB` : size >= 1024 ? `${size >> 10} KiB` : `${size} B`);
  const panels: ChartPanel[] = passes.flatMap((pass) =>
    [1, 64].map((batch) => ({
      title: `seal, batch ${batch}, ${pass.pass === 'hardware' ? 'AES-NI' : 'AES-NI masked'}`,
      groups: SIZES.filter((size) => size * batch <= MAX_BYTES_PER_OP).map((size) => ({
        label: sizeLabel(size),
        bars: [
          ...[...BACKENDS, 'noble' as const].flatMap((name) => {
            const row = find(pass, name, 'seal', size, batch);
            return row === undefined ? [] : [{ series: name, value: row.MBps }];
          }),
          { series: 'openssl speed', value: pass.openssl.find((o) => o.size === size)!.MBps },
        ],
      })),
    })),
  );
  return barChartSvg('sealkv AES-256-GCM seal throughput (MB/s, log scale)', 'MB/s', panels);
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const passArg = args.find((arg) => arg.startsWith('--pass='));
  if (passArg !== undefined) {
    const pass = passArg.slice('--pass='.length) as Pass;
    process.stdout.write(PASS_MARKER + JSON.stringify(await measurePass(pass, quick)) + '\n');
    return;
  }
  if (args.includes('--pool-only')) {
    console.log(JSON.stringify(await measurePool(quick), null, 2));
    return;
  }
  const started = performance.now();
  const hardware = childPass('hardware', quick);
  console.log(`hardware pass done in ${Math.round((performance.now() - started) / 1000)} s`);
  const passes = [hardware];
  if (!args.includes('--no-masked')) passes.push(childPass('masked', quick));
  const pool = await measurePool(quick);
  const goals = targets(hardware, pool);
  console.table(passes.flatMap((p) => p.rows).map(({ pass, backend, op, size, batch, MBps }) => ({ pass, backend, op, size, batch, MBps })));
  console.table(passes.flatMap((p) => p.openssl));
  console.table(goals);
  const file = writeResults('crypto', { quick, passes, pool, targets: goals, seconds: Math.round((performance.now() - started) / 1000) });
  const base = file.replace(/\.json$/, '');
  const cpu = `${process.env.BENCH_CPU_LABEL ?? (await import('node:os')).cpus()[0]?.model ?? 'unknown CPU'}`;
  fs.writeFileSync(`${base}.svg`, chart(passes));
  fs.writeFileSync(`${base}.md`, markdown(passes, pool, goals, cpu));
  console.log(`results: ${file}, ${base}.svg, ${base}.md (${Math.round((performance.now() - started) / 1000)} s)`);
}
