// An online rewrite sweep interrupted by SIGKILL (SPEC §11, §13; issue 8
// item 2): 3 voters and a learner after Phase 1 with the KEK in the loopback
// KMS-protocol server, client traffic through every node, a storage rotation,
// then `encryption rewrite --key-id=<old> --rate=... --no-wait`. A follower is
// killed with SIGKILL while its sweep runs; after the restart it resumes the
// sweep by itself, from its cursor (its finished run re-seals fewer versions
// than a member's whole run), and every member finishes with no version left
// under the old DEK. Every acknowledged write reads back on every node and
// the history is linearizable.
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, cliFailure, encryptionOp, finishTraffic, sleep, type EncryptionStatus, type Member } from '../support/encrypted-cluster.js';

interface SweepReport {
  target: string;
  phase: string;
  progress: { scanned: number; rewritten: number } | null;
  done?: { scanned: number; rewritten: number };
}

/** `node`'s own sweep report for `target`, from the fan-out status through `via`. */
async function sweepOf(c: EncryptedCluster, via: Member, node: string, target: string): Promise<SweepReport | undefined> {
  const status = (await c.adminGet(via, '/encryption/rewrite/status')) as { nodes?: Record<string, unknown> };
  return (status.nodes?.[node] as { sweeps?: SweepReport[] } | undefined)?.sweeps?.find((r) => r.target === target);
}

/** Polls (bounded) until `node`'s sweep of `target` satisfies `check`. */
async function untilSweep(c: EncryptedCluster, node: string, target: string, what: string, check: (r: SweepReport | undefined) => boolean): Promise<SweepReport | undefined> {
  let last: SweepReport | undefined;
  for (let i = 0; i < 150; i++) {
    last = await sweepOf(c, c.member('n1'), node, target).catch(() => undefined);
    if (check(last)) return last;
    await sleep(100);
  }
  throw new Error(`${node}: ${what} not reached: ${JSON.stringify(last)}\n${c.describe()}`);
}

let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;

describe('online rewrite with a member killed mid-sweep', () => {
  afterAll(async () => {
    await traffic?.stop();
    await cluster?.destroy();
  });

  it('resumes the killed member\'s sweep from its cursor after the restart, and every member finishes', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, learners: 1 }));
    const names = c.members.map((m) => m.id);
    const t = (traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
    const p1 = await encryptionOp(c, 'enable-storage-envelope');
    expect(p1.code, cliFailure(p1, c)).toBe(0);
    t.phase = 'phase1';
    t.start();
    await t.burst(800, c.member('n3'));
    const old = String(((await c.adminGet(await c.leader(), '/encryption/status')) as unknown as EncryptionStatus).active.storage);
    const rot = await encryptionOp(c, 'rotate-dek', undefined, ['--purpose', 'storage']);
    expect(rot.code, cliFailure(rot, c)).toBe(0);
    await c.settle();

    t.phase = 'sweeping';
    const started = await c.encryption('rewrite', c.member('n1'), true, ['--key-id', old, '--rate', '0.05', '--no-wait']);
    expect(started.code, cliFailure(started, c)).toBe(0);
    const leader = await c.leader();
    const victim = c.voters.find((m) => m.id !== leader.id && m.id !== 'n1')!;
    await untilSweep(c, victim.id, old, 'a batch written', (r) => (r?.progress?.rewritten ?? 0) > 0);
    await c.kill(victim);
    await t.untilAcked(20, 30_000);
    t.phase = 'restarted';
    await c.restart(victim);
    // Resumed by the node itself (nobody asked it again).
    await untilSweep(c, victim.id, old, 'resumed', (r) => r !== undefined && ['running', 'waiting', 'done'].includes(r.phase));

    const follow = await c.encryption('rewrite', c.member('n1'), false, ['--key-id', old, '--interval', '200']);
    expect(follow.code, cliFailure(follow, c)).toBe(0);
    for (const n of names) expect(follow.stdout).toMatch(new RegExp(`^${n}: done \\(\\d+ versions re-sealed\\)$`, 'm'));
    const resumed = await sweepOf(c, c.member('n1'), victim.id, old);
    const whole = await sweepOf(c, c.member('n1'), 'n1', old);
    // The versions under the old DEK are the same on every member: the resumed run re-sealed only those after its cursor.
    expect(resumed?.done?.rewritten, JSON.stringify({ resumed, whole })).toBeLessThan(whole!.done!.rewritten);
    for (const m of c.members) {
      const s = (await c.adminGet(m, '/encryption/status?verify=1')) as unknown as EncryptionStatus;
      expect(s.versions_per_key_id?.[old], m.id).toBeUndefined();
    }

    const { acked, unreadable, linearizable } = await finishTraffic(c, t);
    expect(acked.length).toBeGreaterThan(800);
    expect(unreadable, c.describe()).toBe('');
    expect(linearizable).toBe('');
    expect(t.errors).toEqual([]);
  }, 180_000);
});
