// Compatibility run with the stock Redis tool: `redis-benchmark` (Debian
// package redis-tools) against a sealkv RESP endpoint, SET/GET/INCR/MSET with
// 1 KiB values, unpipelined and pipelined; throughput and p50/p99 as the tool
// reports them, and the pipelined/unpipelined ratio from the same run.
//
//   npm run bench -- redis-compat [--quick] [--target host:port] [--password-file F]
//
// Without --target it starts a RESP server over the in-memory engine in a
// worker thread; with it, it measures whatever node or cluster member is
// there. Skips with a message when redis-benchmark is not installed.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
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

interface Row {
  test: string;
  pipeline: number;
  rps: number;
  p50ms: number;
  p99ms: number;
}

/** Parses redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms". */
function parseCsv(text: string, pipeline: number): Row[] {
  const lines = text.trim().split('\n').filter((l) => l.startsWith('"'));
  const header = lines.shift()?.split(',').map((h) => h.replaceAll('"', '')) ?? [];
  const col = (name: string): number => header.indexOf(name);
  return lines.map((line) => {
    const cells = line.split(',').map((c) => c.replaceAll('"', ''));
    return {
      test: cells[col('test')]!,
      pipeline,
      rps: Number(cells[col('rps')]),
      p50ms: Number(cells[col('p50_latency_ms')]),
      p99ms: Number(cells[col('p99_latency_ms')]),
    };
  });
}

export async function run(args: string[]): Promise<void> {
  if (!(await haveRedisBenchmark())) {
    console.log('redis-compat: redis-benchmark not found (Debian: apt-get install redis-tools); skipped');
    return;
  }
  const quick = args.includes('--quick');
  const passwordFile = option(args, '--password-file');
  let target = option(args, '--target');
  let worker: Worker | null = null;
  if (target === undefined) {
    worker = new Worker(new URL('./lib/resp-server-worker.js', import.meta.url));
    const { port } = await new Promise<{ port: number }>((resolve, reject) => worker!.once('message', resolve).once('error', reject));
    target = `127.0.0.1:${port}`;
  }
  const at = target.lastIndexOf(':');
  const base = ['-h', target.slice(0, at), '-p', target.slice(at + 1), '-c', '50', '-d', '1024', '-r', '10000', '--csv'];
  if (passwordFile !== undefined) base.push('--no-auth-warning', '-a', fs.readFileSync(passwordFile, 'utf8').trim());
  try {
    const rows: Row[] = [];
    for (const pipeline of PIPELINES) {
      const n = String((quick ? 5_000 : 50_000) * (pipeline > 1 ? 4 : 1));
      const { stdout } = await run$('redis-benchmark', [...base, '-n', n, '-P', String(pipeline), '-t', TESTS.join(',')], { maxBuffer: 1 << 20 });
      rows.push(...parseCsv(stdout, pipeline));
    }
    const ratios = [...new Set(rows.map((r) => r.test))].map((test) => {
      const [single, piped] = PIPELINES.map((p) => rows.find((r) => r.test === test && r.pipeline === p));
      return { test, pipelinedOverUnpipelined: single && piped ? Number((piped.rps / single.rps).toFixed(2)) : null };
    });
    console.table(rows);
    console.table(ratios);
    console.log(`results: ${writeResults('redis-compat', { target: worker === null ? target : 'memory engine (worker)', rows, ratios })}`);
  } finally {
    if (worker !== null) {
      worker.postMessage('close');
      await new Promise((resolve) => worker!.once('message', resolve));
      await worker.terminate();
    }
  }
}
