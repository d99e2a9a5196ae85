// Rewrite sweep benchmark (SPEC §14, §11): MB/s of value bytes re-sealed by
// the offline sweep on RocksDB — the same path as `encryption rewrite
// --offline` (Store with a CryptoPool, runSweep with its default batches),
// without the sidecar start-up — with 0 (in-thread), 1 and 2 workers, for
// 1 KiB and 16 KiB values. Each sweep runs in a fresh process
// (lib/rewrite-sweep-child.ts), as the offline CLI does, and reports that
// process's RSS high-water (sampled every 25 ms; worker threads and RocksDB
// included).
//
// Each value size gets one store of random (incompressible) values sealed
// under DEK A; the rounds sweep it A → B, then B → A, and so on, so every
// round re-seals the whole data set. The median round is reported, and
// ratios within this run: 2 workers / 1 worker, and each to the read-only
// pass over the same versions (the I/O ceiling of a sweep).
//
// Per-stage figures (µs per value, on the main thread): the read pass, the
// in-thread open + seal of one batch, and the pool's reseal of one batch.
//
//   npm run bench -- rewrite [--quick] [--backend=aesni|batch|wasm|auto] [--mib=N]
//   SEALKV_REWRITE_BENCH_GB=2 npm run bench -- rewrite   (one 2-worker sweep of 2 GiB of 1 KiB values)

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CryptoPool, Keystore, NonceFactory, Sealer, createBackend, type BackendName, type OpenItem } from '../src/crypto/index.js';
import { RocksEngine, Store, encodeStoreKey, type WriteOp } from '../src/store/index.js';
import { machineInfo } from './lib/machine.js';
import { medianBy } from './lib/measure.js';
import { writeResults } from './lib/results.js';

const KEY_A = 0x0a0a_0001;
const KEY_B = 0x0b0b_0002;
const MIB = 1024 * 1024;
const BUILD_BATCH = 1024;

interface SweepRun {
  /** CPU µs per value of every thread of the sweep process, and the main thread's busy µs per value. */
  cpuUsPerValue: number;
  mainBusyUsPerValue: number;
  workers: number;
  valueBytes: number;
  versions: number;
  mibPerSec: number;
  seconds: number;
  rssHighMiB: number;
  rssAtStartMiB: number;
}

/** Per value: wall µs, and CPU µs of the whole process (RocksDB's threads included) where one thread does the work. */
interface Stages {
  readPassUsPerValue: number;
  readPassCpuUsPerValue: number;
  readPassMiBPerSec: number;
  inThreadResealUsPerValue: number;
  inThreadResealCpuUsPerValue: number;
  poolResealUsPerValue: Record<string, number>;
}

function parseArgs(args: string[]): { quick: boolean; backend: BackendName; mib: number | undefined } {
  const value = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const mib = value('mib');
  return { quick: args.includes('--quick'), backend: (value('backend') ?? 'auto') as BackendName, mib: mib === undefined ? undefined : Number(mib) };
}

class Fixture {
  readonly keystore = new Keystore();
  readonly sealer: Sealer;
  /** "A:B" for the sweep processes. */
  readonly deksHex: string;
  #epoch = 1;

  constructor(backend: BackendName) {
    const a = crypto.randomBytes(32);
    const b = crypto.randomBytes(32);
    this.deksHex = `${a.toString('hex')}:${b.toString('hex')}`;
    this.keystore.install(KEY_A, 'storage', a);
    this.keystore.install(KEY_B, 'storage', b);
    this.keystore.setActive('storage', KEY_A);
    this.sealer = new Sealer({ keystore: this.keystore, backend: createBackend(backend), nonceFactory: () => new NonceFactory({ nodeId: 1, localEpoch: this.#epoch++ }) });
  }
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'rewrite-sweep-child.js');

async function build(store: Store, valueBytes: number, totalBytes: number): Promise<number> {
  const count = Math.ceil(totalBytes / valueBytes);
  const body = crypto.randomBytes(valueBytes + 4096);
  for (let i = 0; i < count; i += BUILD_BATCH) {
    const ops: WriteOp[] = [];
    for (let j = i; j < Math.min(count, i + BUILD_BATCH); j++) {
      const offset = j % 4096;
      ops.push({ type: 'put', key: Buffer.from(`user:${String(j).padStart(10, '0')}`), value: body.subarray(offset, offset + valueBytes), commitTs: 1n });
    }
    await store.applyBatch(ops);
  }
  await store.persist();
  return count;
}

async function stages(store: Store, fixture: Fixture, pools: Map<number, CryptoPool>): Promise<Stages> {
  let n = 0;
  let bytes = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const sample: OpenItem[] = [];
  for await (const v of store.versions()) {
    n++;
    bytes += v.row.length;
    if (sample.length < 1024) {
      const body = v.row.subarray(9);
      sample.push({ envelope: body, aad: { kind: 'storage', valueHeader: v.row.subarray(0, 9), storeKey: encodeStoreKey(v.key, v.commitTs) } });
    }
  }
  const readSeconds = (performance.now() - t0) / 1000;
  const readCpu = process.cpuUsage(c0);
  const dek = fixture.sealer.activeDek('storage');
  const reps = 5;
  const c1 = process.cpuUsage();
  const t1 = performance.now();
  for (let r = 0; r < reps; r++) {
    const opened = fixture.sealer.open(sample);
    const items = opened.map((o, i) => {
      if (!o.ok) throw o.error;
      return { plaintext: o.plaintext, flag: o.flag, aad: sample[i]!.aad };
    });
    fixture.sealer.backend.sealBatch(dek, fixture.sealer.reserveNonces(dek, items.length), items);
  }
  const inThread = ((performance.now() - t1) * 1000) / (reps * sample.length);
  const inThreadCpu = process.cpuUsage(c1);
  const poolReseal: Record<string, number> = {};
  for (const [threads, pool] of pools) {
    await pool.resealBatch(dek, fixture.sealer.reserveNonces(dek, sample.length), sample); // warm the workers' keys
    const t2 = performance.now();
    await Promise.all(Array.from({ length: reps }, () => pool.resealBatch(dek, fixture.sealer.reserveNonces(dek, sample.length), sample)));
    poolReseal[String(threads)] = ((performance.now() - t2) * 1000) / (reps * sample.length);
  }
  return {
    readPassUsPerValue: (readSeconds * 1e6) / n,
    readPassCpuUsPerValue: (readCpu.user + readCpu.system) / n,
    readPassMiBPerSec: bytes / MIB / readSeconds,
    inThreadResealUsPerValue: inThread,
    inThreadResealCpuUsPerValue: (inThreadCpu.user + inThreadCpu.system) / (reps * sample.length),
    poolResealUsPerValue: poolReseal,
  };
}

let childEpoch = 1000;

/** One sweep from → to in a fresh process (the store must be closed here). */
function sweepOnce(dir: string, fixture: Fixture, from: number, to: number, valueBytes: number, workers: number, backend: BackendName): SweepRun {
  const out = execFileSync(process.execPath, [CHILD, dir, String(from), String(to), String(workers), backend, String(childEpoch++)], {
    env: { ...process.env, SEALKV_BENCH_DEKS_HEX: fixture.deksHex },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { mibPerSec: number; seconds: number; versions: number; maxRssMiB: number; rssAtStartMiB: number; cpuUsPerValue: number; mainBusyUsPerValue: number };
  return {
    workers,
    valueBytes,
    versions: r.versions,
    mibPerSec: r.mibPerSec,
    seconds: r.seconds,
    rssHighMiB: r.maxRssMiB,
    rssAtStartMiB: r.rssAtStartMiB,
    cpuUsPerValue: r.cpuUsPerValue,
    mainBusyUsPerValue: r.mainBusyUsPerValue,
  };
}

export async function run(args: string[]): Promise<void> {
  const { quick, backend, mib } = parseArgs(args);
  const bigGiB = Number(process.env.SEALKV_REWRITE_BENCH_GB ?? 0);
  const sizes = bigGiB > 0 ? [1024] : [1024, 16 * 1024];
  const workerCounts = bigGiB > 0 ? [2] : [0, 1, 2];
  const dataBytes = bigGiB > 0 ? bigGiB * 1024 * MIB : (mib ?? (quick ? 16 : 128)) * MIB;
  const rounds = bigGiB > 0 ? 1 : quick ? 1 : 3;
  const loadAtStart = os.loadavg()[0];
  console.log(`rewrite bench: ${(dataBytes / MIB).toFixed(0)} MiB of values per size, sizes ${sizes.join(', ')}, workers ${workerCounts.join(', ')}, ${rounds} round(s), backend ${backend}, ${os.availableParallelism()} cores`);

  const fixture = new Fixture(backend);
  const pools = new Map<number, CryptoPool>();
  for (const w of workerCounts) if (w > 0) pools.set(w, new CryptoPool({ keys: fixture.keystore, threads: w, backend }));
  const runs: SweepRun[] = [];
  const stageBySize: Record<string, Stages> = {};
  try {
    for (const valueBytes of sizes) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-rewrite-'));
      const engine = await RocksEngine.open(dir);
      const store = new Store(engine, { sealer: fixture.sealer, active: true, ...(pools.get(2) === undefined ? {} : { pool: pools.get(2)! }) });
      try {
        fixture.keystore.setActive('storage', KEY_A);
        const t0 = performance.now();
        const count = await build(store, valueBytes, dataBytes);
        await engine.compact();
        console.log(`  ${valueBytes} B values: ${count} versions built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        if (bigGiB === 0) stageBySize[String(valueBytes)] = await stages(store, fixture, pools);
        await store.close();
        let under = KEY_A;
        for (let round = 0; round < rounds; round++) {
          for (const workers of workerCounts) {
            const to = under === KEY_A ? KEY_B : KEY_A;
            const r = sweepOnce(dir, fixture, under, to, valueBytes, workers, backend);
            under = to;
            runs.push(r);
            console.log(`  ${valueBytes} B, ${workers} worker(s): ${r.mibPerSec.toFixed(1)} MiB/s (${r.versions} versions in ${r.seconds.toFixed(2)} s), RSS high ${r.rssHighMiB.toFixed(0)} MiB (${r.rssAtStartMiB.toFixed(0)} at start)`);
          }
        }
      } finally {
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await Promise.all([...pools.values()].map((p) => p.close()));
  }

  const cases = sizes.flatMap((valueBytes) =>
    workerCounts.map((workers) => medianBy(runs.filter((r) => r.valueBytes === valueBytes && r.workers === workers), (r) => r.mibPerSec)),
  );
  const ratios: Record<string, unknown> = {};
  for (const valueBytes of sizes) {
    const at = (w: number): SweepRun | undefined => cases.find((c) => c.valueBytes === valueBytes && c.workers === w);
    const one = at(1);
    const two = at(2);
    const stage = stageBySize[String(valueBytes)];
    // On 2 cores, with M = the main thread's CPU per value (the in-thread
    // sweep minus its open + seal) and C = open + seal: 1 worker runs at
    // 1/max(C, (M+C)/2), 2 workers at best 2/(M+C); their ratio is at most
    // 2C/(M+C) when C > M (≥ 1.6 needs C ≥ 4M).
    const inThreadRun = at(0);
    const mainCpu = inThreadRun !== undefined && stage !== undefined ? inThreadRun.cpuUsPerValue - stage.inThreadResealCpuUsPerValue : undefined;
    const sealCpu = stage?.inThreadResealCpuUsPerValue;
    ratios[String(valueBytes)] = {
      mainCpuUsPerValue: mainCpu ?? null,
      sealCpuUsPerValue: sealCpu ?? null,
      twoOverOneBoundOn2Cores: mainCpu !== undefined && sealCpu !== undefined ? Math.max(1, (2 * sealCpu) / (mainCpu + sealCpu)) : null,
      twoWorkersOverOne: one !== undefined && two !== undefined ? two.mibPerSec / one.mibPerSec : null,
      twoWorkersOverInThread: at(0) !== undefined && two !== undefined ? two.mibPerSec / at(0)!.mibPerSec : null,
      twoWorkersOverReadPass: stage !== undefined && two !== undefined ? two.mibPerSec / stage.readPassMiBPerSec : null,
      twoWorkersMBps: two === undefined ? null : (two.mibPerSec * MIB) / 1e6,
    };
  }
  const rssHighMiB = Math.max(...runs.map((r) => r.rssHighMiB));
  // The machine is shared: its load average says how far wall-clock figures are from a quiet run.
  const results = { dataMiB: dataBytes / MIB, backend, rounds, loadAverage: { start: loadAtStart, end: os.loadavg()[0] }, cases, stages: stageBySize, ratios, rssHighMiB, bigGiB: bigGiB > 0 ? bigGiB : null, machine: machineInfo().cpuFlags };
  console.table(
    cases.map((c) => ({
      value: c.valueBytes,
      workers: c.workers,
      'MiB/s': c.mibPerSec.toFixed(1),
      'RSS MiB': c.rssHighMiB.toFixed(0),
      'CPU µs/value': c.cpuUsPerValue.toFixed(1),
      'main busy µs/value': c.mainBusyUsPerValue.toFixed(1),
    })),
  );
  console.log(JSON.stringify({ ratios, stages: stageBySize, rssHighMiB }, null, 2));
  console.log(`results: ${writeResults(bigGiB > 0 ? `rewrite-${bigGiB}gib` : quick ? 'rewrite-quick' : 'rewrite', results)}`);
}
