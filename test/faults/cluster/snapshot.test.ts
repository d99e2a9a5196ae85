// Faults during snapshot install (SPEC §5.4, §6, §13), on 3 voters of real
// processes after Phase 2, with `--snapshot-entries 30` and small Raft log
// segments so that logs compact early: a follower is isolated while a
// burst of writes makes the leader compact its log past it — the links
// hold the bytes or drop them (seeded) — then the links heal by a reset
// (what the leader sent meanwhile is lost) and, at a seeded moment of the
// catch-up, one more fault strikes — the follower or the leader SIGKILLed
// and restarted, the follower isolated again, or SIGSTOPped. The follower
// must catch up by snapshot install (seen as snapshot files streaming into
// its raft/snap dir) and serve every acknowledged write; the history,
// under client traffic throughout, must be linearizable.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Traffic, sleep, type Member } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { SOAK, faultSeed, faultSeeds } from '../support/nemesis.js';
import { SETTLE_MS, endRun, finishScenario, opUnderFaults, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/snapshot.test.ts';
const SCENARIO = 'faults during snapshot install';
const ROUNDS = SOAK ? 5 : 2;
const SMALL_LOG = ['--snapshot-entries', '30', '--raft-segment-bytes', '4096'];

const run: Run = {};
afterEach(async (ctx) => endRun(run, ctx.task.result?.state === 'fail', 'snapshot'));

/** Counts the snapshots that stream into a node's raft/snap dir (re-armed after the node restarts, which recreates it). */
class SnapshotWatch {
  readonly seen = new Set<string>();
  #watcher: fs.FSWatcher | undefined;

  arm(m: Member): void {
    this.close();
    const dir = path.join(m.dataDir, 'raft', 'snap');
    this.#watcher = fs.watch(dir, (_event, name) => {
      if (name?.startsWith('incoming-') === true) this.seen.add(name);
    });
    this.#watcher.on('error', () => undefined);
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

const FAULTS = ['kill-follower', 'kill-leader', 'isolate-again', 'pause-follower'] as const;

describe('cluster faults: snapshot install', () => {
  for (const seed of faultSeeds()) {
    it(`${SCENARIO} (seed ${seed})`, async () => {
      const rng = faultSeed(seed, FILE, SCENARIO);
      const fc = (run.fc = await FaultCluster.start({ voters: 3, extraArgs: SMALL_LOG }));
      const c = fc.cluster;
      for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) expect((await opUnderFaults(fc, verb)).result.code).toBe(0);
      const traffic = (run.traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
      traffic.start();
      await traffic.untilAcked(20);
      const watch = new SnapshotWatch();
      let faults = 0;
      try {
        for (let round = 0; round < ROUNDS; round++) {
          traffic.phase = `round-${round}`;
          const leader = await c.leader();
          const others = c.voters.filter((m) => m !== leader);
          const follower = others[rng.int(0, others.length - 1)]!;
          const burst = rng.int(250, 350);
          // Bytes held then reset, or dropped: either way what the leader sent while the follower was cut off is lost.
          const cutMode = rng.float() < 0.5 ? 'hold' : 'drop';
          const fault = rng.pick(FAULTS);
          const strikeAfterMs = rng.int(0, 400);
          const holdMs = rng.int(300, 1500);
          watch.arm(follower);
          const before = watch.seen.size;

          fc.isolate(follower.id);
          faults++;
          // One SET at a time, so that each is an entry of its own (a pipeline would be one batch entry).
          for (let i = 0; i < burst; i++) await traffic.burst(1, leader);
          fc.healAll('reset');
          await sleep(strikeAfterMs);
          faults++;
          if (fault === 'kill-follower' || fault === 'kill-leader') {
            const victim = fault === 'kill-follower' ? follower : leader;
            await fc.kill(victim);
            await sleep(holdMs);
            await fc.restart(victim);
            if (victim === follower) watch.arm(follower);
          } else if (fault === 'isolate-again') {
            fc.isolate(follower.id, cutMode);
            await sleep(holdMs);
            fc.healAll('reset');
          } else {
            fc.pause(follower);
            await sleep(holdMs);
            fc.resume(follower);
          }
          // A cluster that cannot catch up is judged (and recorded) below.
          const settled = await c.settle(SETTLE_MS).then(() => true, () => false);
          console.log(
            `cluster faults: round ${round}: ${follower.id} isolated (${cutMode}) through ${burst} writes to ${leader.id}, ` +
              `then ${fault} after ${strikeAfterMs} ms for ${holdMs} ms; ${watch.seen.size - before} snapshot(s) streamed into ${follower.id}`,
          );
          if (!settled) break;
        }
      } finally {
        watch.close();
      }
      const outcome = await finishScenario(fc, traffic, undefined, SCENARIO, { extraFaults: faults, encryption: true });
      expect(outcome.anomalies).toEqual([]);
      // The scenario exercised what it is about (not an anomaly of the store: a run that proved nothing).
      expect(watch.seen.size, 'no snapshot was installed').toBeGreaterThan(0);
    }, 300_000);
  }
});
