// Faults around the encryption rollout, with real processes (SPEC §6, §8,
// §13; issue 12 item 6), on one 3-voter cluster whose KEK is in the loopback
// KMS-protocol server:
//   - kill -9 of the leader and of a follower at each step (before and after
//     bootstrap, between Phase 1 and Phase 2, right after the cutover), then a
//     restart: the cluster recovers and every acknowledged write is readable
//     on every node, and the phases are reported alike everywhere;
//   - after Phase 2, a capable learner is registered on joining and serves
//     the data; an incapable one is refused (ErrPeerNotEncryptionCapable);
//   - a Raft payload tampered on a stopped follower after the cutover halts
//     that follower with ErrRaftUnwrapFailed without advancing its applied
//     index, and the rest of the cluster keeps serving.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { EncryptedCluster, Traffic, findField, isRaftLogFile, phasesOf, scanFiles, type Phases } from '../support/encrypted-cluster.js';
import { checkKvHistory, describeKvHistory } from '../support/linearizability.js';
import { until } from '../support/ports.js';
import { readLogEntries, tamperLogEntry } from '../support/raft-log-tamper.js';

let cluster: EncryptedCluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
});


async function expectPhases(c: EncryptedCluster, expected: (p: Phases) => void): Promise<Phases[]> {
  const all: Phases[] = [];
  for (const m of c.running) {
    const status = await c.encryption('status', m);
    expect(status.code, `${m.id}: ${status.stderr}`).toBe(0);
    const p = phasesOf(status.stdout);
    expected(p);
    all.push(p);
  }
  for (const p of all) expect(p).toEqual(all[0]);
  return all;
}

/** SIGKILL the leader, then a follower, each under writes, restart each; every acknowledged write readable everywhere. */
async function killEachAndRecover(c: EncryptedCluster, t: Traffic, step: string): Promise<void> {
  for (const role of ['leader', 'follower'] as const) {
    const leader = await c.leader();
    const victim = role === 'leader' ? leader : c.voters.find((m) => m.id !== leader.id && m.process.running)!;
    await c.kill(victim);
    await t.writeBatch(10);
    await c.restart(victim);
    await t.writeBatch(5);
    await c.settle();
    expect(await c.unreadable(t.acked())).toBe('');
    expect(victim.process.running, `${victim.id} after kill -9 (${role}, ${step}):\n${victim.process.output.slice(-2000)}`).toBe(true);
  }
}

describe('encryption rollout faults on 3 voters of real processes', () => {
  let t: Traffic;

  it('recovers from kill -9 of the leader and of a follower at every rollout step', async () => {
    cluster = await EncryptedCluster.start({ voters: 3 });
    const c = cluster;
    t = new Traffic(c);
    await c.leader();
    // Background traffic through whichever nodes are up, across every kill; its history must stay linearizable.
    const background = new Traffic(c, { workers: 2, pauseMs: 10 });
    background.start();

    t.phase = 'cleartext';
    await t.writeBatch(20);
    await killEachAndRecover(c, t, 'before bootstrap');
    await expectPhases(c, (p) => expect(p).toEqual({ phase: 'cleartext', storage: false, cutover: 0 }));

    const boot = await c.encryption('bootstrap', await c.leader());
    expect(boot.code, boot.stderr + c.describe()).toBe(0);
    await killEachAndRecover(c, t, 'after bootstrap');
    await expectPhases(c, (p) => expect(p).toEqual({ phase: 'bootstrapped', storage: false, cutover: 0 }));

    const phase1 = await c.encryption('enable-storage-envelope', await c.leader());
    expect(phase1.code, phase1.stderr + c.describe()).toBe(0);
    t.phase = 'phase1';
    await t.writeBatch(20);
    await killEachAndRecover(c, t, 'between Phase 1 and Phase 2');
    await expectPhases(c, (p) => expect(p).toEqual({ phase: 'storage-envelope', storage: true, cutover: 0 }));

    // Right after the cutover: the leader dies as soon as the CLI returns.
    const leader = await c.leader();
    const phase2 = await c.encryption('enable-raft-envelope', leader);
    expect(phase2.code, phase2.stderr + c.describe()).toBe(0);
    t.phase = 'phase2';
    await c.kill(leader);
    await t.writeBatch(10);
    await c.restart(leader);
    await killEachAndRecover(c, t, 'after the cutover');
    const phases = await expectPhases(c, (p) => expect(p.phase).toBe('raft-envelope'));
    expect(phases[0]!.cutover).toBeGreaterThan(0);
    await background.stop();
    await c.settle();
    expect(background.errors).toEqual([]);
    expect(await c.unreadable([...t.acked(), ...background.acked()])).toBe('');
    const history = [...t.history, ...background.history];
    const verdict = checkKvHistory(history);
    expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');
    console.log(`rollout faults: ${history.length} operations across nine kill -9s checked linearizable`);
  }, 240_000);

  it('registers a capable learner after Phase 2 and refuses an incapable one', async () => {
    const c = cluster!;
    const capable = await c.addLearner(true);
    expect(capable.status, JSON.stringify(capable.body)).toBe(200);
    // Writes applied on the learner need its writer row (else its apply halts): it was registered on joining.
    await t.writeBatch(20);
    await c.settle();
    expect(capable.member.process.running, capable.member.process.output.slice(-2000)).toBe(true);
    expect(await c.unreadable(t.acked(), [capable.member])).toBe('');
    await expectPhases(c, (p) => expect(p.cutover).toBeGreaterThan(0));
    // Its status shows it registered as a writer under both active DEKs.
    const learnerStatus = JSON.parse((await c.encryption('status', capable.member)).stdout) as Record<string, unknown>;
    const active = findField(learnerStatus, 'active') as { storage: number; raft: number };
    expect(findField(learnerStatus, 'registered_this_process')).toEqual(expect.arrayContaining([active.storage, active.raft]));
    // Nothing written after the cutover reached the new learner's disk in the clear.
    const scan = scanFiles(capable.member.dataDir, t.sentIn(['phase2']).flatMap((w) => [Buffer.from(w.needle), Buffer.from(w.keyNeedle)]), isRaftLogFile);
    expect(scan.files.length).toBeGreaterThan(0);
    expect(scan.hits.size).toBe(0);
    // Its store holds no value written after the flag; its Raft log, copied from the leader's, does hold
    // the cleartext entries from before the cutover (by design, until they are compacted away).
    const sealed = t.sentIn(['phase1', 'phase2']).map((w) => Buffer.from(w.needle));
    expect(scanFiles(capable.member.dataDir, sealed, (rel) => !isRaftLogFile(rel)).hits.size).toBe(0);
    expect(scanFiles(capable.member.dataDir, t.sentIn(['phase1']).map((w) => Buffer.from(w.needle)), isRaftLogFile).hits.size).toBeGreaterThan(0);

    const incapable = await c.addLearner(false);
    expect(incapable.status).toBe(409);
    expect(incapable.body.code).toBe('ErrPeerNotEncryptionCapable');
    expect(String(incapable.body.error)).toContain(incapable.member.id);
    await c.stop(incapable.member);
    await t.writeBatch(5);
    expect(await c.unreadable(t.acked())).toBe('');
  }, 90_000);

  it('halts a follower whose stored Raft payload was tampered after the cutover, without advancing its applied index', async () => {
    const c = cluster!;
    const leader = await c.leader();
    const follower = c.voters.find((m) => m.id !== leader.id)!;
    const cutover = (await expectPhases(c, () => undefined))[0]!.cutover;

    // A copy of the follower's store from now, then entries it applies after it.
    expect(await c.stop(follower)).toBe(0);
    const storeDir = path.join(follower.dataDir, 'store');
    const saved = `${storeDir}.saved`;
    fs.cpSync(storeDir, saved, { recursive: true });
    const before = await appliedIndexOf(storeDir);
    await c.restart(follower);
    await t.writeBatch(20);
    await c.settle();
    expect(await c.stop(follower)).toBe(0);

    // Back to the copy: the next start replays those entries from the follower's own log. Tamper the first.
    fs.rmSync(storeDir, { recursive: true, force: true });
    fs.renameSync(saved, storeDir);
    const raftDir = path.join(follower.dataDir, 'raft');
    const target = (await readLogEntries(raftDir)).find((e) => e.index > before && e.index > cutover && e.type === 'normal');
    expect(target, `no entry after ${before} in ${follower.id}'s log`).toBeDefined();
    tamperLogEntry(raftDir, { index: target!.index });

    await c.restart(follower).catch(() => undefined); // it may halt before or after it reports ready
    await until(() => !follower.process.running, `${follower.id} to halt`, 30_000);
    const code = await follower.process.stop();
    expect(code).not.toBe(0);
    expect(follower.process.output).toContain('ErrRaftUnwrapFailed');
    const after = await appliedIndexOf(storeDir);
    expect(after).toBeGreaterThanOrEqual(before);
    expect(after).toBeLessThan(target!.index);

    // The rest of the cluster keeps serving.
    const others = c.running;
    expect(others.length).toBe(3); // two voters and the capable learner
    await t.writeBatch(10);
    expect(await c.unreadable(t.acked(), others)).toBe('');
  }, 90_000);
});

async function appliedIndexOf(storeDir: string): Promise<number> {
  const store = await openStore(storeDir);
  try {
    return Number(await store.appliedIndex());
  } finally {
    await store.close();
  }
}
