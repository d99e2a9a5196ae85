// Retiring a storage DEK end to end with real processes (SPEC §4.2, §11;
// issue 8 items 2 and 3): 3 voters and a learner with the KEK in the loopback
// KMS-protocol server, client traffic through every node. The storage DEK is
// rotated under traffic; retire-dek of the old one is refused while versions
// remain (counted per node); the online rewrite re-seals them on every member
// with per-node progress to done; retire-dek is still refused until every
// node's GC horizon passes the old DEK's newest version, then succeeds, and
// no node's sidecar, keystore or store holds the DEK any more. Then a second
// rotation and an online sweep during which a follower is killed with
// SIGKILL: it resumes the sweep from its cursor after the restart and every
// member finishes. Every acknowledged write reads back on every node and the
// history is linearizable.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, cliFailure, encryptionOp, encryptionStatus, finishTraffic, sleep, type Member } from '../support/encrypted-cluster.js';

/** Longer than rotation → sweep → retire takes here, so the first retire after the sweep meets the GC criterion unmet. */
const GC_RETENTION_MS = 12_000;

let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;

interface SweepReport {
  target: string;
  phase: string;
  progress: { scanned: number; totalEstimate?: number } | null;
  done?: { scanned: number; rewritten: number };
}

/** `m`'s own sweep report for `target` (from the fan-out status through `m`). */
async function sweepOf(c: EncryptedCluster, via: Member, node: string, target: string): Promise<SweepReport | undefined> {
  const status = (await c.adminGet(via, '/encryption/rewrite/status')) as { nodes?: Record<string, unknown> };
  const sweeps = (status.nodes?.[node] as { sweeps?: SweepReport[] } | undefined)?.sweeps;
  return sweeps?.find((r) => r.target === target);
}

function sidecarKeyIds(m: Member): number[] {
  const json = JSON.parse(fs.readFileSync(path.join(m.dataDir, 'encryption', 'keys.json'), 'utf8')) as { keys: Record<string, unknown> };
  return Object.keys(json.keys).map(Number);
}

describe('retire-dek of a storage DEK on 3 voters and a learner', () => {
  afterAll(async () => {
    await traffic?.stop();
    await cluster?.destroy();
  });

  it('is refused while versions, the sweep or the GC horizon hold it back, then drops it everywhere; a sweep survives kill -9', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, learners: 1, extraArgs: ['--gc-interval-ms', '200', '--gc-retention-ms', String(GC_RETENTION_MS)] }));
    const names = c.members.map((m) => m.id);
    expect(names).toEqual(['n1', 'n2', 'n3', 'n4']);
    const t = (traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
    t.phase = 'phase1';
    const p1 = await encryptionOp(c, 'enable-storage-envelope');
    expect(p1.code, cliFailure(p1, c)).toBe(0);
    t.start();
    await t.burst(400, c.member('n2'));
    const old = (await encryptionStatus(c, await c.leader())).active.storage!;

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
    const active = await c.encryption('retire-dek', c.member('n1'), true, ['--key-id', String((await encryptionStatus(c, c.member('n1'))).active.storage)]);
    expect(active.stderr).toMatch(/ErrDEKStillReferenced: .*is the active storage DEK/);

    // The online sweep on every member, followed to done (plain lines: not a terminal).
    const sweep = await c.encryption('rewrite', c.member('n2'), false, ['--key-id', String(old), '--rate', '2', '--interval', '200']);
    expect(sweep.code, cliFailure(sweep, c)).toBe(0);
    for (const n of names) expect(sweep.stdout).toMatch(new RegExp(`^${n}: done \\(\\d+ versions re-sealed\\)$`, 'm'));
    for (const m of c.members) expect((await encryptionStatus(c, m, true)).versions_per_key_id?.[String(old)], m.id).toBeUndefined();

    // Swept everywhere, but the GC horizon has not passed the old DEK's newest version yet.
    const gcHeld = await c.encryption('retire-dek', c.member('n4'), true, ['--key-id', String(old)]);
    expect(gcHeld.code, cliFailure(gcHeld, c)).toBe(1);
    expect(gcHeld.stderr).toContain('ErrDEKStillReferenced');
    expect(gcHeld.stderr).toMatch(/minRetainedTS \d+ is not past its newest version/);
    expect(gcHeld.stderr).not.toMatch(/stored versions|sweep has not finished|cursor/);

    // Once it has (bounded wait), retirement succeeds.
    let retired;
    for (let i = 0; i < 60; i++) {
      retired = await c.encryption('retire-dek', c.member('n1'), true, ['--key-id', String(old)]);
      if (retired.code === 0 || !/minRetainedTS/.test(retired.stderr)) break;
      await sleep(500);
    }
    expect(retired!.code, cliFailure(retired!, c)).toBe(0);
    const report = JSON.parse(retired!.stdout) as { retired: { key_id: number; purpose: string; members: Record<string, { versions: number }> } };
    expect(report.retired.key_id).toBe(old);
    expect(Object.keys(report.retired.members).sort()).toEqual(names);
    for (const n of names) expect(report.retired.members[n]!.versions).toBe(0);
    await c.settle();
    for (const m of c.members) {
      const s = await encryptionStatus(c, m);
      expect(s.keys_present, m.id).not.toContain(old);
      expect(sidecarKeyIds(m), m.id).not.toContain(old);
    }
    // A second retire of the same key_id: unknown now.
    const again = await c.encryption('retire-dek', c.member('n2'), true, ['--key-id', String(old)]);
    expect(again.stderr).toContain('ErrUnknownKeyId');

    // A second rotation, and a sweep at a low rate during which a follower is killed.
    t.phase = 'second';
    await t.burst(1200, c.member('n3'));
    const second = (await encryptionStatus(c, await c.leader())).active.storage!;
    const rot2 = await encryptionOp(c, 'rotate-dek', undefined, ['--purpose', 'storage']);
    expect(rot2.code, cliFailure(rot2, c)).toBe(0);
    await c.settle();
    const started = await c.encryption('rewrite', c.member('n1'), true, ['--key-id', String(second), '--rate', '0.05', '--no-wait']);
    expect(started.code, cliFailure(started, c)).toBe(0);
    const leader = await c.leader();
    const victim = c.voters.find((m) => m.id !== leader.id && m.id !== 'n1')!;
    let before: SweepReport | undefined;
    for (let i = 0; i < 100; i++) {
      before = await sweepOf(c, c.member('n1'), victim.id, String(second));
      if ((before?.progress?.scanned ?? 0) > 0 || before?.phase === 'done') break;
      await sleep(100);
    }
    expect(before?.phase, JSON.stringify(before)).toBe('running');
    await c.kill(victim);
    await t.untilAcked(20, 30_000);
    await c.restart(victim);
    // It resumes on its own, from its cursor: its done run looks at fewer versions than the store holds.
    const follow = await c.encryption('rewrite', c.member('n1'), false, ['--key-id', String(second), '--interval', '200']);
    expect(follow.code, cliFailure(follow, c)).toBe(0);
    for (const n of names) expect(follow.stdout).toMatch(new RegExp(`^${n}: done`, 'm'));
    const resumed = await sweepOf(c, c.member('n1'), victim.id, String(second));
    const other = await sweepOf(c, c.member('n1'), 'n1', String(second));
    expect(resumed?.done?.scanned, JSON.stringify({ resumed, other })).toBeLessThan(other!.done!.scanned);
    for (const m of c.members) expect((await encryptionStatus(c, m, true)).versions_per_key_id?.[String(second)], m.id).toBeUndefined();

    const { acked, unreadable, linearizable } = await finishTraffic(c, t);
    expect(acked.length).toBeGreaterThan(1600);
    expect(unreadable, c.describe()).toBe('');
    expect(linearizable).toBe('');
    expect(t.errors).toEqual([]);
  }, 180_000);
});
