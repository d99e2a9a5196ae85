// The leader and the learner dying at the Phase 2 cutover, under client
// traffic (SPEC §8.3, §10, §13; issue 12 item 6), with real processes. The
// leader is armed with SEALKV_TEST_FAULT=before-sidecar-write:enable-raft-envelope
// and SIGKILLs itself applying the cutover entry, inside its quiescence
// barrier, while clients are retrying the barrier's TRYAGAIN; the learner
// dies just after its own sidecar write of the cutover (and, at bootstrap,
// just before its sidecar write). The operator's command fails with the
// leader; once the dead nodes are back unarmed, re-running it succeeds. At
// the end every node reports the same cutover, every acknowledged write is
// readable everywhere, the clients' history is linearizable, and what they
// wrote after the cutover is wrapped in every node's Raft log.
// (test/node/rollout-crash.test.ts covers followers, and the leader after
// its sidecar write, at every kind.)
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, isRaftLogFile, phasesOf, scanFiles, type Member } from '../support/encrypted-cluster.js';
import { checkKvHistory, describeKvHistory } from '../support/linearizability.js';
import { until } from '../support/ports.js';

let cluster: EncryptedCluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
});

/** Restarts `m` with SEALKV_TEST_FAULT=`fault`; returns the armed member. */
async function arm(c: EncryptedCluster, m: Member, fault: string): Promise<Member> {
  await c.stop(m);
  const armed = c.replaceMember(m, { capable: true, env: { SEALKV_TEST_FAULT: fault } });
  await armed.process.start();
  return armed;
}

/** Stops and restarts whoever leads until `m` does (bounded). */
async function makeLeader(c: EncryptedCluster, m: Member): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const leader = await c.leader();
    if (leader.id === m.id) return;
    await c.stop(leader);
    await until(async () => (await c.leader().catch(() => undefined)) !== undefined, 'a new leader');
    await c.restart(leader);
  }
  throw new Error(`${m.id} did not become the leader`);
}

/**
 * Runs `verb` on the leader, which dies under it; once the armed members are
 * back, the operator re-runs it if it failed (every member must answer the
 * capability poll, so not before). Returns how the first run ended.
 */
async function runThroughCrash(c: EncryptedCluster, verb: string, armed: Member[]): Promise<string> {
  const first = await c.encryption(verb, await c.leader());
  await recover(c, armed);
  if (first.code === 0) return 'succeeded';
  const again = await c.encryption(verb, await c.leader());
  expect(again.code, `${verb} re-run after "${first.stderr.trim()}": ${again.stderr}${c.describe()}`).toBe(0);
  return `failed (${first.stderr.trim().slice(0, 120)}), re-run succeeded`;
}

/** Waits for the armed members to have killed themselves, then restarts them unarmed. */
async function recover(c: EncryptedCluster, armed: Member[]): Promise<void> {
  for (const m of armed) {
    await until(() => !m.process.running, `${m.id} to stop at its fault point`, 30_000);
    expect(await m.process.stop(), `${m.id} exit`).toBeNull(); // SIGKILL
    await c.replaceMember(m, { capable: true }).process.start();
  }
  await c.settle();
}

async function expectPhase(c: EncryptedCluster, phase: string): Promise<void> {
  const seen: string[] = [];
  for (const m of c.running) {
    const status = await c.encryption('status', m);
    expect(status.code, `${m.id}: ${status.stderr}`).toBe(0);
    const p = phasesOf(status.stdout);
    expect(p.phase, `${m.id}`).toBe(phase);
    seen.push(JSON.stringify(p));
  }
  expect(new Set(seen).size, seen.join('\n')).toBe(1);
}

describe('the leader and the learner killed at the Phase 2 cutover under client traffic', () => {
  it('re-runs the cutover, agrees on it, keeps every write, and wraps what follows', async () => {
    cluster = await EncryptedCluster.start({ voters: 3, learners: 1 });
    const c = cluster;
    const t = new Traffic(c);
    await t.writeBatch(20);
    const learner = () => c.members.find((m) => m.learner)!;

    // Bootstrap: the learner dies before its sidecar write; then Phase 1.
    const armedBoot = [await arm(c, learner(), 'before-sidecar-write:bootstrap')];
    const boot = await c.encryption('bootstrap', await c.leader());
    expect(boot.code, boot.stderr + c.describe()).toBe(0);
    await recover(c, armedBoot);
    await expectPhase(c, 'bootstrapped');
    const phase1 = await c.encryption('enable-storage-envelope', await c.leader());
    expect(phase1.code, phase1.stderr + c.describe()).toBe(0);
    await expectPhase(c, 'storage-envelope');
    await t.writeBatch(10);

    // Phase 2: the leader dies before its sidecar write of the cutover (inside its barrier), the learner after its own.
    const leader = await c.leader();
    const p2 = await arm(c, c.voters.find((m) => m.id !== leader.id)!, 'before-sidecar-write:enable-raft-envelope');
    await makeLeader(c, p2);
    const armedLearner = await arm(c, learner(), 'after-sidecar-write:enable-raft-envelope');
    // Clients keep writing through the barrier, the leader's death inside it and the new leader.
    const background = new Traffic(c, { workers: 2, pauseMs: 5 });
    background.start();
    console.log(`enable-raft-envelope with the leader killed: ${await runThroughCrash(c, 'enable-raft-envelope', [p2, armedLearner])}`);
    await expectPhase(c, 'raft-envelope');
    t.phase = 'after-cutover';
    background.phase = 'after-cutover';
    await background.untilAcked(50);
    await background.stop();

    await t.writeBatch(20);
    await c.settle();
    expect(background.errors).toEqual([]);
    expect(await c.unreadable([...t.acked(), ...background.acked()])).toBe('');
    const verdict = checkKvHistory([...t.history, ...background.history]);
    expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');
    expect(c.running.length).toBe(4);
    // Whatever was proposed once the cutover was done is wrapped in every node's Raft log.
    const after = [...t.sentIn(['after-cutover']), ...background.sentIn(['after-cutover'])];
    for (const m of c.members) {
      const scan = scanFiles(m.dataDir, after.flatMap((w) => [Buffer.from(w.keyNeedle), Buffer.from(w.needle)]), isRaftLogFile);
      expect(scan.hits.size, `${m.id}: ${[...scan.hits.values()].flat().join(', ')}`).toBe(0);
    }
  }, 180_000);
});
