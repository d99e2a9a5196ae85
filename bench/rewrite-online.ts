// Online rewrite benchmark (issue 8 target: client p99 with an online rewrite
// at --rate within 2x of no rewrite): a 3-node cluster of real `sealkv
// start` processes (KEK in the loopback KMS-protocol server) after Phase 1,
// loaded with values. In the same run, cycles of: client latency in rounds
// without a sweep, then a storage rotation and rounds while `encryption
// rewrite --key-id=<old> --rate=R` re-seals every loaded value on every
// member. Alternating the two spreads the machine's own noise over both.
//
// Load: closed loops over several connections spread over the three nodes,
// one request at a time, half GETs of loaded keys and half SETs of fresh
// 1 KiB values. Reported: p50/p99 per round; the figure is the median p99 of
// the rounds during the sweep over the median p99 of the rounds without.
//
// npm run bench -- rewrite-online [--quick] [--rate=MiB/s]

import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import { EncryptedCluster } from '../test/support/encrypted-cluster.js';
import { machineInfo } from './lib/machine.js';
import { median, percentile } from './lib/measure.js';
import { writeResults } from './lib/results.js';

const VALUE_BYTES = 1024;
const CONNECTIONS = 6;
const ROUND_MS = 1_000;

interface Round {
  sweeping: boolean;
  ops: number;
  p50ms: number;
  p99ms: number;
}

/** One round of ROUND_MS: every connection a closed loop of GET (a loaded key) / SET (a fresh key). */
async function round(clients: Redis[], loaded: number, tag: string, sweeping: boolean): Promise<Round> {
  const latencies: number[] = [];
  const end = performance.now() + ROUND_MS;
  await Promise.all(
    clients.map(async (client, c) => {
      for (let i = 0; performance.now() < end; i++) {
        const t0 = performance.now();
        if (i % 2 === 0) await client.get(`load:${crypto.randomInt(loaded)}`);
        else await client.set(`${tag}:${c}:${i}`, crypto.randomBytes(VALUE_BYTES));
        latencies.push(performance.now() - t0);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { sweeping, ops: latencies.length, p50ms: Number(percentile(latencies, 50).toFixed(2)), p99ms: Number(percentile(latencies, 99).toFixed(2)) };
}

async function op(cluster: EncryptedCluster, verb: string, extra: string[] = []): Promise<string> {
  const result = await cluster.encryption(verb, await cluster.leader(), true, extra);
  if (result.code !== 0) throw new Error(`sealkv encryption ${verb} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** Whether any member's sweep of `target` is still running (or waiting). */
async function sweeping(cluster: EncryptedCluster, target: string): Promise<boolean> {
  const status = (await cluster.adminGet(await cluster.leader(), '/encryption/rewrite/status')) as { nodes?: Record<string, { sweeps?: { target: string; phase: string }[] }> };
  return Object.values(status.nodes ?? {}).some((n) => n.sweeps?.some((s) => s.target === target && (s.phase === 'running' || s.phase === 'waiting')) ?? true);
}

export async function run(args: string[]): Promise<void> {
  const rateArg = args.find((a) => a.startsWith('--rate='));
  const quick = args.includes('--quick');
  // About 8 s of sweep by default: several rounds fall inside it.
  const rate = rateArg === undefined ? (quick ? 1 : 2) : Number(rateArg.slice('--rate='.length));
  if (!(rate > 0)) throw new Error(`--rate must be a positive number of MiB/s, not ${rateArg}`);
  const loaded = quick ? 4_000 : 20_000;
  const cycles = quick ? 1 : 5;
  let cluster: EncryptedCluster | undefined;
  const clients: Redis[] = [];
  try {
    cluster = await EncryptedCluster.start({ voters: 3 });
    const c = cluster;
    await op(c, 'enable-storage-envelope');
    for (let m = 0; m < c.members.length; m++) {
      const client = c.client(c.members[m]!).duplicate();
      client.on('error', () => undefined);
      clients.push(client, client.duplicate());
    }
    for (let i = 0; i < loaded; i += 500) {
      const pipeline = clients[0]!.pipeline();
      for (let k = i; k < Math.min(loaded, i + 500); k++) pipeline.set(`load:${k}`, crypto.randomBytes(VALUE_BYTES));
      await pipeline.exec();
    }
    const rounds: Round[] = [];
    const sweepSeconds: number[] = [];
    await round(clients, loaded, 'warm', false);
    // Cycles of quiet rounds then a sweep: a rotation, and the rewrite of the
    // DEK it replaced (every loaded value), with rounds while any member sweeps.
    for (let cycle = 0; cycle < cycles; cycle++) {
      for (let r = 0; r < 2; r++) rounds.push(await round(clients, loaded, `quiet${cycle}-${r}`, false));
      const status = JSON.parse(await op(c, 'status')) as { active: { storage: number } };
      const old = String(status.active.storage);
      await op(c, 'rotate-dek', ['--purpose', 'storage']);
      await op(c, 'rewrite', ['--key-id', old, '--rate', String(rate), '--no-wait']);
      const sweepStart = performance.now();
      for (let r = 0; await sweeping(c, old); r++) rounds.push(await round(clients, loaded, `sweep${cycle}-${r}`, true));
      sweepSeconds.push(Number(((performance.now() - sweepStart) / 1000).toFixed(1)));
    }
    rounds.push(await round(clients, loaded, 'quiet-last', false));

    const during = rounds.filter((r) => r.sweeping);
    const quiet = rounds.filter((r) => !r.sweeping);
    if (during.length < cycles) throw new Error('a sweep ended before a round could be measured: load more data or lower --rate');
    const ratio = Number((median(during.map((r) => r.p99ms)) / median(quiet.map((r) => r.p99ms))).toFixed(3));
    console.log(
      `rewrite-online: 3 nodes, ${loaded} × ${VALUE_BYTES} B values re-sealed ${cycles} times at --rate ${rate} MiB/s per node (${sweepSeconds.join(', ')} s), ` +
        `${CONNECTIONS} connections, 50% GET / 50% SET, rounds of ${ROUND_MS} ms; CPU flags: ${machineInfo().cpuFlags.join(' ')}`,
    );
    console.table(rounds);
    console.log(`client p99 during the rewrite / without: ${ratio} (target ≤ 2)`);
    const file = writeResults('rewrite-online', {
      nodes: 3,
      connections: CONNECTIONS,
      valueBytes: VALUE_BYTES,
      loaded,
      rateMiBps: rate,
      cycles,
      sweepSeconds,
      roundMs: ROUND_MS,
      method: 'median p99 of the rounds during the sweep over the median p99 of the rounds before and after it, same run',
      rounds,
      ratios: { p99DuringVsWithout: ratio },
    });
    console.log(`results: ${file}`);
  } finally {
    for (const client of clients) client.disconnect();
    await cluster?.destroy();
  }
}
