// RESP server benchmark: SET and GET of 1 KiB values over several
// connections against a MemoryEngine (server in a worker thread), one command
// at a time versus pipelined. Reports ops/s, p50/p99 latency (the median of
// three alternating rounds per case) and the ratio pipelined / unpipelined
// measured in the same run.
//
// The load is a closed loop per connection (send a window, wait for all its
// replies, repeat), so latency is a window's round trip. tinybench measures
// one function's cost; a load over sockets needs its own loop.

import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { encodeCommand } from '../src/server/index.js';
import { medianBy } from './lib/measure.js';
import { writeResults } from './lib/results.js';

const VALUE_BYTES = 1024;
const KEYSPACE = 10_000;
const ROUNDS = 3;

const command = (...args: (string | Buffer)[]): Buffer => encodeCommand(args);

const VALUE = Buffer.alloc(VALUE_BYTES, 0x61);
const SET_REPLY_BYTES = '+OK\r\n'.length;
const GET_REPLY_BYTES = `$${VALUE_BYTES}\r\n`.length + VALUE_BYTES + 2;

interface CaseResult {
  case: string;
  op: 'SET' | 'GET';
  connections: number;
  pipeline: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One connection's closed loop: windows of `pipeline` commands until `deadline`. */
async function connectionLoop(port: number, op: 'SET' | 'GET', pipeline: number, deadline: number, offset: number, latenciesUs: number[]): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const replyBytes = op === 'SET' ? SET_REPLY_BYTES : GET_REPLY_BYTES;
  // Pre-encoded windows, cycled, so the client spends its time on the wire.
  const windows = Array.from({ length: 64 }, (_, w) =>
    Buffer.concat(
      Array.from({ length: pipeline }, (_, i) => {
        const key = `key:${(offset + w * pipeline + i) % KEYSPACE}`;
        return op === 'SET' ? command('SET', key, VALUE) : command('GET', key);
      }),
    ),
  );
  let pending = 0;
  let wake: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    pending -= d.length;
    if (pending <= 0 && wake !== null) wake();
  });
  let ops = 0;
  for (let w = 0; Date.now() < deadline; w++) {
    pending += replyBytes * pipeline;
    const start = process.hrtime.bigint();
    const done = new Promise<void>((resolve) => (wake = resolve));
    socket.write(windows[w % windows.length]!);
    await done;
    wake = null;
    latenciesUs.push(Number(process.hrtime.bigint() - start) / 1000);
    ops += pipeline;
  }
  socket.destroy();
  return ops;
}

/** Writes every key of the keyspace once, so every GET finds its 1 KiB value. */
async function fill(port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let pending = KEYSPACE * SET_REPLY_BYTES;
  const done = new Promise<void>((resolve) =>
    socket.on('data', (d: Buffer) => {
      pending -= d.length;
      if (pending <= 0) resolve();
    }),
  );
  for (let i = 0; i < KEYSPACE; i++) socket.write(command('SET', `key:${i}`, VALUE));
  await done;
  socket.destroy();
}

async function runCase(port: number, op: 'SET' | 'GET', connections: number, pipeline: number, seconds: number): Promise<CaseResult> {
  const latencies: number[] = [];
  const started = Date.now();
  const deadline = started + seconds * 1000;
  const counts = await Promise.all(Array.from({ length: connections }, (_, c) => connectionLoop(port, op, pipeline, deadline, c * 997, latencies)));
  const elapsed = (Date.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const ops = counts.reduce((a, b) => a + b, 0);
  return {
    case: `${op} ${connections} conn × pipeline ${pipeline}`,
    op,
    connections,
    pipeline,
    opsPerSec: Math.round(ops / elapsed),
    p50us: Math.round(percentile(latencies, 50)),
    p99us: Math.round(percentile(latencies, 99)),
  };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const seconds = quick ? 1.5 : 6;
  const connections = 4;
  const pipelined = 32;
  const worker = new Worker(new URL('./lib/resp-server-worker.js', import.meta.url));
  const { port } = await new Promise<{ port: number }>((resolve, reject) => worker.once('message', resolve).once('error', reject));
  try {
    await fill(port);
    // Cases alternate over several short rounds and each keeps its median
    // round, so a burst of load from elsewhere skews one round, not a ratio.
    const cases = (['SET', 'GET'] as const).flatMap((op) => [1, pipelined].map((pipeline) => ({ op, pipeline })));
    const rounds: CaseResult[][] = cases.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, { op, pipeline }] of cases.entries()) rounds[i]!.push(await runCase(port, op, connections, pipeline, seconds / ROUNDS));
    }
    const rows = rounds.map((results) => medianBy(results, (r) => r.opsPerSec));
    const ratios = (['SET', 'GET'] as const).map((op) => {
      const [single, piped] = rows.filter((r) => r.op === op);
      return { op, pipelinedOverUnpipelined: Number((piped!.opsPerSec / single!.opsPerSec).toFixed(2)) };
    });
    console.table(rows);
    console.table(ratios);
    console.log(`results: ${writeResults('resp', { valueBytes: VALUE_BYTES, keyspace: KEYSPACE, secondsPerCase: seconds, rounds: ROUNDS, rows, ratios })}`);
  } finally {
    worker.postMessage('close');
    await new Promise((resolve) => worker.once('message', resolve));
    await worker.terminate();
  }
}
