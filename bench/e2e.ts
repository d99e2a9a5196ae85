// End-to-end benchmark (SPEC §14 "end to end", issue 9): 3-node clusters of
// real `sealkv start` processes on 127.0.0.1 under the same pipelined RESP
// load (bench/lib/load.ts), in the same run:
//   cleartext            — capable nodes, encryption never enabled (the baseline)
//   phase1               — enable-storage-envelope (values sealed at apply)
//   phase2               — and enable-raft-envelope (Raft payloads wrapped too)
//   phase2-aes-masked    — Phase 2 with OPENSSL_ia32cap="~0x200000200000000"
//                          for the node processes (AES-NI and PCLMULQDQ masked)
//   phase2-wasm          — Phase 2 with --crypto-backend=wasm (software AES-GCM)
// and, when `redis-server` is on PATH, a real Redis (appendonly yes,
// appendfsync always and everysec) as a reference of a different system.
//
// All clusters run at once, idle but for heartbeats while another is
// measured. Per workload (SET/GET 50/50 with 1 KiB values — half the
// connections write, half read, see bench/lib/load.ts; SETs only with 1 KiB;
// 50/50 with 100 B) each cluster's keyspace is filled with the same
// values, then short rounds alternate over the clusters, the order rotated
// each round, so the machine's drift and a round's position fall on all of
// them alike. Reported per cluster and workload: ops/s (median round),
// p50/p99/p99.9 per command (merged histogram of the rounds), node CPU per
// write (utime+stime of the cluster's three processes over its rounds, from
// /proc, ÷ SETs), and the ratios to cleartext: throughput as the median of
// per-round ratios, latency as the ratio of merged percentiles.
//
//   npm run bench -- e2e [--quick] [--workloads=mix-1k,set-1k,mix-100b] [--rounds=N] [--round-ms=MS]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EncryptedCluster } from '../test/support/encrypted-cluster.js';
import { freePorts } from '../test/support/ports.js';
import { LatencyHistogram } from './lib/histogram.js';
import { fill, runLoad, valuePool, type LoadSpec } from './lib/load.js';
import { median } from './lib/measure.js';
import { processesCpuSeconds } from './lib/proc.js';
import { writeResults } from './lib/results.js';

const MASK_AES_NI = '~0x200000200000000';
const CONNECTIONS = 8;
const PIPELINE = 16;

interface SubjectSpec {
  name: string;
  /** 0 cleartext, 1 storage envelope, 2 storage + raft envelope. */
  phase: 0 | 1 | 2;
  env?: Record<string, string>;
  extraArgs?: string[];
  what: string;
}

const SUBJECTS: SubjectSpec[] = [
  { name: 'cleartext', phase: 0, what: 'encryption capable, never enabled' },
  { name: 'phase1', phase: 1, what: 'storage envelope (values sealed)' },
  { name: 'phase2', phase: 2, what: 'storage + raft envelope' },
  { name: 'phase2-aes-masked', phase: 2, env: { OPENSSL_ia32cap: MASK_AES_NI }, what: `Phase 2, node processes with OPENSSL_ia32cap="${MASK_AES_NI}"` },
  { name: 'phase2-wasm', phase: 2, extraArgs: ['--crypto-backend', 'wasm'], what: 'Phase 2, --crypto-backend=wasm' },
];

interface Workload {
  name: string;
  setFraction: number;
  valueBytes: number;
}

const WORKLOADS: Workload[] = [
  { name: 'mix-1k', setFraction: 0.5, valueBytes: 1024 },
  { name: 'set-1k', setFraction: 1, valueBytes: 1024 },
  { name: 'mix-100b', setFraction: 0.5, valueBytes: 100 },
];

/** Something the load generator can aim at: its RESP ports and the pids whose CPU is counted. */
interface Target {
  name: string;
  what: string;
  ports: number[];
  pids(): number[];
  close(): Promise<void>;
  /** Facts checked at start (e.g. which AES path the nodes' OpenSSL reported). */
  facts: Record<string, unknown>;
}

async function startSealkv(spec: SubjectSpec): Promise<Target> {
  const cluster = await EncryptedCluster.start({ voters: 3, ...(spec.env ? { env: spec.env } : {}), ...(spec.extraArgs ? { extraArgs: spec.extraArgs } : {}) });
  try {
    const verbs = ['enable-storage-envelope', 'enable-raft-envelope'].slice(0, spec.phase);
    for (const verb of verbs) {
      const result = await cluster.encryption(verb, await cluster.leader());
      if (result.code !== 0) throw new Error(`${spec.name}: sealkv encryption ${verb} failed (exit ${result.code}): ${result.stderr.trim()}`);
    }
    await cluster.settle();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  // Each node logs OpenSSL's AES path when it starts with encryption enabled.
  const hardwareAes = cluster.members.map((m) => /"hardware_aes":(true|false)/.exec(m.process.output)?.[1] ?? 'unknown');
  return {
    name: spec.name,
    what: spec.what,
    ports: cluster.members.map((m) => m.resp),
    pids: () => cluster.members.map((m) => m.process.pid).filter((p): p is number => p !== undefined),
    close: () => cluster.destroy(),
    facts: { hardwareAesPerNode: hardwareAes, env: spec.env ?? {}, extraArgs: spec.extraArgs ?? [] },
  };
}

/** `redis-server` on PATH, or why not. */
function redisServer(): { path: string; version: string } | { reason: string } {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  if (which.status !== 0 || found === '') {
    return { reason: 'redis-server is not installed on this machine (Debian package redis-server): the Redis reference run was skipped' };
  }
  const version = spawnSync(found, ['--version'], { encoding: 'utf8' }).stdout.trim();
  return { path: found, version };
}

async function startRedis(binary: string, fsync: 'always' | 'everysec'): Promise<Target> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-redis-'));
  const [port] = await freePorts(1);
  const child: ChildProcess = spawn(binary, ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', fsync], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${output}`));
    });
  });
  return {
    name: `redis-aof-${fsync}`,
    what: `Redis (a different system): appendonly yes, appendfsync ${fsync}, one process`,
    ports: [port!],
    pids: () => (child.pid === undefined ? [] : [child.pid]),
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
    facts: { reference: true },
  };
}

interface Cell {
  opsPerSec: number[];
  setsPerSec: number[];
  getsPerSec: number[];
  sets: number;
  ops: number;
  cpuSeconds: number | null;
  histogram: LatencyHistogram;
  errors: number;
  firstError: string | undefined;
}

const round3 = (x: number): number => Number(x.toFixed(3));

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const option = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  // Many short rounds: alternation cancels drift better than a few long ones.
  const rounds = Number(option('rounds') ?? (quick ? 2 : 9));
  const roundMs = Number(option('round-ms') ?? (quick ? 800 : 1_500));
  const keyspace = quick ? 2_000 : 10_000;
  const named = option('workloads')?.split(',');
  // --quick: the write workload only (the target's), a smoke run.
  const workloads = WORKLOADS.filter((w) => (named !== undefined ? named.includes(w.name) : !quick || w.name === 'set-1k'));
  if (workloads.length === 0) throw new Error(`e2e: no workload among ${WORKLOADS.map((w) => w.name).join(', ')}`);
  const redis = redisServer();
  if ('reason' in redis) console.log(`e2e: ${redis.reason}`);

  const targets: Target[] = [];
  const t0 = performance.now();
  try {
    // Two clusters at a time: 15 processes starting at once on a small machine may time out.
    for (let i = 0; i < SUBJECTS.length; i += 2) {
      const started = await Promise.allSettled(SUBJECTS.slice(i, i + 2).map(startSealkv));
      for (const s of started) if (s.status === 'fulfilled') targets.push(s.value);
      for (const s of started) if (s.status === 'rejected') throw s.reason;
    }
    if ('path' in redis) for (const fsync of ['always', 'everysec'] as const) targets.push(await startRedis(redis.path, fsync));
    console.log(`e2e: ${targets.length} targets up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const results: Record<string, unknown>[] = [];
    for (const workload of workloads) {
      const spec: LoadSpec = { setFraction: workload.setFraction, valueBytes: workload.valueBytes, keyspace, connections: CONNECTIONS, pipeline: PIPELINE };
      const values = valuePool(workload.valueBytes);
      for (const target of targets) await fill(target.ports, spec, values);
      // A short warm-up per target (JIT, connections), not counted.
      for (const target of targets) await runLoad(target.ports, spec, values, Math.min(roundMs, 500));
      const cells = new Map<string, Cell>(targets.map((t) => [t.name, { opsPerSec: [], setsPerSec: [], getsPerSec: [], sets: 0, ops: 0, cpuSeconds: 0, histogram: new LatencyHistogram(), errors: 0, firstError: undefined }]));
      const perRoundRatio = new Map<string, number[]>(targets.map((t) => [t.name, []]));
      for (let r = 0; r < rounds; r++) {
        const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
        const roundOps = new Map<string, number>();
        for (const target of order) {
          const cell = cells.get(target.name)!;
          const cpu0 = processesCpuSeconds(target.pids());
          const load = await runLoad(target.ports, spec, values, roundMs);
          const cpu1 = processesCpuSeconds(target.pids());
          const ops = load.sets + load.gets;
          cell.opsPerSec.push(ops / load.seconds);
          cell.setsPerSec.push(load.sets / load.seconds);
          cell.getsPerSec.push(load.gets / load.seconds);
          cell.sets += load.sets;
          cell.ops += ops;
          cell.cpuSeconds = cpu0 === null || cpu1 === null || cell.cpuSeconds === null ? null : cell.cpuSeconds + (cpu1 - cpu0);
          cell.histogram.merge(load.histogram);
          cell.errors += load.errors;
          cell.firstError ??= load.firstError;
          roundOps.set(target.name, ops / load.seconds);
        }
        const base = roundOps.get('cleartext')!;
        for (const [name, ops] of roundOps) perRoundRatio.get(name)!.push(ops / base);
      }
      const baseCell = cells.get('cleartext')!;
      const pct = (cell: Cell, p: number): number => cell.histogram.percentile(p) / 1000;
      for (const target of targets) {
        const cell = cells.get(target.name)!;
        const cpuPerWrite = cell.cpuSeconds === null || cell.sets === 0 ? null : (cell.cpuSeconds / cell.sets) * 1e6;
        const baseCpu = baseCell.cpuSeconds === null || baseCell.sets === 0 ? null : (baseCell.cpuSeconds / baseCell.sets) * 1e6;
        results.push({
          workload: workload.name,
          target: target.name,
          reference: target.facts.reference === true,
          opsPerSec: Math.round(median(cell.opsPerSec)),
          setsPerSec: Math.round(median(cell.setsPerSec)),
          getsPerSec: Math.round(median(cell.getsPerSec)),
          p50ms: round3(pct(cell, 50)),
          p99ms: round3(pct(cell, 99)),
          p999ms: round3(pct(cell, 99.9)),
          cpuUsPerWrite: cpuPerWrite === null ? null : Math.round(cpuPerWrite),
          errors: cell.errors,
          ...(cell.firstError === undefined ? {} : { firstError: cell.firstError }),
          throughputVsCleartext: round3(median(perRoundRatio.get(target.name)!)),
          p50VsCleartext: round3(pct(cell, 50) / pct(baseCell, 50)),
          p99VsCleartext: round3(pct(cell, 99) / pct(baseCell, 99)),
          p999VsCleartext: round3(pct(cell, 99.9) / pct(baseCell, 99.9)),
          cpuPerWriteVsCleartext: cpuPerWrite === null || baseCpu === null ? null : round3(cpuPerWrite / baseCpu),
          roundRatios: perRoundRatio.get(target.name)!.map(round3),
        });
      }
      console.table(results.filter((r) => r.workload === workload.name).map(({ roundRatios: _, firstError: __, reference: ___, ...row }) => row));
    }
    const errors = results.reduce((n, r) => n + (r.errors as number), 0);
    if (errors > 0) console.log(`e2e: ${errors} commands answered with an error (see firstError in the results)`);
    const target = results.find((r) => r.workload === 'set-1k' && r.target === 'phase2') ?? results.find((r) => r.workload === 'mix-1k' && r.target === 'phase2');
    const file = writeResults('e2e', {
      quick,
      nodes: 3,
      connections: CONNECTIONS,
      pipeline: PIPELINE,
      keyspace,
      rounds,
      roundMs,
      method:
        'all targets up at once; per workload, rounds alternate over the targets in rotated order; throughput ratio = median of per-round ratios to cleartext; latency = merged per-command histogram of the rounds (log buckets, <0.8% error); CPU per write = node processes utime+stime over their rounds / SETs',
      subjects: targets.map((t) => ({ name: t.name, what: t.what, ...t.facts })),
      redis: 'path' in redis ? { available: true, version: redis.version, note: 'a different system (single process, no replication), shown as a familiar yardstick only' } : { available: false, reason: redis.reason },
      rows: results,
      targets: target === undefined ? {} : {
        workload: target.workload,
        phase2ThroughputVsCleartext: target.throughputVsCleartext,
        phase2P99VsCleartext: target.p99VsCleartext,
        goal: 'throughput >= 0.90, p99 <= 1.10 (1 KiB, AES-NI)',
      },
    });
    console.log(`results: ${file}`);
  } finally {
    await Promise.all(targets.map((t) => t.close().catch(() => undefined)));
  }
}
