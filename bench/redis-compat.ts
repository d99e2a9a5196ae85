// Compatibility run with the stock Redis tool: `redis-benchmark` (Debian
// package redis-tools) against a sealkv RESP endpoint, SET/GET/INCR/MSET with
// 1 KiB values, unpipelined and pipelined; throughput and p50/p99 as the tool
// reports them, and the pipelined/unpipelined ratio from the same run.
//
//   npm run bench -- redis-compat [--quick] [--no-install] [--target host:port] [--password-file F]
//   npm run bench -- redis-compat --cluster [--quick]
//
// Without --target it starts a RESP server over the in-memory engine in a
// worker thread; with it, it measures whatever node or cluster member is
// there. --cluster starts three real `sealkv start` processes on 127.0.0.1
// and measures the leader and a follower (followers forward writes inside
// Raft, reads are linearizable), each beside the in-memory server of the same
// run, and prints the cluster/memory ratios of throughput and p99.
//
// When redis-benchmark is missing it installs redis-tools with apt-get if it
// runs as root without a terminal (CI) and was not given --no-install
// (`bench all` gives it); otherwise it says why it skips.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import { nodeClient, startCluster, type Cluster } from '../test/support/node-process.js';
import { writeResults } from './lib/results.js';

const run$ = promisify(execFile);
const TESTS = ['set', 'get', 'incr', 'mset'];
const PIPELINES = [1, 16];

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function haveRedisBenchmark(): Promise<boolean> {
  try {
    await run$('redis-benchmark', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** redis-benchmark on PATH, installed from redis-tools when this is a root, non-interactive run. */
async function ensureRedisBenchmark(install: boolean): Promise<boolean> {
  if (await haveRedisBenchmark()) return true;
  if (!install) {
    console.log('redis-compat: redis-benchmark not found (Debian package redis-tools, not installed on this machine); skipped');
    return false;
  }
  if (process.getuid?.() !== 0 || process.stdin.isTTY === true) {
    console.log('redis-compat: redis-benchmark not found and not running as root without a terminal; skipped (install: apt-get install redis-tools)');
    return false;
  }
  console.log('redis-compat: redis-benchmark not found; installing redis-tools');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await run$('apt-get', ['install', '-y', '--no-install-recommends', 'redis-tools'], { env }).catch(async () => {
      await run$('apt-get', ['update'], { env });
      await run$('apt-get', ['install', '-y', '--no-install-recommends', 'redis-tools'], { env });
    });
  } catch (err) {
    console.log(`redis-compat: installing redis-tools failed (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); skipped`);
    return false;
  }
  return haveRedisBenchmark();
}

interface Row {
  target: string;
  test: string;
  pipeline: number;
  rps: number;
  p50ms: number;
  p99ms: number;
}

/** Parses redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms". */
function parseCsv(text: string, target: string, pipeline: number): Row[] {
  const lines = text.trim().split('\n').filter((l) => l.startsWith('"'));
  const header = lines.shift()?.split(',').map((h) => h.replaceAll('"', '')) ?? [];
  const col = (name: string): number => header.indexOf(name);
  return lines.map((line) => {
    const cells = line.split(',').map((c) => c.replaceAll('"', ''));
    return {
      target,
      test: cells[col('test')]!,
      pipeline,
      rps: Number(cells[col('rps')]),
      p50ms: Number(cells[col('p50_latency_ms')]),
      p99ms: Number(cells[col('p99_latency_ms')]),
    };
  });
}

async function startMemoryServer(): Promise<{ target: string; close: () => Promise<void> }> {
  const worker = new Worker(new URL('./lib/resp-server-worker.js', import.meta.url));
  const { port } = await new Promise<{ port: number }>((resolve, reject) => worker.once('message', resolve).once('error', reject));
  return {
    target: `127.0.0.1:${port}`,
    close: async () => {
      worker.postMessage('close');
      await new Promise((resolve) => worker.once('message', resolve));
      await worker.terminate();
    },
  };
}

/** The cluster's leader and one follower, by the role INFO reports. */
async function roles(cluster: Cluster): Promise<{ leader: number; follower: number }> {
  const clients: Redis[] = cluster.resp.map(nodeClient);
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      const infos = await Promise.all(clients.map((c) => c.info('sealkv')));
      const leader = infos.findIndex((info) => /\brole:leader\b/.test(info));
      if (leader >= 0) return { leader, follower: (leader + 1) % cluster.resp.length };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error('redis-compat: the cluster elected no leader');
  } finally {
    for (const c of clients) c.disconnect();
  }
}

async function measure(label: string, target: string, quick: boolean, auth: string[]): Promise<Row[]> {
  const at = target.lastIndexOf(':');
  const base = ['-h', target.slice(0, at), '-p', target.slice(at + 1), '-c', '50', '-d', '1024', '-r', '10000', '--csv', ...auth];
  const rows: Row[] = [];
  for (const pipeline of PIPELINES) {
    const n = String((quick ? 5_000 : 50_000) * (pipeline > 1 ? 4 : 1));
    const { stdout } = await run$('redis-benchmark', [...base, '-n', n, '-P', String(pipeline), '-t', TESTS.join(',')], { maxBuffer: 1 << 20 });
    rows.push(...parseCsv(stdout, label, pipeline));
  }
  return rows;
}

/** Per test and pipeline depth: each target's throughput and p99 over the baseline target's. */
function ratiosTo(baseline: string, rows: Row[]): Record<string, string | number>[] {
  const out: Record<string, string | number>[] = [];
  for (const row of rows) {
    if (row.target === baseline) continue;
    const base = rows.find((r) => r.target === baseline && r.test === row.test && r.pipeline === row.pipeline);
    if (base === undefined) continue;
    out.push({
      target: row.target,
      test: row.test,
      pipeline: row.pipeline,
      rpsOverMemory: Number((row.rps / base.rps).toFixed(3)),
      p99OverMemory: Number((row.p99ms / base.p99ms).toFixed(2)),
    });
  }
  return out;
}

function pipelineRatios(rows: Row[]): Record<string, string | number | null>[] {
  const keys = [...new Set(rows.map((r) => `${r.target}\u0000${r.test}`))];
  return keys.map((key) => {
    const [target, test] = key.split('\u0000') as [string, string];
    const [single, piped] = PIPELINES.map((p) => rows.find((r) => r.target === target && r.test === test && r.pipeline === p));
    return { target, test, pipelinedOverUnpipelined: single && piped ? Number((piped.rps / single.rps).toFixed(2)) : null };
  });
}

export async function run(args: string[]): Promise<void> {
  if (!(await ensureRedisBenchmark(!args.includes('--no-install')))) return;
  const quick = args.includes('--quick');
  const passwordFile = option(args, '--password-file');
  const auth = passwordFile === undefined ? [] : ['--no-auth-warning', '-a', fs.readFileSync(passwordFile, 'utf8').trim()];
  const target = option(args, '--target');
  const rows: Row[] = [];
  let summary: Record<string, unknown>;
  if (target !== undefined) {
    rows.push(...(await measure(target, target, quick, auth)));
    summary = { target };
  } else {
    const memory = await startMemoryServer();
    try {
      rows.push(...(await measure('memory', memory.target, quick, [])));
    } finally {
      await memory.close();
    }
    summary = { baseline: 'memory engine (worker thread)' };
    if (args.includes('--cluster')) {
      const cluster = await startCluster(3);
      try {
        const { leader, follower } = await roles(cluster);
        rows.push(...(await measure('cluster-leader', `127.0.0.1:${cluster.resp[leader]}`, quick, [])));
        rows.push(...(await measure('cluster-follower', `127.0.0.1:${cluster.resp[follower]}`, quick, [])));
      } finally {
        await cluster.destroy();
      }
      summary = { ...summary, cluster: '3 sealkv processes on 127.0.0.1', vsMemory: ratiosTo('memory', rows) };
    }
  }
  const pipelined = pipelineRatios(rows);
  console.table(rows);
  console.table(pipelined);
  if ('vsMemory' in summary) console.table(summary.vsMemory);
  console.log(`results: ${writeResults('redis-compat', { ...summary, rows, ratios: pipelined })}`);
}
