// Faults during the encryption rollout and key lifecycle (SPEC §4.2, §8.2,
// §8.3, §13), on 3 voters of real processes under client traffic: the
// seeded nemesis kills, stops, isolates, cuts and delays voters while
// `enable-storage-envelope`, `enable-raft-envelope`, `rotate-dek` (storage,
// then raft) and `rewrap-deks` run, each at a seeded moment of the fault
// schedule. A verb refused with a retryable error (a member unreachable for
// the capability poll, no leader, a cutover in progress) is sent again; any
// other failure fails the test. After each: every acknowledged write reads
// back on every member, the history is linearizable, and every member
// reports the same phase and active DEKs. After the rewrap the voters
// restart one by one (kill -9) with the new KEK and a storage rotation must
// succeed under it; a voter the nemesis kills after it applied the rewrap
// refuses the old KEK at start (ErrKEKMismatch, naming the new one) and is
// started with the new one, as the refusal says.
//
// Each test brings the cluster to the state it needs first (without
// faults), so one can be replayed alone with SEALKV_FAULT_SEED and -t.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Traffic, cliFailure, encryptionStatus, sleep, withKekUri } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { Nemesis, Rng, faultSeed, faultSeeds, type NemesisOptions } from '../support/nemesis.js';
import { SETTLE_MS, endRun, finishScenario, opUnderFaults, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/rollout.test.ts';
const TIMEOUT_MS = 240_000;

for (const seed of faultSeeds(2)) {
  describe(`cluster faults: rollout and key changes (seed ${seed})`, () => {
    const run: Run = {};
    let failed = false;
    let fc: FaultCluster;

    beforeAll(async () => {
      fc = run.fc = await FaultCluster.start({ voters: 3 });
    }, 60_000);
    afterAll(async () => endRun(run, failed, 'rollout'));

    /** Runs `verbs` quietly, for the state a test starts from (each verb is a no-op once done). */
    async function ensure(verbs: string[]): Promise<void> {
      for (const verb of verbs) {
        const { result } = await opUnderFaults(fc, verb);
        expect(result.code, cliFailure(result, fc.cluster)).toBe(0);
      }
    }

    /**
     * Traffic and the nemesis; `during` runs at a seeded moment of the
     * fault schedule, with one more fault struck a seeded moment after it
     * starts, and the faults go on for a seeded while after it; then the
     * scenario is judged (and recorded). `after` runs once the faults
     * stopped and returns the faults it injected itself; `restart` is how
     * the nemesis brings a killed node back (default: the same flags).
     */
    async function underFaults(
      k: number,
      scenario: string,
      during: () => Promise<void>,
      after?: () => Promise<number>,
      restart?: NemesisOptions['restart'],
    ): Promise<void> {
      try {
        const nemesisRng = faultSeed(seed, FILE, scenario, k);
        const rng = new Rng((seed + k) ^ 0x5bd1e995);
        const traffic = (run.traffic = new Traffic(fc.cluster, { workers: 3, pauseMs: 5 }));
        traffic.phase = scenario;
        traffic.start();
        await traffic.untilAcked(10);
        const nemesis = (run.nemesis = new Nemesis(fc, nemesisRng, { holdMs: [200, 1500], gapMs: [100, 800], ...(restart === undefined ? {} : { restart }) }));
        nemesis.start();
        await sleep(rng.int(200, 3000));
        // Besides the schedule, one fault struck right after the verb is sent.
        const strikeAfterMs = rng.int(0, 300);
        const kind = rng.pick(['kill', 'pause', 'isolate', 'one-way'] as const);
        const onLeader = rng.float() < 0.5;
        const holdMs = rng.int(300, 1500);
        const from = Date.now();
        const strike = sleep(strikeAfterMs).then(() => nemesis.strike(kind, onLeader, holdMs, rng));
        await during();
        const to = Date.now();
        await strike;
        console.log(`cluster faults: "${scenario}" ran ${to - from} ms, with these faults during it: ${nemesis.overlapping(from, to).join('; ') || 'none'}`);
        await sleep(rng.int(1000, 4000));
        await nemesis.stop();
        const extraFaults = (await after?.()) ?? 0;
        const outcome = await finishScenario(fc, traffic, nemesis, scenario, { encryption: true, extraFaults });
        expect(outcome.anomalies, nemesis.log.join('\n')).toEqual([]);
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        await run.traffic?.stop();
        run.traffic = undefined;
        run.nemesis = undefined;
      }
    }

    /** `verb` under faults; its result must be success. */
    async function verb(name: string, extra: string[] = []): Promise<void> {
      const { result, attempts } = await opUnderFaults(fc, name, extra);
      expect(result.code, cliFailure(result, fc.cluster)).toBe(0);
      console.log(`cluster faults: ${name} ${extra.join(' ')} succeeded after ${attempts} attempt(s)`);
    }

    it('faults during the Phase 1 cutover (enable-storage-envelope)', async () => {
      await underFaults(1, 'faults during the Phase 1 cutover', () => verb('enable-storage-envelope'));
      expect((await encryptionStatus(fc.cluster, await fc.cluster.leader())).phase).toBe('storage-envelope');
    }, TIMEOUT_MS);

    it('faults during the Phase 2 cutover (enable-raft-envelope)', async () => {
      await ensure(['enable-storage-envelope']);
      await underFaults(2, 'faults during the Phase 2 cutover', () => verb('enable-raft-envelope'));
      expect((await encryptionStatus(fc.cluster, await fc.cluster.leader())).phase).toBe('raft-envelope');
    }, TIMEOUT_MS);

    it('faults during rotate-dek of the storage and the raft DEK', async () => {
      await ensure(['enable-storage-envelope', 'enable-raft-envelope']);
      const before = (await encryptionStatus(fc.cluster, await fc.cluster.leader())).active;
      await underFaults(3, 'faults during rotate-dek of the storage and the raft DEK', async () => {
        await verb('rotate-dek', ['--purpose', 'storage']);
        await verb('rotate-dek', ['--purpose', 'raft']);
      });
      const now = (await encryptionStatus(fc.cluster, await fc.cluster.leader())).active;
      expect(now.storage).not.toBe(before.storage);
      expect(now.raft).not.toBe(before.raft);
    }, TIMEOUT_MS);

    it('faults during rewrap-deks, then a rolling restart with the new KEK', async () => {
      await ensure(['enable-storage-envelope', 'enable-raft-envelope']);
      const c = fc.cluster;
      const newKek = c.kms.uri(c.kms.createKey(`sealkv-faults-${seed}`).keyId);
      const before = (await encryptionStatus(c, await c.leader())).active;
      let kekRestarts = 0;
      await underFaults(
        4,
        'faults during rewrap-deks',
        () => verb('rewrap-deks', ['--kek-uri', newKek]),
        async () => {
          // The operator's next step: every voter restarts with the new KEK (here by kill -9), and keys change under it.
          fc.healAll();
          fc.resumeAll();
          // Each has applied the rewrap before it restarts with the new KEK (a node that has not must replay it with the old one first).
          await c.settle(SETTLE_MS);
          for (const m of [...c.voters]) {
            await fc.kill(m);
            await c.restart(c.reconfigure(m, (args) => withKekUri(args, newKek)));
          }
          await verb('rotate-dek', ['--purpose', 'storage']);
          return c.voters.length;
        },
        async (m) => {
          try {
            await fc.restart(m);
          } catch (err) {
            // Killed after it applied the rewrap: it refuses the old KEK, naming the new one (SPEC §9); start it with that.
            if (!String(err).includes('ErrKEKMismatch')) throw err;
            kekRestarts++;
            await c.restart(c.reconfigure(m, (args) => withKekUri(args, newKek)));
          }
        },
      );
      console.log(`cluster faults: ${kekRestarts} node(s) killed during the rewrap restarted with the new KEK`);
      const now = (await encryptionStatus(c, await c.leader())).active;
      expect(now.raft).toBe(before.raft);
      expect(now.storage).not.toBe(before.storage);
    }, TIMEOUT_MS);
  });
}
