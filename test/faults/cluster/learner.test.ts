// A learner partitioned through key rotations (SPEC §4.2, §6, §8.4, §13),
// with real processes: 3 voters and a learner behind link proxies, Phase 2
// done, client traffic through every member. The learner is cut off from
// every voter both ways (bytes held or dropped; streams resumed or reset at
// the heal, seeded) while the storage and the raft DEK rotate, with a voter
// SIGKILLed and restarted at a seeded moment of the rotations; the learner
// must still report the old DEKs while cut off. After the heal it catches
// up (entries sealed under the DEK a rotation it missed brings, committed
// together with that rotation), reports the same encryption state as the
// voters, and reads every acknowledged write; the history is linearizable.
import { afterEach, describe, expect, it } from 'vitest';
import { Traffic, cliFailure, encryptionStatus, sleep } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { SOAK, faultSeed, faultSeeds } from '../support/nemesis.js';
import { SETTLE_MS, endRun, finishScenario, opUnderFaults, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/learner.test.ts';
const SCENARIO = 'a learner partitioned through a rotation';
const ROUNDS = SOAK ? 4 : 1;

const run: Run = {};
afterEach(async (ctx) => endRun(run, ctx.task.result?.state === 'fail', 'learner'));

describe('cluster faults: learner partitioned', () => {
  for (const seed of faultSeeds()) {
    it(`${SCENARIO} (seed ${seed})`, async () => {
      const rng = faultSeed(seed, FILE, SCENARIO);
      const fc = (run.fc = await FaultCluster.start({ voters: 3, learners: 1 }));
      const c = fc.cluster;
      const learner = c.members.find((m) => m.learner)!;
      for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) expect((await opUnderFaults(fc, verb)).result.code).toBe(0);
      // Client traffic through every member: those through the cut-off learner wait for the heal or time out (outcome unknown).
      const traffic = (run.traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
      traffic.start();
      await traffic.untilAcked(20);
      await c.settle(SETTLE_MS);
      let faults = 0;

      for (let round = 0; round < ROUNDS; round++) {
        traffic.phase = `round-${round}`;
        const before = await encryptionStatus(c, learner);
        const cutMode = rng.float() < 0.5 ? 'hold' : 'drop';
        const healMode = rng.float() < 0.5 ? 'resume' : 'reset';
        const killAfterMs = rng.int(0, 1500);
        const victimIndex = rng.int(0, c.voters.length - 1);
        const downMs = rng.int(300, 1500);
        fc.isolate(learner.id, cutMode);
        faults++;
        await sleep(rng.int(200, 1000));

        const rotations = (async () => {
          for (const purpose of ['storage', 'raft']) {
            const { result } = await opUnderFaults(fc, 'rotate-dek', ['--purpose', purpose]);
            expect(result.code, cliFailure(result, c)).toBe(0);
          }
        })();
        await sleep(killAfterMs);
        const victim = c.voters[victimIndex]!;
        await fc.kill(victim);
        faults++;
        await sleep(downMs);
        await fc.restart(victim);
        await rotations;
        await sleep(rng.int(500, 1500));

        const cutOff = await encryptionStatus(c, learner);
        const now = await encryptionStatus(c, await c.leader());
        expect(cutOff.active, 'the learner learned the rotations while cut off').toEqual(before.active);
        expect(now.active.storage).not.toBe(before.active.storage);
        expect(now.active.raft).not.toBe(before.active.raft);
        fc.healAll(healMode);
        // A learner that cannot catch up is judged (and recorded) below.
        if (!(await c.settle(SETTLE_MS).then(() => true, () => false))) break;
        console.log(`cluster faults: round ${round}: ${learner.id} cut off through a storage and a raft rotation (${victim.id} killed ${killAfterMs} ms in for ${downMs} ms), cut ${cutMode}, heal ${healMode}`);
      }

      const outcome = await finishScenario(fc, traffic, undefined, SCENARIO, { extraFaults: faults, encryption: true });
      expect(outcome.anomalies).toEqual([]);
    }, 240_000);
  }
});
