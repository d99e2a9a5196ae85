// Crashes between the Raft apply of an encryption entry and its sidecar
// write (SPEC §10, §13; issue 12 item 6), with real processes: nodes armed
// with SEALKV_TEST_FAULT=before-sidecar-write|after-sidecar-write:<entry kind>
// SIGKILL themselves on either side of the sidecar write of bootstrap,
// enable-storage-envelope and enable-raft-envelope — a follower, the learner
// and the leader itself. The operator re-runs a command whose leader died;
// the dead nodes restart unarmed and replay the entry; at the end every node
// reports the same phases, every acknowledged write is readable everywhere,
// and writes go on; clients writing through the Phase 2 crash keep a
// linearizable history, and what they wrote after it is wrapped in every Raft log.
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

describe('kill -9 between the apply of an encryption entry and its sidecar write', () => {
  it('replays the entry after a restart, on a follower, the learner and the leader', async () => {
    cluster = await EncryptedCluster.start({ voters: 3, learners: 1 });
    const c = cluster;
    const t = new Traffic(c);
    await t.writeBatch(20);
    const learner = () => c.members.find((m) => m.learner)!;

    // Bootstrap: a follower dies after its sidecar write, the learner before its own.
    let leader = await c.leader();
    const follower = c.voters.find((m) => m.id !== leader.id)!;
    const armedBoot = [await arm(c, follower, 'after-sidecar-write:bootstrap'), await arm(c, learner(), 'before-sidecar-write:bootstrap')];
    leader = await c.leader();
    const boot = await c.encryption('bootstrap', leader);
    expect(boot.code, boot.stderr + c.describe()).toBe(0);
    await recover(c, armedBoot);
    await expectPhase(c, 'bootstrapped');
    await t.writeBatch(10);

    // Phase 1: the leader dies after its sidecar write of the flag entry.
    const p1 = await arm(c, c.voters.find((m) => m.id !== leader.id)!, 'after-sidecar-write:enable-storage-envelope');
    await makeLeader(c, p1);
    console.log(`enable-storage-envelope with the leader killed: ${await runThroughCrash(c, 'enable-storage-envelope', [p1])}`);
    await expectPhase(c, 'storage-envelope');
    await t.writeBatch(10);

    // Phase 2: the leader dies before its sidecar write of the cutover (inside its barrier), the learner after its own.
    leader = await c.leader();
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
  }, 150_000);
});
