// Rollout benchmark (issue 12 closing note, SPEC §14 "end to end"): the cost
// of each encryption phase on write throughput, in one 3-node cluster of real
// `sealkv start` processes (KEK in the loopback KMS-protocol server), in the
// same run: the same write load against the cleartext cluster, then after
// `encryption enable-storage-envelope` (Phase 1: values sealed at apply),
// then after `enable-raft-envelope` (Phase 2: Raft payloads wrapped too).
//
// Load: a fixed number of SETs of 1 KiB random (incompressible) values,
// pipelined in windows over several connections spread over the three nodes
// (followers forward to the leader); a closed loop per connection. Reported
// per phase: ops/s, p50/p99 of a window's round trip, and the ratios
// Phase 1 / cleartext and Phase 2 / cleartext. Each phase runs ROUNDS rounds
// and keeps the median round; the phases run in a fixed order, so a later
// phase also pays for a larger store (noted in the results).
//
// npm run bench -- rollout [--quick]

import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import { EncryptedCluster } from '../test/support/encrypted-cluster.js';
import { machineInfo } from './lib/machine.js';
import { writeResults } from './lib/results.js';

const VALUE_BYTES = 1024;
const CONNECTIONS = 6;
const WINDOW = 16;
const ROUNDS = 3;

interface Round {
  opsPerSec: number;
  p50ms: number;
  p99ms: number;
}

interface PhaseResult extends Round {
  phase: string;
  ops: number;
  rounds: Round[];
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `ops` SETs of fresh keys over `clients`, WINDOW at a time per connection. */
async function writeRound(clients: Redis[], ops: number, tag: string): Promise<Round> {
  const perConnection = Math.ceil(ops / clients.length);
  const latencies: number[] = [];
  const start = performance.now();
  await Promise.all(
    clients.map(async (client, c) => {
      for (let done = 0; done < perConnection; done += WINDOW) {
        const n = Math.min(WINDOW, perConnection - done);
        const pipeline = client.pipeline();
        for (let i = 0; i < n; i++) pipeline.set(`${tag}:${c}:${done + i}`, crypto.randomBytes(VALUE_BYTES));
        const t0 = performance.now();
        const results = (await pipeline.exec()) ?? [];
        latencies.push(performance.now() - t0);
        const failed = results.find(([err]) => err !== null);
        if (failed !== undefined) throw new Error(`SET failed: ${String(failed[0])}`);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    opsPerSec: Math.round((perConnection * clients.length) / seconds),
    p50ms: Number(percentile(latencies, 50).toFixed(2)),
    p99ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

async function measurePhase(clients: Redis[], phase: string, ops: number): Promise<PhaseResult> {
  // A short warm-up (connections, JIT, the leader clock), not counted.
  await writeRound(clients, Math.min(ops, 600), `${phase}:warm`);
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await writeRound(clients, ops, `${phase}:r${r}`));
  const median = [...rounds].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(ROUNDS / 2)]!;
  return { phase, ops, ...median, rounds };
}

async function enable(cluster: EncryptedCluster, verb: string): Promise<void> {
  const result = await cluster.encryption(verb, await cluster.leader());
  if (result.code !== 0) throw new Error(`sealkv encryption ${verb} failed (exit ${result.code}): ${result.stderr.trim()}`);
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const ops = quick ? 1_200 : 12_000;
  const cluster = await EncryptedCluster.start({ voters: 3 });
  const clients: Redis[] = [];
  try {
    await cluster.leader();
    for (let c = 0; c < CONNECTIONS; c++) {
      const client = cluster.client(cluster.members[c % cluster.members.length]!).duplicate();
      client.on('error', () => undefined);
      clients.push(client);
    }
    const results: PhaseResult[] = [];
    results.push(await measurePhase(clients, 'cleartext', ops));
    await enable(cluster, 'enable-storage-envelope');
    results.push(await measurePhase(clients, 'phase1-storage', ops));
    await enable(cluster, 'enable-raft-envelope');
    results.push(await measurePhase(clients, 'phase2-raft', ops));

    const base = results[0]!;
    const ratio = (r: PhaseResult): number => Number((r.opsPerSec / base.opsPerSec).toFixed(3));
    const rows = results.map((r) => ({ phase: r.phase, ops: r.ops, opsPerSec: r.opsPerSec, p50ms: r.p50ms, p99ms: r.p99ms, vsCleartext: ratio(r) }));
    console.log(
      `rollout: 3 nodes, ${CONNECTIONS} connections × window ${WINDOW}, ${VALUE_BYTES} B random values, ` +
        `${ops} SETs per round, median of ${ROUNDS} rounds; CPU flags: ${machineInfo().cpuFlags.join(' ')}`,
    );
    console.table(rows);
    console.log(`Phase 1 / cleartext: ${ratio(results[1]!)}   Phase 2 / cleartext: ${ratio(results[2]!)}`);
    const file = writeResults('rollout', {
      nodes: 3,
      connections: CONNECTIONS,
      window: WINDOW,
      valueBytes: VALUE_BYTES,
      opsPerRound: ops,
      rounds: ROUNDS,
      note: 'phases run in order on one cluster: later phases also pay for a larger store',
      phases: results,
      ratios: { phase1VsCleartext: ratio(results[1]!), phase2VsCleartext: ratio(results[2]!) },
    });
    console.log(`results: ${file}`);
  } finally {
    for (const client of clients) client.disconnect();
    await cluster.destroy();
  }
}
