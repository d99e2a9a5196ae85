// Rollout benchmark (issue 12 closing note, SPEC §14 "end to end"): the cost
// of each encryption phase on write throughput, in a 3-node cluster of real
// `sealkv start` processes (KEK in the loopback KMS-protocol server), in the
// same run: the same write load against the cleartext cluster, then after
// `encryption enable-storage-envelope` (Phase 1: values sealed at apply),
// then after `enable-raft-envelope` (Phase 2: Raft payloads wrapped too).
//
// Load: a fixed number of SETs of 1 KiB random (incompressible) values,
// pipelined in windows over several connections spread over the three nodes
// (followers forward to the leader); a closed loop per connection. Reported
// per phase: ops/s, p50/p99 of a window's round trip.
//
// The phases can only run in order (the rollout is one-way), so time-varying
// noise on a shared machine and the store's growth would bias a plain
// before/after ratio. A second, control cluster that stays cleartext takes
// the same load in alternation with the measured one (control round, rollout
// round, several times per phase): a phase's cost is the median of
// rollout/control over its rounds, divided by that median in the cleartext
// phase. The plain before/after ratio is reported too.
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

interface Round {
  opsPerSec: number;
  p50ms: number;
  p99ms: number;
}

interface PhaseResult extends Round {
  phase: string;
  ops: number;
  rounds: Round[];
  /** Median ops/s of the control (cleartext) cluster in the same phase. */
  controlOpsPerSec: number;
  /** Median over rounds of rollout ops/s / control ops/s. */
  vsControl: number;
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

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** `roundCount` alternating rounds: control, then rollout cluster. */
async function measurePhase(control: Redis[], subject: Redis[], phase: string, ops: number, roundCount: number): Promise<PhaseResult> {
  // A short warm-up of both (connections, JIT, caches), not counted.
  await writeRound(control, Math.min(ops, 600), `${phase}:warm`);
  await writeRound(subject, Math.min(ops, 600), `${phase}:warm`);
  const rounds: Round[] = [];
  const controls: Round[] = [];
  for (let r = 0; r < roundCount; r++) {
    controls.push(await writeRound(control, ops, `${phase}:r${r}`));
    rounds.push(await writeRound(subject, ops, `${phase}:r${r}`));
  }
  const mid = [...rounds].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(roundCount / 2)]!;
  const vsControl = median(rounds.map((r, i) => r.opsPerSec / controls[i]!.opsPerSec));
  return { phase, ops, ...mid, rounds, controlOpsPerSec: median(controls.map((c) => c.opsPerSec)), vsControl };
}

async function enable(cluster: EncryptedCluster, verb: string): Promise<void> {
  const result = await cluster.encryption(verb, await cluster.leader());
  if (result.code !== 0) throw new Error(`sealkv encryption ${verb} failed (exit ${result.code}): ${result.stderr.trim()}`);
}

async function connect(cluster: EncryptedCluster): Promise<Redis[]> {
  await cluster.leader();
  return Array.from({ length: CONNECTIONS }, (_, c) => {
    const client = cluster.client(cluster.members[c % cluster.members.length]!).duplicate();
    client.on('error', () => undefined);
    return client;
  });
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  // Short rounds, many of them: alternation averages out the machine's noise.
  const ops = quick ? 800 : 3_000;
  const rounds = quick ? 5 : 7;
  const clusters: EncryptedCluster[] = [];
  const clients: Redis[] = [];
  try {
    const subject = await EncryptedCluster.start({ voters: 3 });
    clusters.push(subject);
    const control = await EncryptedCluster.start({ voters: 3 });
    clusters.push(control);
    const subjectClients = await connect(subject);
    const controlClients = await connect(control);
    clients.push(...subjectClients, ...controlClients);

    const results: PhaseResult[] = [];
    results.push(await measurePhase(controlClients, subjectClients, 'cleartext', ops, rounds));
    await enable(subject, 'enable-storage-envelope');
    results.push(await measurePhase(controlClients, subjectClients, 'phase1-storage', ops, rounds));
    await enable(subject, 'enable-raft-envelope');
    results.push(await measurePhase(controlClients, subjectClients, 'phase2-raft', ops, rounds));

    const base = results[0]!;
    const cost = (r: PhaseResult): number => Number((r.vsControl / base.vsControl).toFixed(3));
    const plain = (r: PhaseResult): number => Number((r.opsPerSec / base.opsPerSec).toFixed(3));
    const rows = results.map((r) => ({
      phase: r.phase,
      opsPerSec: r.opsPerSec,
      p50ms: r.p50ms,
      p99ms: r.p99ms,
      controlOpsPerSec: r.controlOpsPerSec,
      vsControl: Number(r.vsControl.toFixed(3)),
      vsCleartext: cost(r),
      plainVsCleartext: plain(r),
    }));
    console.log(
      `rollout: 3 nodes, ${CONNECTIONS} connections × window ${WINDOW}, ${VALUE_BYTES} B random values, ` +
        `${ops} SETs per round, ${rounds} alternating rounds per phase against a cleartext control cluster; CPU flags: ${machineInfo().cpuFlags.join(' ')}`,
    );
    console.table(rows);
    console.log(
      `Phase 1 / cleartext: ${cost(results[1]!)}   Phase 2 / cleartext: ${cost(results[2]!)}   ` +
        `(plain before/after: ${plain(results[1]!)}, ${plain(results[2]!)})`,
    );
    const file = writeResults('rollout', {
      nodes: 3,
      connections: CONNECTIONS,
      window: WINDOW,
      valueBytes: VALUE_BYTES,
      opsPerRound: ops,
      rounds,
      method: 'per phase, median over rounds of rollout/control ops/s, divided by that median in the cleartext phase',
      phases: results,
      ratios: { phase1VsCleartext: cost(results[1]!), phase2VsCleartext: cost(results[2]!), plainPhase1: plain(results[1]!), plainPhase2: plain(results[2]!) },
    });
    console.log(`results: ${file}`);
  } finally {
    for (const client of clients) client.disconnect();
    await Promise.all(clusters.map((c) => c.destroy()));
  }
}
