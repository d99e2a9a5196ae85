// Seed range selection and reporting shared by the simulation test files.

import { runSeed, type SimStats } from './sim.js';

const DEFAULT_SEEDS_PER_SHARD = 2_500;
const SHARDS = 2;

function seedsPerShard(): number {
  return Number(process.env.RAFT_SIM_SEEDS ?? DEFAULT_SEEDS_PER_SHARD);
}

/** Test timeout for a shard: generous per seed, so soak runs are not cut short. */
export function simTimeoutMs(): number {
  return 60_000 + seedsPerShard() * 100;
}

/** Runs shard `shard`'s seeds (or the one RAFT_SIM_SEED), failing on the first bad seed with how to replay it. */
export async function runSimSeeds(shard: number): Promise<SimStats[]> {
  const one = process.env.RAFT_SIM_SEED;
  if (one !== undefined) {
    if (shard !== 0) return [];
    return [runOrExplain(Number(one))];
  }
  const perShard = seedsPerShard();
  const base = Number(process.env.RAFT_SIM_BASE ?? 1);
  const out: SimStats[] = [];
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < perShard; i++) {
    out.push(runOrExplain(base + shard + i * SHARDS));
    // Let the worker answer the test runner now and then (a long synchronous
    // run would time out its RPC).
    if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
  }
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const sum = (f: (s: SimStats) => number): number => out.reduce((a, s) => a + f(s), 0);
  console.log(
    `raft sim shard ${shard}: ${out.length} seeds in ${(ms / 1000).toFixed(1)} s (${cpuSeconds.toFixed(1)} s CPU); ` +
      `${sum((s) => s.messages)} messages, ${sum((s) => s.elections)} elections, ${sum((s) => s.crashes)} crashes, ` +
      `${sum((s) => s.confChanges)} conf changes, ${sum((s) => s.snapshotsSent)} snapshots, ` +
      `${sum((s) => s.acked)} acked writes, ${sum((s) => s.reads)} reads`,
  );
  return out;
}

function runOrExplain(seed: number): SimStats {
  try {
    return runSeed(seed);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\nreplay: RAFT_SIM_SEED=${seed} npx vitest run test/raft/sim/sim.test.ts`, { cause: err });
  }
}
