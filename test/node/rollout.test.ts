// The encryption rollout end to end with real processes (SPEC §8.2, §8.3,
// issue 12 item 6): 3 voters and 1 learner, the KEK in the loopback
// KMS-protocol server, cleartext data first, then `sealkv encryption
// enable-storage-envelope` and `enable-raft-envelope`, with client traffic
// through every node at every step. At the end every acknowledged write is
// readable on every node and the history is linearizable; the data dirs are
// scanned for plaintext:
//   - after Phase 1, the store's files hold none of the values written after
//     the flag, while the Raft log still carries them (by design until Phase 2);
//   - after Phase 2, no file holds the values written after the cutover, and
//     the Raft log holds neither their keys nor their values, also on a
//     follower that caught up by snapshot after a compaction.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readLogEntries } from '../support/raft-log-tamper.js';
import { checkKvHistory, describeKvHistory } from '../support/linearizability.js';
import {
  EncryptedCluster,
  Traffic,
  describeHits,
  isRaftLogFile,
  isStoreFile,
  phasesOf,
  scanFiles,
  sleep,
  type Member,
  type WriteRecord,
} from '../support/encrypted-cluster.js';

const SNAPSHOT_ENTRIES = 300;
/** Small Raft segments, so that compaction (which deletes whole segments) removes every record from before the cutover. */
const SEGMENT_BYTES = 64 * 1024;
let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;

afterAll(async () => {
  await traffic?.stop();
  await cluster?.destroy();
});

/** Which of `writes` appear (as key or value pieces) in the files of `m` that pass `filter`. */
function leaks(m: Member, writes: WriteRecord[], what: 'value' | 'key', filter: (rel: string) => boolean): string {
  const needles = writes.map((w) => Buffer.from(what === 'value' ? w.needle : w.keyNeedle));
  const scan = scanFiles(m.dataDir, needles, filter);
  return scan.hits.size === 0 ? '' : `${m.id}: ${scan.hits.size} ${what}s in the clear:\n${describeHits(scan, writes.map((w) => w.key))}`;
}


describe('encryption rollout on a 3-voter + learner cluster of real processes', () => {
  it('goes cleartext → Phase 1 → Phase 2 under traffic without losing a write or leaking a later value', async () => {
    cluster = await EncryptedCluster.start({ voters: 3, learners: 1, extraArgs: ['--snapshot-entries', String(SNAPSHOT_ENTRIES), '--raft-segment-bytes', String(SEGMENT_BYTES)] });
    const c = cluster;
    expect(c.members.map((m) => m.learner)).toEqual([false, false, false, true]);
    traffic = new Traffic(c, { workers: 4 });
    const t = traffic;

    // Cleartext, with traffic.
    t.phase = 'cleartext';
    t.start();
    await t.untilAcked(100);
    for (const m of c.members) {
      const status = await c.encryption('status', m);
      expect(status.code, status.stderr).toBe(0);
      expect(phasesOf(status.stdout)).toEqual({ phase: 'cleartext', storage: false, cutover: 0 });
    }

    // Phase 1, asked through a follower (it forwards to the leader).
    const leader = await c.leader();
    const follower = c.voters.find((m) => m.id !== leader.id)!;
    t.phase = 'phase1-switch';
    const phase1 = await c.encryption('enable-storage-envelope', follower);
    expect(phase1.code, phase1.stderr + c.describe()).toBe(0);
    t.phase = 'phase1';
    await t.untilAcked(100);
    await t.writeBatch(20);
    await c.settle();
    const afterFlag = t.acked(['phase1']);
    expect(afterFlag.length).toBeGreaterThan(20);
    for (const m of c.members) {
      const status = await c.encryption('status', m);
      expect(status.code, status.stderr).toBe(0);
      expect(phasesOf(status.stdout)).toEqual({ phase: 'storage-envelope', storage: true, cutover: 0 });
      // The store seals every value applied after the flag (the keys, by design in the clear,
      // show that the scan sees where those writes went) ...
      expect(leaks(m, afterFlag, 'key', isStoreFile)).not.toBe('');
      expect(leaks(m, afterFlag, 'value', isStoreFile)).toBe('');
    }
    // ... while the Raft log still carries them until Phase 2 (by design): the newest ones, written just now,
    // are in every log (compaction keeps the latest entries; small segments drop older ones early).
    const newest = await t.writeBatch(5);
    await c.settle();
    for (const m of c.members) expect(scanFiles(m.dataDir, newest.map((w) => Buffer.from(w.needle)), isRaftLogFile).hits.size, m.id).toBeGreaterThan(0);

    // Phase 2, asked through the leader, traffic still running (clients retry the barrier's TRYAGAIN).
    t.phase = 'phase2-switch';
    const phase2 = await c.encryption('enable-raft-envelope', await c.leader());
    expect(phase2.code, phase2.stderr + c.describe()).toBe(0);
    t.phase = 'phase2';
    await t.untilAcked(100);

    // A follower down while the log is compacted catches up by snapshot.
    const lead2 = await c.leader();
    const down = c.voters.find((m) => m.id !== lead2.id)!;
    await c.kill(down);
    await t.burst(SNAPSHOT_ENTRIES * 2, lead2);
    await c.restart(down);
    await sleep(1_000);
    await t.stop();
    await t.writeBatch(20);
    await c.settle();

    // Every acknowledged write, of every phase, readable on every node; the history linearizable.
    expect(t.errors).toEqual([]);
    const acked = t.acked();
    expect(await c.unreadable(acked)).toBe('');
    const verdict = checkKvHistory(t.history);
    expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');

    const phases = await Promise.all(c.members.map(async (m) => phasesOf((await c.encryption('status', m)).stdout)));
    expect(phases[0]!.cutover).toBeGreaterThan(0);
    expect(phases[0]!.phase).toBe('raft-envelope');
    for (const p of phases) expect(p).toEqual(phases[0]);

    const afterCutover = t.acked(['phase2']);
    const sentAfterCutover = t.sentIn(['phase2']);
    expect(afterCutover.length).toBeGreaterThan(SNAPSHOT_ENTRIES * 2);
    // Every node has compacted its log (or installed a snapshot) during the test. The segment files may
    // still hold older records: the scans below read the files, not the log.
    for (const m of c.members) {
      const entries = await readLogEntries(path.join(m.dataDir, 'raft'));
      expect(entries[0]!.index, m.id).toBeGreaterThan(SNAPSHOT_ENTRIES / 2);
    }
    for (const m of c.members) {
      // No file at all holds a value written after the cutover (their keys are in the store's files) ...
      expect(leaks(m, afterCutover, 'key', isStoreFile)).not.toBe('');
      expect(leaks(m, sentAfterCutover, 'value', () => true)).toBe('');
      // ... the Raft log holds neither their keys nor their values ...
      expect(leaks(m, sentAfterCutover, 'key', isRaftLogFile)).toBe('');
      // ... and the store still holds no value written after the flag.
      expect(leaks(m, t.sentIn(['phase1']), 'value', isStoreFile)).toBe('');
    }
    // Once the segments from before the cutover are compacted, the Raft log holds no key or value in clear
    // at all. Compaction runs every SNAPSHOT_ENTRIES applied entries and deletes whole segments: write on
    // (bounded) until no segment holds a record from before the cutover.
    const everything = t.sentIn(['cleartext', 'phase1-switch', 'phase1', 'phase2-switch', 'phase2']);
    const inClear = (): string => c.members.map((m) => leaks(m, everything, 'value', isRaftLogFile) + leaks(m, everything, 'key', isRaftLogFile)).join('');
    for (let round = 0; round < 30 && inClear() !== ''; round++) await t.writeBatch(SNAPSHOT_ENTRIES / 3);
    expect(inClear()).toBe('');
    // There is no way back (SPEC §8.3): disable refuses and explains dump-and-reload.
    const disable = await c.encryption('disable', c.members[0]!);
    expect(disable.code).toBe(1);
    expect(disable.stderr).toMatch(/^sealkv: ErrEncryptionDisableUnsupported: .*dump/);
    expect((await c.encryption('status', c.members[0]!)).stdout).toContain('raft-envelope');
    console.log(
      `rollout: ${acked.length} acknowledged writes (${t.acked(['cleartext']).length} cleartext, ${afterFlag.length} after the flag, ` +
        `${afterCutover.length} after the cutover at index ${phases[0]!.cutover}), ${t.history.length} operations checked linearizable`,
    );
  }, 180_000);
});
