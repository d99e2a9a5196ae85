// Faults during an online rewrite sweep (SPEC §4.2, §11, §13), on 3 voters
// and a learner of real processes under client traffic throughout. Keys are
// written in clear (several versions each), then after the Phase 1 cutover
// again (more versions, deletes, expiring and long TTLs) and the storage DEK
// is rotated, so versions in clear and under the old DEK remain. The online
// rewrite of the old key_id and of the cleartext versions starts on every
// member at a low --rate (all of them take the request before the faults),
// then the seeded nemesis kills, stops, isolates, cuts and delays voters,
// with a SIGKILL of a voter struck once every voter's sweep re-sealed a batch, then a
// SIGSTOP and an isolation. Nobody asks again: as documented, a killed
// member resumes its sweep by itself at its next start, from its cursor
// (checked: its finished run re-sealed fewer versions than a member never
// killed), and every member's sweeps reach done. Then `status --verify`
// finds no version in clear or under the old DEK on any member, every
// seeded key reads its last value (or nothing) on every member, and
// `retire-dek` of the old DEK succeeds once the GC horizon and the log
// compactions allow it (refusals meanwhile may give only those two
// reasons); with the scenario's standard checks.
import { afterEach, describe, expect, it } from 'vitest';
import { Traffic, cliFailure, encryptionStatus, sleep, type EncryptedCluster, type Member } from '../../support/encrypted-cluster.js';
import { FaultCluster } from '../support/fault-cluster.js';
import { Nemesis, faultSeed, faultSeeds, type Rng } from '../support/nemesis.js';
import { SETTLE_MS, endRun, finishScenario, opUnderFaults, type Run } from '../support/scenario.js';

const FILE = 'test/faults/cluster/rewrite.test.ts';
const SCENARIO = 'faults during an online rewrite sweep';
/** Longer than the sweeps under faults (no version under the old DEK is collected while they run), short enough to retire in the test. */
const GC_RETENTION_MS = 20_000;
/** MiB/s per member: a few seconds for the versions under the old DEK. */
const RATE = '0.02';
const SEEDED_KEYS = 300;
/** Bound on the sweeps finishing once the faults stopped, and on the retirement. */
const DONE_MS = 90_000;
const RETIRE_MS = 60_000;
/** The refusals of retire-dek that only time and writes remove (README "Retiring a DEK"). */
const TIME_BASED = /minRetainedTS \d+ is not past its newest version \(below \d+\)|its Raft log \(from \d+\) still holds entries applied under it \(rotation at \d+\): a member catching up from it would seal them under it again/g;

interface SweepReport {
  target: string;
  phase: string;
  progress: { scanned: number; rewritten: number } | null;
  done?: { rewritten: number; finished: string };
  error?: string;
}

/** Every member's own report of each sweep target, from the fan-out status through a running member (a member that does not answer is absent). */
async function sweepReports(fc: FaultCluster): Promise<Map<string, Map<string, SweepReport>>> {
  const c = fc.cluster;
  const out = new Map<string, Map<string, SweepReport>>();
  const via = c.running.find((m) => !fc.isPaused(m));
  if (via === undefined) return out;
  const status = (await c.adminGet(via, '/encryption/rewrite/status').catch(() => ({}))) as { nodes?: Record<string, { sweeps?: SweepReport[] }> };
  for (const [node, answer] of Object.entries(status.nodes ?? {})) {
    if (Array.isArray(answer.sweeps)) out.set(node, new Map(answer.sweeps.map((r) => [r.target, r])));
  }
  return out;
}

/** Writes one round of `keys` through `via` in one pipeline (`step` queues each key's command); every reply must be OK, TRYAGAIN sends the round again (bounded). */
async function writeRound(c: EncryptedCluster, via: Member, keys: string[], step: (pipe: ReturnType<ReturnType<EncryptedCluster['client']>['pipeline']>, key: string, i: number) => void): Promise<void> {
  const end = Date.now() + 30_000;
  for (;;) {
    const pipe = c.client(via).pipeline();
    keys.forEach((k, i) => step(pipe, k, i));
    const results = (await pipe.exec()) ?? [];
    const failed = results.find(([err]) => err !== null);
    if (failed === undefined && results.length === keys.length) return;
    // Every step is safe to repeat whole (same values, same order per key).
    if (!String(failed?.[0]).startsWith('TRYAGAIN') || Date.now() > end) throw new Error(`seeding through ${via.id}: ${String(failed?.[0])}`);
    await sleep(200);
  }
}

/** The value of key `i` in round `round` (distinct, so that a stale version can never pass for the newest). */
const valueOf = (round: string, i: number, rng: Rng): string => `${round}-${i}-${rng.int(0, 1e9)}`;

const run: Run = {};
afterEach(async (ctx) => endRun(run, ctx.task.result?.state === 'fail', 'rewrite'));

describe('cluster faults: online rewrite sweep', () => {
  for (const seed of faultSeeds()) {
    it(`${SCENARIO} (seed ${seed})`, async () => {
      const rng = faultSeed(seed, FILE, SCENARIO);
      const fc = (run.fc = await FaultCluster.start({
        voters: 3,
        learners: 1,
        extraArgs: ['--gc-interval-ms', '500', '--gc-retention-ms', String(GC_RETENTION_MS), '--snapshot-entries', '300'],
      }));
      const c = fc.cluster;
      const names = c.members.map((m) => m.id);
      const verb = async (name: string, extra: string[] = []): Promise<string> => {
        const { result } = await opUnderFaults(fc, name, extra);
        expect(result.code, cliFailure(result, c)).toBe(0);
        return result.stdout;
      };

      // In clear: two versions of every seeded key, under client traffic.
      const traffic = (run.traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
      traffic.phase = 'cleartext';
      traffic.start();
      const keys = Array.from({ length: SEEDED_KEYS }, (_, i) => `seeded-${seed}-${i}`);
      const expected = new Map<string, string | null>();
      for (const round of ['clear-1', 'clear-2']) {
        await writeRound(c, await c.leader(), keys, (p, k, i) => p.set(k, valueOf(round, i, rng)));
      }
      await traffic.untilAcked(20);

      // Phase 1, then two more versions of each under the DEK about to be replaced; a tenth deleted, a tenth with a long TTL, a tenth expiring soon.
      traffic.phase = 'phase1';
      await verb('enable-storage-envelope');
      const old = (await encryptionStatus(c, await c.leader())).active.storage!;
      for (const round of ['old-1', 'old-2']) {
        await writeRound(c, await c.leader(), keys, (p, k, i) => {
          const value = valueOf(round, i, rng);
          if (round === 'old-2' && i % 10 === 0) {
            p.del(k);
            expected.set(k, null);
          } else if (round === 'old-2' && i % 10 === 1) {
            p.set(k, value, 'EX', 3600);
            expected.set(k, value);
          } else if (round === 'old-2' && i % 10 === 2) {
            p.set(k, value, 'PX', 1500);
            expected.set(k, null);
          } else {
            p.set(k, value);
            expected.set(k, value);
          }
        });
      }
      await traffic.untilAcked(20);
      traffic.phase = 'rotated';
      await verb('rotate-dek', ['--purpose', 'storage']);
      const active = (await encryptionStatus(c, await c.leader())).active.storage!;
      expect(active).not.toBe(old);
      await traffic.untilAcked(20);
      await c.settle(SETTLE_MS);
      const before = await encryptionStatus(c, c.voters[0]!, true);
      console.log(`cluster faults: before the sweeps, versions per key_id: ${JSON.stringify(before.versions_per_key_id)} (old DEK ${old}, active ${active})`);
      expect(before.versions_per_key_id?.[String(old)] ?? 0).toBeGreaterThan(SEEDED_KEYS);

      // Every member takes both sweep requests before the faults (a member that never got one would need the command again).
      traffic.phase = 'sweeping';
      const targets = [String(old), 'cleartext'];
      const startArgs = [['--key-id', String(old)], ['--cleartext']];
      for (let attempt = 0; ; attempt++) {
        for (const extra of startArgs) await verb('rewrite', [...extra, '--rate', RATE, '--no-wait']);
        const reports = await sweepReports(fc);
        if (names.every((n) => targets.every((t) => reports.get(n)?.get(t) !== undefined && reports.get(n)!.get(t)!.phase !== 'stopped'))) break;
        expect(attempt, `sweep requests not taken by every member: ${JSON.stringify([...reports].map(([n, r]) => [n, [...r.values()]]))}`).toBeLessThan(10);
        await sleep(500);
      }

      // The faults: the nemesis's schedule, plus a SIGKILL of a voter once its sweep re-sealed a batch, then a SIGSTOP and an isolation.
      const last = new Map<string, Map<string, SweepReport>>();
      const kills: { id: string; at: number; before: SweepReport | undefined }[] = [];
      const nemesis = (run.nemesis = new Nemesis(fc, rng, {
        holdMs: [300, 1500],
        gapMs: [200, 800],
        restart: async (m) => {
          kills.push({ id: m.id, at: Date.now(), before: last.get(m.id)?.get(String(old)) });
          await fc.restart(m);
        },
      }));
      let polling = true;
      const poller = (async () => {
        for (let i = 0; polling && i < 2000; i++) {
          for (const [n, r] of await sweepReports(fc)) last.set(n, r);
          await sleep(250);
        }
      })();
      nemesis.start();
      const from = Date.now();
      // The kill is struck once every voter's sweep of the old DEK re-sealed a batch (so the victim has a cursor).
      const sweptABatch = (): boolean => c.voters.every((m) => (last.get(m.id)?.get(String(old))?.progress?.rewritten ?? 0) > 0 || last.get(m.id)?.get(String(old))?.phase === 'done');
      for (let i = 0; i < 200 && !sweptABatch(); i++) await sleep(100);
      await nemesis.strike('kill', false, rng.int(500, 1500), rng);
      await sleep(rng.int(300, 1500));
      await nemesis.strike('pause', rng.float() < 0.5, rng.int(300, 1500), rng);
      await sleep(rng.int(300, 1500));
      await nemesis.strike('isolate', rng.float() < 0.5, rng.int(300, 1500), rng);
      await sleep(rng.int(1000, 3000));
      await nemesis.stop();
      const to = Date.now();
      fc.healAll();
      fc.resumeAll();
      console.log(`cluster faults: "${SCENARIO}": faults during the sweeps (${to - from} ms): ${nemesis.overlapping(from, to).join('; ') || 'none'}`);

      // Every member's sweeps reach done, with no new request (a killed member resumes by itself).
      const anomalies: string[] = [];
      let reports = new Map<string, Map<string, SweepReport>>();
      const end = Date.now() + DONE_MS;
      while (Date.now() < end) {
        reports = await sweepReports(fc);
        if (names.every((n) => targets.every((t) => reports.get(n)?.get(t)?.phase === 'done'))) break;
        if ([...reports.values()].some((r) => [...r.values()].some((s) => s.phase === 'failed'))) break;
        await sleep(500);
      }
      polling = false;
      await poller;
      for (const n of names) {
        for (const t of targets) {
          const r = reports.get(n)?.get(t);
          if (r?.phase !== 'done') anomalies.push(`${n}: sweep of ${t} is ${JSON.stringify(r ?? 'not reported')} ${DONE_MS} ms after the faults stopped`);
        }
      }
      // Resumed from the cursor: progress is reported once a batch and its cursor are written, so a member killed after it had
      // re-sealed r versions of the old DEK re-seals at most (a never-killed member's count − r) in its finished run (its own
      // cursor on), or fewer still when it installed a snapshot of an already swept store meanwhile.
      const whole = names.filter((n) => !kills.some((k) => k.id === n)).map((n) => reports.get(n)?.get(String(old))?.done?.rewritten ?? 0);
      let resumedChecked = 0;
      for (const k of kills) {
        if (k.before === undefined || k.before.phase === 'done' || (k.before.progress?.rewritten ?? 0) === 0) continue;
        const done = reports.get(k.id)?.get(String(old))?.done;
        // The last poll is up to 250 ms old: a sweep that finished before the kill landed had nothing to resume.
        if (done !== undefined && Date.parse(done.finished) <= k.at) continue;
        const resumed = done?.rewritten;
        resumedChecked++;
        if (resumed === undefined || resumed + (k.before.progress?.rewritten ?? 0) > Math.max(...whole)) anomalies.push(`${k.id}: killed after re-sealing ${k.before.progress?.rewritten} versions, its finished run re-sealed ${resumed} (members never killed: ${whole.join(', ')}): not resumed from its cursor`);
      }
      console.log(`cluster faults: ${kills.length} kill(s) (${kills.map((k) => `${k.id}: ${k.before?.phase ?? '-'} ${k.before?.progress?.rewritten ?? 0} re-sealed`).join('; ')}); ${resumedChecked} resumed from the cursor checked; done rows: ${JSON.stringify(names.map((n) => [n, reports.get(n)?.get(String(old))?.done?.rewritten, reports.get(n)?.get('cleartext')?.done?.rewritten]))}`);

      // The command run again follows the finished sweeps: every member done (a finished key_id stays finished).
      const follow = await c.encryption('rewrite', await c.leader(), false, ['--key-id', String(old), '--interval', '200']);
      if (follow.code !== 0 || !names.every((n) => new RegExp(`^${n}: done \\(\\d+ versions re-sealed\\)$`, 'm').test(follow.stdout))) {
        anomalies.push(`rewrite --key-id ${old} run again: exit ${follow.code}\n${follow.stdout}\n${follow.stderr}`);
      }

      // No version in clear or under the old DEK on any member.
      await c.settle(SETTLE_MS).catch((err: unknown) => anomalies.push(`settle after the sweeps: ${String(err).slice(0, 300)}`));
      for (const m of c.members) {
        const s = await encryptionStatus(c, m, true).catch((err: unknown) => ({ error: String(err).slice(0, 300) }));
        if ('error' in s) anomalies.push(`${m.id}: status --verify: ${s.error}`);
        else if (Object.keys(s.versions_per_key_id ?? {}).some((id) => id !== String(active))) anomalies.push(`${m.id}: versions left besides the active DEK ${active}: ${JSON.stringify(s.versions_per_key_id)}`);
      }

      // Every seeded key reads its last value (or nothing: deleted, expired) on every member.
      let seededReads = 0;
      for (const m of c.members) {
        const got = await c.client(m).mget(...keys).catch((err: unknown) => keys.map(() => `(read failed: ${String(err)})`));
        const wrong = keys.filter((k, i) => got[i] !== expected.get(k));
        seededReads += keys.length;
        if (wrong.length > 0) anomalies.push(`${m.id}: ${wrong.length} seeded keys do not read their last value, e.g. ${wrong[0]} read ${JSON.stringify(got[keys.indexOf(wrong[0]!)])}, expected ${JSON.stringify(expected.get(wrong[0]!))}`);
      }

      // retire-dek of the old DEK: refused meanwhile only for the GC horizon or the logs not compacted past the rotation.
      let retired = false;
      let refusals = 0;
      let lastRefusal = '';
      const retireEnd = Date.now() + RETIRE_MS;
      while (anomalies.length === 0 && Date.now() < retireEnd) {
        const r = await c.encryption('retire-dek', await c.leader(), true, ['--key-id', String(old)]);
        if (r.code === 0) {
          retired = true;
          break;
        }
        refusals++;
        lastRefusal = r.stderr.trim();
        // What is left once the two time-based reasons are taken out must be member names only.
        const rest = (/refused: (.*)$/s.exec(lastRefusal)?.[1] ?? lastRefusal).replace(TIME_BASED, '');
        // A member too slow to answer on a loaded machine is asked again; any other reason is an anomaly.
        const unexpected = rest.split('; ').filter((line) => !/^n\d+:[ ,]*$/.test(line) && !/^n\d+: did not answer \(/.test(line));
        if (!lastRefusal.includes('ErrDEKStillReferenced') || unexpected.length > 0) {
          anomalies.push(`retire-dek ${old} refused for an unexpected reason: ${lastRefusal}`);
          break;
        }
        // Writes make every log compact past the rotation; the GC horizon moves with time.
        if (/Raft log/.test(lastRefusal)) await traffic.burst(150, await c.leader());
        else await sleep(1000);
      }
      if (retired) {
        await c.settle(SETTLE_MS).catch(() => undefined);
        for (const m of c.running) {
          const s = await encryptionStatus(c, m).catch(() => undefined);
          if (s?.keys_present.includes(old) !== false) anomalies.push(`${m.id}: the retired DEK ${old} is still present: ${JSON.stringify(s?.keys_present)}`);
        }
      }
      console.log(
        `cluster faults: retire-dek ${old}: ${retired ? 'succeeded' : 'still refused (time-based reasons only)'} after ${refusals} refusal(s)` + (lastRefusal === '' ? '' : `; the last: ${lastRefusal.slice(0, 400)}`),
      );

      const outcome = await finishScenario(fc, traffic, nemesis, SCENARIO, { encryption: true, extraAnomalies: anomalies, extraOperations: seededReads });
      expect(outcome.faults).toBeGreaterThanOrEqual(3);
      expect(outcome.anomalies, nemesis.log.join('\n')).toEqual([]);
    }, 300_000);
  }
});
