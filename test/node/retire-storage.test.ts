// Retiring a storage DEK end to end with real processes (SPEC §4.2, §11;
// issue 8 items 2 and 3): 3 voters and a learner with the KEK in the loopback
// KMS-protocol server, client traffic through every node. The storage DEK is
// rotated under traffic; retire-dek of the old one is refused while versions
// remain (counted per node); the online rewrite re-seals them on every member
// with per-node progress to done; retire-dek is still refused until every
// node's GC horizon passes the old DEK's newest version (a rolling restart
// with a short --gc-retention-ms moves it) and every node's Raft log is
// compacted past the rotation (writes, small --snapshot-entries), then
// succeeds, and
// no node's sidecar, keystore or store holds the DEK any more. Every
// acknowledged write reads back on every node and the history is
// linearizable. (A sweep interrupted by SIGKILL: rewrite-online-kill.test.ts.)
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, cliFailure, encryptionOp, finishTraffic, sleep, type EncryptionStatus, type Member } from '../support/encrypted-cluster.js';

/** Far longer than the test: the first retire after the sweep meets the GC criterion unmet; a rolling restart then shortens it. */
const GC_RETENTION_MS = 600_000;
const SHORT_RETENTION_MS = 1_000;

/** `args` with the value of `--gc-retention-ms` replaced. */
function withRetention(args: string[], ms: number): string[] {
  const i = args.indexOf('--gc-retention-ms');
  return [...args.slice(0, i + 1), String(ms), ...args.slice(i + 2)];
}


/** `m`'s encryption status over its admin API (no CLI process: cheaper on a busy machine). */
async function statusOf(c: EncryptedCluster, m: Member, verify = false): Promise<EncryptionStatus> {
  return (await c.adminGet(m, `/encryption/status${verify ? '?verify=1' : ''}`)) as unknown as EncryptionStatus;
}

let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;

function sidecarKeyIds(m: Member): number[] {
  const json = JSON.parse(fs.readFileSync(path.join(m.dataDir, 'encryption', 'keys.json'), 'utf8')) as { keys: Record<string, unknown> };
  return Object.keys(json.keys).map(Number);
}

describe('retire-dek of a storage DEK on 3 voters and a learner', () => {
  afterAll(async () => {
    await traffic?.stop();
    await cluster?.destroy();
  });

  it('is refused while versions, the sweep or the GC horizon hold it back, then drops it everywhere', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, learners: 1, extraArgs: ['--gc-interval-ms', '200', '--gc-retention-ms', String(GC_RETENTION_MS), '--snapshot-entries', '300'] }));
    const names = c.members.map((m) => m.id);
    expect(names).toEqual(['n1', 'n2', 'n3', 'n4']);
    const t = (traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
    t.phase = 'phase1';
    const p1 = await encryptionOp(c, 'enable-storage-envelope');
    expect(p1.code, cliFailure(p1, c)).toBe(0);
    t.start();
    await t.burst(400, c.member('n2'));
    const old = (await statusOf(c, await c.leader())).active.storage!;

    t.phase = 'rotated';
    const rot = await encryptionOp(c, 'rotate-dek', undefined, ['--purpose', 'storage']);
    expect(rot.code, cliFailure(rot, c)).toBe(0);
    await t.untilAcked(20, 30_000);
    await c.settle();

    // Refused: versions remain under the old DEK, counted on every node, and no sweep ran.
    const early = await c.encryption('retire-dek', c.member('n3'), true, ['--key-id', String(old)]);
    expect(early.code, cliFailure(early, c)).toBe(1);
    expect(early.stderr).toContain('ErrDEKStillReferenced');
    for (const n of names) expect(early.stderr).toMatch(new RegExp(`${n}: \\d+ stored versions under it, its rewrite sweep has not finished`));
    // The active DEK is refused too.
    const active = await c.encryption('retire-dek', c.member('n1'), true, ['--key-id', String((await statusOf(c, c.member('n1'))).active.storage)]);
    expect(active.stderr).toMatch(/ErrDEKStillReferenced: .*is the active storage DEK/);

    // The online sweep on every member, followed to done (plain lines: not a terminal).
    const sweep = await c.encryption('rewrite', c.member('n2'), false, ['--key-id', String(old), '--rate', '2', '--interval', '200']);
    expect(sweep.code, cliFailure(sweep, c)).toBe(0);
    for (const n of names) expect(sweep.stdout).toMatch(new RegExp(`^${n}: done \\(\\d+ versions re-sealed\\)$`, 'm'));
    for (const m of c.members) expect((await statusOf(c, m, true)).versions_per_key_id?.[String(old)], m.id).toBeUndefined();

    // Swept everywhere, but the GC horizon has not passed the old DEK's newest version yet.
    const gcHeld = await c.encryption('retire-dek', c.member('n4'), true, ['--key-id', String(old)]);
    expect(gcHeld.code, cliFailure(gcHeld, c)).toBe(1);
    expect(gcHeld.stderr).toContain('ErrDEKStillReferenced');
    expect(gcHeld.stderr).toMatch(/minRetainedTS \d+ is not past its newest version/);
    expect(gcHeld.stderr).not.toMatch(/stored versions|sweep has not finished|cursor/);

    // A rolling restart with a short retention moves every node's GC horizon past it; then (bounded wait) retirement succeeds.
    t.phase = 'short-retention';
    for (const m of [...c.members]) {
      await c.stop(m);
      await c.restart(c.reconfigure(m, (args) => withRetention(args, SHORT_RETENTION_MS)));
      await c.settle();
    }
    // Writes make every log compact past the rotation (no member could replay entries applied under the old DEK).
    let retired;
    for (let i = 0; i < 30; i++) {
      retired = await c.encryption('retire-dek', c.member('n1'), true, ['--key-id', String(old)]);
      if (retired.code === 0 || !/minRetainedTS|Raft log/.test(retired.stderr)) break;
      if (/Raft log/.test(retired.stderr)) await t.writeBatch(150);
      else await sleep(500);
    }
    expect(retired!.code, cliFailure(retired!, c)).toBe(0);
    const report = JSON.parse(retired!.stdout) as { retired: { key_id: number; purpose: string; members: Record<string, { versions: number }> } };
    expect(report.retired.key_id).toBe(old);
    expect(Object.keys(report.retired.members).sort()).toEqual(names);
    for (const n of names) expect(report.retired.members[n]!.versions).toBe(0);
    await c.settle();
    for (const m of c.members) {
      const s = await statusOf(c, m);
      expect(s.keys_present, m.id).not.toContain(old);
      expect(sidecarKeyIds(m), m.id).not.toContain(old);
    }
    // A second retire of the same key_id: unknown now.
    const again = await c.encryption('retire-dek', c.member('n2'), true, ['--key-id', String(old)]);
    expect(again.stderr).toContain('ErrUnknownKeyId');

    const { acked, unreadable, linearizable } = await finishTraffic(c, t);
    expect(acked.length).toBeGreaterThan(400);
    expect(unreadable, c.describe()).toBe('');
    expect(linearizable).toBe('');
    expect(t.errors).toEqual([]);
  }, 180_000);
});
