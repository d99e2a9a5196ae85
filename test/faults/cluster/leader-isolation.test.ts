// The leader isolated from the majority (SPEC §6, §13), on 3 voters of real
// processes after Phase 2, under client traffic through every node: every
// link of the leader is cut both ways for a seeded while (bytes held or
// dropped), then healed (streams resumed or reset, seeded). During the isolation, writes sent
// straight to the isolated leader must not be acknowledged (nothing can
// commit there) — an acknowledgement after the heal is fine, once it has
// been forwarded and committed; the other two elect a new leader at a
// higher term; the isolated one stops calling itself leader (check-quorum).
// Afterwards every acknowledged write reads back everywhere and the history
// (including those writes) is linearizable. SEALKV_FAULT_SOAK=1 runs more
// rounds and seeds.
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Traffic, sleep, type Member } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { SOAK, faultSeed, faultSeeds } from '../support/nemesis.js';
import { endRun, finishScenario, opUnderFaults, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/leader-isolation.test.ts';
const SCENARIO = 'leader isolated from the majority';
const ROUNDS = SOAK ? 6 : 2;
/** Writes sent straight to the isolated leader per round. */
const DIRECT_WRITES = 12;

const run: Run = {};
afterEach(async (ctx) => endRun(run, ctx.task.result?.state === 'fail', 'leader-isolation'));

interface Term {
  role?: string;
  term?: number;
}

/** Waits (bounded) for `check` on `m`'s admin status; the last status seen, and whether it held. */
async function statusUntil(fc: FaultCluster, m: Member, check: (s: Term) => boolean, ms: number): Promise<{ ok: boolean; last: Term | undefined }> {
  const end = Date.now() + ms;
  let last: Term | undefined;
  for (;;) {
    last = (await fc.cluster.status(m).catch(() => undefined)) as Term | undefined;
    if (last !== undefined && check(last)) return { ok: true, last };
    if (Date.now() > end) return { ok: false, last };
    await sleep(100);
  }
}

describe('cluster faults: leader isolation', () => {
  for (const seed of faultSeeds()) {
    it(`${SCENARIO} (seed ${seed})`, async () => {
      const rng = faultSeed(seed, FILE, SCENARIO);
      const fc = (run.fc = await FaultCluster.start({ voters: 3 }));
      const c = fc.cluster;
      for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) expect((await opUnderFaults(fc, verb)).result.code).toBe(0);
      const traffic = (run.traffic = new Traffic(c, { workers: 4, pauseMs: 5 }));
      traffic.start();
      await traffic.untilAcked(20);
      const anomalies: string[] = [];
      let isolations = 0;

      for (let round = 0; round < ROUNDS; round++) {
        await sleep(rng.int(300, 1500));
        const old = await c.leader();
        const oldTerm = ((await c.status(old)) as Term).term ?? 0;
        const holdMs = rng.int(3000, 6000);
        const cutMode = rng.float() < 0.5 ? 'hold' : 'drop';
        const healMode = rng.float() < 0.5 ? 'resume' : 'reset';
        fc.isolate(old.id, cutMode);
        isolations++;
        const isolatedAt = performance.now();
        traffic.phase = `isolation-${round}`;

        // Writes straight to the isolated leader, each recorded in the history.
        const direct = Array.from({ length: DIRECT_WRITES }, async (_, i) => {
          await sleep(i * 100);
          const key = `iso-${round}-${i}-${crypto.randomBytes(9).toString('base64url')}`;
          const value = `v-${crypto.randomBytes(12).toString('base64url')}`;
          const record = { key, value, needle: value, keyNeedle: key, phase: traffic.phase, acked: false };
          traffic.writes.push(record);
          const call = performance.now();
          try {
            await c.client(old).set(key, value);
            record.acked = true;
            const ret = performance.now();
            traffic.history.push({ input: { kind: 'put', key, value }, output: null, call, ret, client: -3 });
            return ret;
          } catch {
            traffic.history.push({ input: { kind: 'put', key, value }, output: undefined, call, ret: Infinity, client: -3 });
            return undefined;
          }
        });

        const others = c.voters.filter((m) => m !== old);
        const elected = await Promise.all(others.map((m) => statusUntil(fc, m, (s) => s.role === 'leader' && (s.term ?? 0) > oldTerm, holdMs)));
        if (!elected.some((e) => e.ok)) anomalies.push(`round ${round}: no new leader among ${others.map((m) => m.id).join(', ')} within ${holdMs} ms`);
        const stepped = await statusUntil(fc, old, (s) => s.role !== 'leader', 10_000);
        if (!stepped.ok) anomalies.push(`round ${round}: ${old.id} still calls itself leader while isolated (${JSON.stringify(stepped.last)})`);
        await sleep(Math.max(0, holdMs - (performance.now() - isolatedAt)));

        const healedAt = performance.now();
        fc.healAll(healMode);
        const acks = await Promise.all(direct);
        const early = acks.filter((t) => t !== undefined && t < healedAt).length;
        if (early > 0) anomalies.push(`round ${round}: ${early} writes acknowledged by the isolated leader ${old.id} before the heal`);
        console.log(
          `cluster faults: round ${round}: isolated ${old.id} (term ${oldTerm}) for ${Math.round(healedAt - isolatedAt)} ms (${cutMode}), heal ${healMode}; ` +
            `${acks.filter((t) => t !== undefined).length} of ${DIRECT_WRITES} writes sent to it acknowledged after the heal, ${early} before`,
        );
        await sleep(rng.int(500, 1500));
      }

      const outcome = await finishScenario(fc, traffic, undefined, SCENARIO, { extraFaults: isolations, extraAnomalies: anomalies, encryption: true });
      expect(outcome.anomalies).toEqual([]);
    }, 240_000);
  }
});
