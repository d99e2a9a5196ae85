// Raft benchmark: a 3-node cluster in this process over real TCP on
// 127.0.0.1 with fsynced segment logs. For each payload size (100 B, 1 KiB)
// and batch size (1..256 proposals in flight, closed loop: propose a batch,
// wait for every result, repeat) it reports proposals/s and p50/p99 commit
// latency (propose → result on the leader), and the throughput of batch 256
// as a ratio to batch 1 measured in the same run.
//
// npm run bench -- raft [--quick]

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RaftNode, type ApplyEntry, type StateMachine } from '../src/raft/index.js';
import { writeResults } from './lib/results.js';

const PAYLOADS = [100, 1024];
const BATCHES = [1, 4, 16, 64, 256];

/** Counts what it applies; keeps nothing else (the benchmark measures Raft). */
class CountingStateMachine implements StateMachine {
  private applied = 0;
  appliedIndex(): number {
    return this.applied;
  }
  apply(entries: ApplyEntry[]): unknown[] {
    this.applied = entries[entries.length - 1]!.index;
    return entries.map((e) => e.index);
  }
  async *snapshot(): AsyncIterable<Uint8Array> {
    yield Buffer.from(String(this.applied));
  }
  async restore(data: AsyncIterable<Uint8Array>): Promise<void> {
    let s = '';
    for await (const c of data) s += Buffer.from(c).toString();
    this.applied = Number(s);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Free loopback ports, so each node knows its peers' addresses at start. */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => net.createServer());
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Baseline: p50/p99 of one small append + fdatasync on the same disk (a commit needs at least one). */
async function fsyncBaseline(dir: string, seconds: number): Promise<{ p50ms: number; p99ms: number }> {
  const h = await fs.promises.open(path.join(dir, 'fsync-baseline'), 'w');
  const lat: number[] = [];
  const buf = Buffer.alloc(128, 1);
  const end = performance.now() + seconds * 1000;
  let pos = 0;
  while (performance.now() < end) {
    const t0 = performance.now();
    await h.write(buf, 0, buf.length, pos);
    await h.datasync();
    pos += buf.length;
    lat.push(performance.now() - t0);
  }
  await h.close();
  lat.sort((a, b) => a - b);
  return { p50ms: Number(percentile(lat, 50).toFixed(2)), p99ms: Number(percentile(lat, 99).toFixed(2)) };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const seconds = quick ? 1 : 3;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-raft-'));
  const ports = await freePorts(3);
  const secret = crypto.randomBytes(32);
  const peers = Object.fromEntries(ports.map((p, i) => [i + 1, `127.0.0.1:${p}`]));
  const nodes: RaftNode[] = [];
  for (let id = 1; id <= 3; id++) {
    nodes.push(
      await RaftNode.start({
        id,
        dir: path.join(root, `n${id}`),
        secret,
        port: ports[id - 1],
        peers,
        bootstrap: { voters: [1, 2, 3], learners: [] },
        stateMachine: new CountingStateMachine(),
        tickMs: 20,
        electionTick: 10,
        heartbeatTick: 2,
        proposalTimeoutMs: 30_000,
        seed: id,
      }),
    );
  }
  try {
    let leader: RaftNode | undefined;
    const deadline = Date.now() + 20_000;
    while ((leader = nodes.find((n) => n.isLeader())) === undefined) {
      if (Date.now() > deadline) throw new Error('no leader elected');
      await new Promise((r) => setTimeout(r, 20));
    }
    const rows: Record<string, number | string>[] = [];
    for (const size of PAYLOADS) {
      const payload = crypto.randomBytes(size);
      for (const batch of BATCHES) {
        const latencies: number[] = [];
        const end = performance.now() + seconds * 1000;
        const start = performance.now();
        let done = 0;
        while (performance.now() < end) {
          await Promise.all(
            Array.from({ length: batch }, async () => {
              const t0 = performance.now();
              await leader.propose(payload);
              latencies.push(performance.now() - t0);
            }),
          );
          done += batch;
        }
        const elapsed = (performance.now() - start) / 1000;
        latencies.sort((a, b) => a - b);
        rows.push({
          payload: size,
          batch,
          proposalsPerSec: Math.round(done / elapsed),
          p50ms: Number(percentile(latencies, 50).toFixed(2)),
          p99ms: Number(percentile(latencies, 99).toFixed(2)),
        });
      }
      const one = rows.find((r) => r.payload === size && r.batch === 1)!;
      const top = rows.find((r) => r.payload === size && r.batch === 256)!;
      top.ratioVsBatch1 = Number(((top.proposalsPerSec as number) / (one.proposalsPerSec as number)).toFixed(1));
    }
    const baseline = await fsyncBaseline(root, seconds);
    for (const r of rows) r.p50VsFsyncP50 = Number(((r.p50ms as number) / baseline.p50ms).toFixed(1));
    console.log(`fsync baseline (128 B append + fdatasync): p50 ${baseline.p50ms} ms, p99 ${baseline.p99ms} ms`);
    console.table(rows);
    console.log(`results: ${writeResults('raft', { fsyncBaseline: baseline, rows })}`);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    fs.rmSync(root, { recursive: true, force: true });
  }
}
