// Steady client load on 3 voters of real processes while the seeded
// nemesis SIGKILLs and restarts, SIGSTOPs and continues, isolates, cuts one
// directed link of, and delays any voter (the leader half the time), one
// fault at a time (SPEC §13). Then every acknowledged write reads back on
// every member and the history is linearizable.
import { afterEach, describe, expect, it } from 'vitest';
import { Traffic, sleep } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { Nemesis, SOAK, faultSeed, faultSeeds } from '../support/nemesis.js';
import { endRun, finishScenario, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/steady.test.ts';
const SCENARIO = 'steady load with random kills, stops and partitions';
const RUN_MS = SOAK ? 120_000 : 25_000;

const run: Run = {};
afterEach(async (ctx) => endRun(run, ctx.task.result?.state === 'fail', 'steady'));

describe('cluster faults: steady load', () => {
  for (const seed of faultSeeds()) {
    it(`${SCENARIO} (seed ${seed})`, async () => {
      const rng = faultSeed(seed, FILE, SCENARIO);
      const fc = (run.fc = await FaultCluster.start({ voters: 3 }));
      const traffic = (run.traffic = new Traffic(fc.cluster, { workers: 4, pauseMs: 5 }));
      traffic.start();
      await traffic.untilAcked(20);
      const nemesis = (run.nemesis = new Nemesis(fc, rng));
      nemesis.start();
      await sleep(RUN_MS);
      const outcome = await finishScenario(fc, traffic, nemesis, SCENARIO);
      expect(outcome.faults).toBeGreaterThan(0);
      expect(outcome.anomalies, nemesis.log.join('\n')).toEqual([]);
    }, RUN_MS + 180_000);
  }
});
