// Store benchmark (SPEC §14, issue 5): put, get and scan throughput and
// latency, encrypted vs cleartext, on RocksDB, with the same data in the
// same run; 100 B and 1 KiB values; JSON-like (compressible) and random
// (incompressible) data; disk bytes per value.
//
// A cleartext and an encrypted store are open side by side and every timed
// step alternates between them; the median of the rounds is reported.
// Ratios are encrypted / cleartext from this one run.
//
// Disk bytes. rocksdb-native is built without any compression library, so
// RocksDB block compression cannot be switched on. The cleartext baseline
// "with block compression" is therefore estimated: every SST file of the
// cleartext run is cut into 8 KiB blocks (the table block size) and each
// block compressed with Snappy (RocksDB's default block compressor), a
// block kept raw when that does not shrink it. Both the raw and the
// estimated cleartext figures are reported.
//
// `--pool` adds a third store that seals its write batches on a CryptoPool
// (EncryptionSettings.pool; `--pool-threads=N` workers, default 1) and
// reports its ratios to the same cleartext run as `poolRatios`. Its target
// shape is the pipelined apply loop (batch N+1 sealed on a worker while
// batch N is written). CPU figures count every thread of the process, the
// workers included, so moving work to a worker does not lower them; the
// pipelined shape also reports the main thread's own CPU time (Linux
// /proc/self/task/<pid>/schedstat; elsewhere event-loop busy time, which
// also counts time the thread waited for a core), which is what the apply
// loop itself spends per op.
//
//   npm run bench -- store [--quick] [--backend=aesni|batch|wasm|auto] [--pool] [--pool-threads=N]
//                          [--apply-batch=OPS (default 64)] [--sizes=100,1024]

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import snappy from 'snappy';
import * as cryptoApi from '../src/crypto/index.js';
import { AesniBackend, CryptoPool, Keystore, NonceFactory, Sealer, type BackendName, type CryptoBackend } from '../src/crypto/index.js';
import { RocksEngine, Store, type WriteOp } from '../src/store/index.js';
import { medianFields } from './lib/measure.js';
import { writeResults } from './lib/results.js';

const SIZES = [100, 1024];
const KINDS = ['json', 'random'] as const;
type Kind = (typeof KINDS)[number];
const MULTI_GET = 64;
const BLOCK_BYTES = 8192;

const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango'.split(' ');
const CITIES = ['Lisbon', 'Oslo', 'Nairobi', 'Osaka', 'Quito', 'Perth', 'Tallinn', 'Denver'];

/** A JSON document of about `size` bytes that looks like application data. */
function jsonValue(i: number, size: number): Buffer {
  const rnd = (n: number): number => crypto.randomInt(n);
  const items: object[] = [];
  let doc: object = {};
  for (;;) {
    doc = {
      id: i,
      user: `${WORDS[rnd(20)]}.${WORDS[rnd(20)]}${rnd(1000)}`,
      email: `${WORDS[rnd(20)]}${rnd(10000)}@example.com`,
      city: CITIES[rnd(CITIES.length)],
      created: new Date(1_700_000_000_000 + rnd(1e9) * 1000).toISOString(),
      active: rnd(2) === 1,
      score: rnd(100000) / 100,
      token: crypto.randomBytes(6).toString('base64url'),
      items,
    };
    if (Buffer.byteLength(JSON.stringify(doc)) >= size) break;
    items.push({ sku: `SKU-${rnd(99999)}`, qty: rnd(9) + 1, price: rnd(10000) / 100, tag: WORDS[rnd(20)] });
  }
  return Buffer.from(JSON.stringify(doc)).subarray(0, size);
}

function makeValues(kind: Kind, size: number, n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => (kind === 'json' ? jsonValue(i, size) : crypto.randomBytes(size)));
}

const keyOf = (i: number): Buffer => Buffer.from(`user:${String(i).padStart(8, '0')}`);

// `--backend=NAME` uses the crypto part's createBackend(NAME) where the
// build has one (batch, wasm, auto); aesni otherwise.
let backendName = 'aesni';

function makeBackend(): CryptoBackend {
  const create = (cryptoApi as Record<string, unknown>).createBackend as ((name: string) => CryptoBackend) | undefined;
  if (backendName === 'aesni' && create === undefined) return new AesniBackend();
  if (create === undefined) throw new Error(`this build has only the aesni backend, not ${backendName}`);
  return create(backendName);
}

function sealer(): { sealer: Sealer; keystore: Keystore } {
  const keystore = new Keystore();
  keystore.install(0x12345678, 'storage', crypto.randomBytes(32));
  keystore.setActive('storage', 0x12345678);
  return { keystore, sealer: new Sealer({ keystore, backend: makeBackend(), nonceFactory: () => new NonceFactory({ nodeId: 1, localEpoch: 1 }) }) };
}

/** Stores each run opens side by side: cleartext first, then encrypted in-thread, then (with --pool) pool-sealed. */
type Side = 'clear' | 'sealed' | 'pool';
let sideNames: Side[] = ['clear', 'sealed'];
let poolThreads = 1;
/** Ops per applyBatch call in the put phases (`--apply-batch=N`). */
let applyBatchSize = 64;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

const MAIN_SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;
const hasSchedstat = fs.existsSync(MAIN_SCHEDSTAT);

/** µs the main thread has run on a CPU (schedstat's first field is ns), or its event-loop busy time. */
function mainThreadUs(): number {
  if (hasSchedstat) return Number(fs.readFileSync(MAIN_SCHEDSTAT, 'latin1').split(' ', 1)[0]) / 1000;
  return performance.eventLoopUtilization().active * 1000;
}

const nowUs = (): number => Number(process.hrtime.bigint()) / 1000;

interface RunFigures {
  putOpsPerSec: number;
  /** Per second of process CPU time (all threads: JS, RocksDB, OpenSSL). */
  putOpsPerCpuSec: number;
  getOpsPerCpuSec: number;
  scanEntriesPerCpuSec: number;
  putPipelinedOpsPerSec: number;
  putPipelinedOpsPerCpuSec: number;
  /** Per second of main-thread CPU time: what the apply loop itself spends. */
  putPipelinedOpsPerMainSec: number;
  putOneP50Us: number;
  putOneP99Us: number;
  getOpsPerSec: number;
  getP50Us: number;
  getP99Us: number;
  multiGetKeysPerSec: number;
  scanEntriesPerSec: number;
  sstBytesPerValue: number;
  blockCompressedBytesPerValue: number;
}

function sstFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.sst')).map((f) => path.join(dir, f));
}

function blockCompressedBytes(files: string[]): number {
  let total = 0;
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    for (let at = 0; at < bytes.length; at += BLOCK_BYTES) {
      const block = bytes.subarray(at, at + BLOCK_BYTES);
      total += Math.min(block.length, snappy.compressSync(block).length);
    }
  }
  return total;
}

// All stores are open at once and every timed step rotates between them
// (a batch, a get, a page of a scan), so that the load of a shared
// machine lands on every side alike.
async function runPair(values: Buffer[], gets: number): Promise<Record<Side, RunFigures>> {
  const sides = await Promise.all(
    sideNames.map(async (name) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-store-'));
      const engine = await RocksEngine.open(dir);
      const keyed = name === 'clear' ? undefined : sealer();
      const pool = name === 'pool' ? new CryptoPool({ keys: keyed!.keystore, backend: backendName as BackendName, threads: poolThreads }) : undefined;
      const store = new Store(engine, keyed === undefined ? undefined : { sealer: keyed.sealer, active: true, ...(pool === undefined ? {} : { pool }) });
      return { sealed: name !== 'clear', pool, dir, engine, store, us: 0, cpuUs: 0, mainUs: 0, lat: [] as number[] };
    }),
  );
  const timed = async (side: (typeof sides)[number], step: () => Promise<unknown>): Promise<void> => {
    const cpu = process.cpuUsage();
    const main = mainThreadUs();
    const s = nowUs();
    await step();
    const took = nowUs() - s;
    const used = process.cpuUsage(cpu);
    side.us += took;
    side.cpuUs += used.user + used.system;
    side.mainUs += mainThreadUs() - main;
    side.lat.push(took);
  };
  const phase = async (count: number, step: (side: (typeof sides)[number], i: number) => Promise<unknown>): Promise<{ perSec: number; perCpuSec: number; perMainSec: number; p50: number; p99: number }[]> => {
    for (const side of sides) {
      side.us = 0;
      side.cpuUs = 0;
      side.mainUs = 0;
      side.lat = [];
    }
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < sides.length; k++) {
        const side = sides[(i + k) % sides.length]!;
        await timed(side, () => step(side, i));
      }
    }
    return sides.map((side) => {
      side.lat.sort((a, b) => a - b);
      return { perSec: (count / side.us) * 1e6, perCpuSec: (count / side.cpuUs) * 1e6, perMainSec: (count / side.mainUs) * 1e6, p50: percentile(side.lat, 0.5), p99: percentile(side.lat, 0.99) };
    });
  };
  try {
    const n = values.length;
    const batches = Math.floor(n / applyBatchSize);
    const batch = (from: number): WriteOp[] =>
      values.slice(from, from + applyBatchSize).map((value, j) => ({ type: 'put', key: keyOf(from + j), value, commitTs: 1n }));

    // Apply-loop shape: batches of 64, each awaited before the next.
    const put = await phase(batches, (side, i) => side.store.applyBatch(batch(i * applyBatchSize), { appliedIndex: BigInt(i + 1) }));

    // Disk bytes of exactly one version per key.
    const disk: { sst: number; block: number }[] = [];
    for (const side of sides) {
      await side.engine.compact();
      const files = sstFiles(side.dir);
      const sstBytes = files.reduce((sum, f) => sum + fs.statSync(f).size, 0);
      disk.push({ sst: sstBytes / n, block: (side.sealed ? sstBytes : blockCompressedBytes(files)) / n });
    }

    // Pipelined: batch N+1 is sealed while batch N is written (writes stay
    // in order); new keys, in groups of 8 batches per timed step.
    const pipelined = await phase(Math.floor(batches / 8), async (side, g) => {
      let inFlight: Promise<unknown> = Promise.resolve();
      for (let k = 0; k < 8; k++) {
        const ops = batch((g * 8 + k) * applyBatchSize).map((op) => ({ ...op, key: Buffer.concat([Buffer.from('p'), op.key]) }));
        const next = side.store.applyBatch(ops);
        await inFlight;
        inFlight = next;
      }
      await inFlight;
    });

    // One put per batch: latency.
    const one = await phase(Math.min(n, 1000), (side, i) => side.store.put(Buffer.concat([Buffer.from('one:'), keyOf(i)]), values[i]!, 1n));

    const order = Array.from({ length: gets }, () => crypto.randomInt(n));
    const get = await phase(gets, async (side, i) => {
      if ((await side.store.get(keyOf(order[i]!), 10n)) === undefined) throw new Error('bench: missing key');
    });
    const mget = await phase(Math.floor(gets / MULTI_GET), (side, i) => side.store.getMany(order.slice(i * MULTI_GET, (i + 1) * MULTI_GET).map(keyOf), 10n));
    const SCAN_SLICE = 1024;
    const scan = await phase(Math.floor(n / SCAN_SLICE), async (side, i) => {
      for await (const _ of side.store.scan({ start: keyOf(i * SCAN_SLICE), end: keyOf((i + 1) * SCAN_SLICE) }, 10n));
    });

    const figures = (k: number): RunFigures => ({
      putOpsPerSec: put[k]!.perSec * applyBatchSize,
      putOpsPerCpuSec: put[k]!.perCpuSec * applyBatchSize,
      getOpsPerCpuSec: get[k]!.perCpuSec,
      scanEntriesPerCpuSec: scan[k]!.perCpuSec * SCAN_SLICE,
      putPipelinedOpsPerSec: pipelined[k]!.perSec * 8 * applyBatchSize,
      putPipelinedOpsPerCpuSec: pipelined[k]!.perCpuSec * 8 * applyBatchSize,
      putPipelinedOpsPerMainSec: pipelined[k]!.perMainSec * 8 * applyBatchSize,
      putOneP50Us: one[k]!.p50,
      putOneP99Us: one[k]!.p99,
      getOpsPerSec: get[k]!.perSec,
      getP50Us: get[k]!.p50,
      getP99Us: get[k]!.p99,
      multiGetKeysPerSec: mget[k]!.perSec * MULTI_GET,
      scanEntriesPerSec: scan[k]!.perSec * SCAN_SLICE,
      sstBytesPerValue: disk[k]!.sst,
      blockCompressedBytesPerValue: disk[k]!.block,
    });
    return Object.fromEntries(sideNames.map((name, k) => [name, figures(k)])) as Record<Side, RunFigures>;
  } finally {
    for (const side of sides) {
      await side.store.close();
      await side.pool?.close();
      fs.rmSync(side.dir, { recursive: true, force: true });
    }
  }
}

function ratiosOf(e: RunFigures, c: RunFigures) {
  const ratio = (a: number, b: number): number => Number((a / b).toFixed(3));
  return {
    put: ratio(e.putOpsPerSec, c.putOpsPerSec),
    putCpu: ratio(e.putOpsPerCpuSec, c.putOpsPerCpuSec),
    getCpu: ratio(e.getOpsPerCpuSec, c.getOpsPerCpuSec),
    scanCpu: ratio(e.scanEntriesPerCpuSec, c.scanEntriesPerCpuSec),
    putPipelined: ratio(e.putPipelinedOpsPerSec, c.putPipelinedOpsPerSec),
    putPipelinedCpu: ratio(e.putPipelinedOpsPerCpuSec, c.putPipelinedOpsPerCpuSec),
    putPipelinedMainThread: ratio(e.putPipelinedOpsPerMainSec, c.putPipelinedOpsPerMainSec),
    putOneP50Latency: ratio(e.putOneP50Us, c.putOneP50Us),
    get: ratio(e.getOpsPerSec, c.getOpsPerSec),
    getP50Latency: ratio(e.getP50Us, c.getP50Us),
    multiGet: ratio(e.multiGetKeysPerSec, c.multiGetKeysPerSec),
    scan: ratio(e.scanEntriesPerSec, c.scanEntriesPerSec),
    diskVsClearRaw: ratio(e.sstBytesPerValue, c.sstBytesPerValue),
    diskVsClearBlockCompressed: ratio(e.sstBytesPerValue, c.blockCompressedBytesPerValue),
  };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const option = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  backendName = option('backend') ?? backendName;
  if (args.includes('--pool')) sideNames = ['clear', 'sealed', 'pool'];
  poolThreads = Number(option('pool-threads') ?? poolThreads);
  applyBatchSize = Number(option('apply-batch') ?? applyBatchSize);
  const sizes = option('sizes')?.split(',').map(Number) ?? SIZES;
  console.log(`store bench: crypto backend ${backendName}${sideNames.includes('pool') ? `, pool of ${poolThreads} thread(s)` : ''}`);
  const rounds = quick ? 3 : 5;
  const results = [];
  for (const size of sizes) {
    for (const kind of KINDS) {
      // At least 64 batches, so the pipelined phase has 8 groups of 8.
      const n = Math.max(quick ? 4096 : size >= 1024 ? 16384 : 32768, 64 * applyBatchSize);
      const values = makeValues(kind, size, n);
      const runs: Record<Side, RunFigures>[] = [];
      await runPair(values.slice(0, 1024), 200); // warm-up
      for (let round = 0; round < rounds; round++) runs.push(await runPair(values, quick ? 1024 : 4096));
      const c = medianFields(runs.map((r) => r.clear));
      const e = medianFields(runs.map((r) => r.sealed));
      const p = sideNames.includes('pool') ? medianFields(runs.map((r) => r.pool)) : undefined;
      results.push({
        size,
        kind,
        backend: backendName,
        applyBatch: applyBatchSize,
        values: n,
        rounds,
        cleartext: c,
        encrypted: e,
        ratios: ratiosOf(e, c),
        ...(p === undefined ? {} : { poolThreads, pooled: p, poolRatios: ratiosOf(p, c) }),
      });
      const last = results[results.length - 1]!;
      console.log(`${size} B ${kind}: ${JSON.stringify(last.ratios)}`);
      if (last.poolRatios !== undefined) console.log(`${size} B ${kind} pool: ${JSON.stringify(last.poolRatios)}`);
    }
  }
  console.table(
    results.map((r) => ({
      case: `${r.size} B ${r.kind}`,
      'put clear/s': Math.round(r.cleartext.putOpsPerSec),
      'put enc/s': Math.round(r.encrypted.putOpsPerSec),
      put: r.ratios.put,
      'put cpu': r.ratios.putCpu,
      'put pipelined': r.ratios.putPipelined,
      'pipelined cpu': r.ratios.putPipelinedCpu,
      'pipelined main': r.ratios.putPipelinedMainThread,
      ...(r.poolRatios === undefined
        ? {}
        : { 'pool put': r.poolRatios.put, 'pool put cpu': r.poolRatios.putCpu, 'pool pipelined': r.poolRatios.putPipelined, 'pool pipelined cpu': r.poolRatios.putPipelinedCpu, 'pool pipelined main': r.poolRatios.putPipelinedMainThread }),
      'get clear/s': Math.round(r.cleartext.getOpsPerSec),
      'get enc/s': Math.round(r.encrypted.getOpsPerSec),
      get: r.ratios.get,
      'get cpu': r.ratios.getCpu,
      mget: r.ratios.multiGet,
      scan: r.ratios.scan,
      'scan cpu': r.ratios.scanCpu,
      'B/value clear raw': Math.round(r.cleartext.sstBytesPerValue),
      'B/value clear block-snappy': Math.round(r.cleartext.blockCompressedBytesPerValue),
      'B/value enc': Math.round(r.encrypted.sstBytesPerValue),
      'disk vs block-snappy': r.ratios.diskVsClearBlockCompressed,
    })),
  );
  console.log(`results: ${writeResults('store', results)}`);
}
