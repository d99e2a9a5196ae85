// Seed range selection and reporting shared by the simulation test files.

import { runSeed, type SimStats } from './sim.js';

const DEFAULT_SEEDS_PER_SHARD = 2_500;
const SHARDS = 2;

/** Runs shard `shard`'s seeds (or the one RAFT_SIM_SEED), failing on the first bad seed with how to replay it. */
export function runSimSeeds(shard: number): SimStats[] {
  const one = process.env.RAFT_SIM_SEED;
  if (one !== undefined) {
    if (shard !== 0) return [];
    return [runOrExplain(Number(one))];
  }
  const perShard = Number(process.env.RAFT_SIM_SEEDS ?? DEFAULT_SEEDS_PER_SHARD);
  const base = Number(process.env.RAFT_SIM_BASE ?? 1);
  const out: SimStats[] = [];
  const started = performance.now();
  for (let i = 0; i < perShard; i++) out.push(runOrExplain(base + shard + i * SHARDS));
  const ms = performance.now() - started;
  const sum = (f: (s: SimStats) => number): number => out.reduce((a, s) => a + f(s), 0);
  console.log(
    `raft sim shard ${shard}: ${out.length} seeds in ${(ms / 1000).toFixed(1)} s; ` +
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
