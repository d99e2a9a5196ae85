// Retiring a raft DEK end to end with real processes (SPEC §4.2; issue 8
// item 3): 3 voters and a learner after Phase 2, client traffic through every
// node, small Raft segments and frequent snapshots. After a raft rotation,
// retire-dek of the old raft DEK is refused with ErrRaftDEKWALStillReferences
// (every node's log still holds entries sealed under it) until writes make
// every node compact its log past them; then it succeeds, no node holds the
// DEK, and a node killed with SIGKILL afterwards restarts and replays its log
// without it. Every acknowledged write reads back on every node and the
// history is linearizable.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, cliFailure, encryptionOp, finishTraffic, type CliResult, type EncryptionStatus, type Member } from '../support/encrypted-cluster.js';


/** `m`'s encryption status over its admin API (no CLI process: cheaper on a busy machine). */
async function statusOf(c: EncryptedCluster, m: Member, verify = false): Promise<EncryptionStatus> {
  return (await c.adminGet(m, `/encryption/status${verify ? '?verify=1' : ''}`)) as unknown as EncryptionStatus;
}

let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;

describe('retire-dek of a raft DEK on 3 voters and a learner', () => {
  afterAll(async () => {
    await traffic?.stop();
    await cluster?.destroy();
  });

  it('is refused while any node\'s Raft log holds entries sealed under it, and succeeds once compaction moved every log past them', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, learners: 1, extraArgs: ['--snapshot-entries', '400', '--raft-segment-bytes', '16384'] }));
    const names = c.members.map((m) => m.id);
    // Light traffic: the first retire-dek must come before 400 more entries make every node compact.
    const t = (traffic = new Traffic(c, { workers: 2, pauseMs: 20 }));
    for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) {
      const r = await encryptionOp(c, verb);
      expect(r.code, cliFailure(r, c)).toBe(0);
    }
    t.phase = 'phase2';
    t.start();
    await t.untilAcked(50, 30_000);
    const old = (await statusOf(c, await c.leader())).active.raft!;
    const rot = await encryptionOp(c, 'rotate-dek', undefined, ['--purpose', 'raft']);
    expect(rot.code, cliFailure(rot, c)).toBe(0);
    t.phase = 'rotated';
    await c.settle();

    const early = await c.encryption('retire-dek', c.member('n2'), true, ['--key-id', String(old)]);
    expect(early.code, cliFailure(early, c)).toBe(1);
    expect(early.stderr).toContain('ErrRaftDEKWALStillReferences');
    for (const n of names) expect(early.stderr).toMatch(new RegExp(`${n}: its Raft log \\(from \\d+\\) still holds entry \\d+ sealed under it`));

    // Writes make every node snapshot and compact (bounded). One at a time: a
    // pipelined burst may be proposed as a few batch entries, too few to compact.
    let retired: CliResult | undefined;
    for (let i = 0; i < 15; i++) {
      await t.writeBatch(150);
      await c.settle();
      retired = await c.encryption('retire-dek', c.member('n3'), true, ['--key-id', String(old)]);
      if (retired.code === 0 || !retired.stderr.includes('ErrRaftDEKWALStillReferences')) break;
    }
    expect(retired!.code, cliFailure(retired!, c)).toBe(0);
    const report = JSON.parse(retired!.stdout) as { retired: { key_id: number; purpose: string; members: Record<string, { last_index_sealed: number | null; log_first_index: number }> } };
    expect(report.retired.purpose).toBe('raft');
    for (const n of names) expect(report.retired.members[n]!.last_index_sealed).toBeNull();
    await c.settle();
    for (const m of c.members) {
      expect((await statusOf(c, m)).keys_present, m.id).not.toContain(old);
      const sidecar = JSON.parse(fs.readFileSync(path.join(m.dataDir, 'encryption', 'keys.json'), 'utf8')) as { keys: Record<string, unknown> };
      expect(Object.keys(sidecar.keys), m.id).not.toContain(String(old));
    }

    // A node killed now replays its log without the retired DEK.
    t.phase = 'after-retire';
    const leader = await c.leader();
    const victim = c.voters.find((m) => m.id !== leader.id)!;
    await c.kill(victim);
    await t.untilAcked(20, 30_000);
    await c.restart(victim);
    await c.settle();

    const { acked, unreadable, linearizable } = await finishTraffic(c, t);
    expect(acked.length).toBeGreaterThan(100);
    expect(unreadable, c.describe()).toBe('');
    expect(linearizable).toBe('');
    expect(t.errors).toEqual([]);
  }, 180_000);
});
