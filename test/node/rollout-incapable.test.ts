// The capability poll of the rollout with real processes (SPEC §8.1–8.3):
// a member started without --encryption-enabled reports itself incapable,
// and `sealkv encryption bootstrap` and `enable-storage-envelope` fail with
// ErrCapabilityCheckFailed naming it (exit 1, one line), changing nothing.
// Once it is restarted capable, Phase 1 goes through. After Phase 1 a node
// cannot be incapable any more (its sidecar makes a start without the flag
// fail with ErrSidecarPresentWithoutFlag), so Phase 2 is shown blocked by
// the other failure the poll names: a member that does not answer.
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, encryptionOp, phasesOf, type Member } from '../support/encrypted-cluster.js';

let cluster: EncryptedCluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
});

function expectRefusal(result: { code: number; stdout: string; stderr: string }, code: string, naming: Member): void {
  expect(result.code, result.stdout + result.stderr).toBe(1);
  const lines = result.stderr.trim().split('\n');
  expect(lines.length, result.stderr).toBe(1);
  expect(lines[0]).toMatch(new RegExp(`^sealkv: ${code}: `));
  expect(lines[0]).toMatch(new RegExp(`\\b${naming.id}\\b`));
}

async function phasesEverywhere(c: EncryptedCluster): Promise<string[]> {
  const out: string[] = [];
  for (const m of c.running) {
    const status = await c.encryption('status', m);
    expect(status.code, `${m.id}: ${status.stderr}`).toBe(0);
    out.push(JSON.stringify(phasesOf(status.stdout)));
  }
  return out;
}

describe('an incapable or silent member blocks every rollout phase', () => {
  it('names the member, changes nothing, and lets the phase through once it is fixed', async () => {
    // n3 is a voter started without --encryption-enabled.
    cluster = await EncryptedCluster.start({ voters: 3, capable: (i) => i !== 2 });
    const c = cluster;
    const t = new Traffic(c);
    await c.leader();
    await t.writeBatch(10);
    const n3 = c.member('n3');
    const capable = c.members.filter((m) => m !== n3);
    // The poll runs on the leader: keep the incapable node a follower (see the report on an incapable leader).
    await notLeader(c, n3);

    for (const verb of ['bootstrap', 'enable-storage-envelope']) {
      for (const via of [await c.leader(), n3]) expectRefusal(await encryptionOp(c, verb, via), 'ErrCapabilityCheckFailed', n3);
    }
    expect(await phasesEverywhere(c)).toEqual(c.members.map(() => JSON.stringify({ phase: 'cleartext', storage: false, cutover: 0 })));
    // Phase 2 before bootstrap is refused for its own reason.
    const early = await encryptionOp(c, 'enable-raft-envelope');
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/^sealkv: (ErrEncryptionNotBootstrapped|ErrCapabilityCheckFailed): /);

    // n3 restarted capable: Phase 1 goes through.
    await c.stop(n3);
    const capableN3 = await startCapable(c, n3);
    const phase1 = await encryptionOp(c, 'enable-storage-envelope');
    expect(phase1.code, phase1.stderr + c.describe()).toBe(0);
    await t.writeBatch(10);

    // After Phase 1, a start without the flag is refused: the node holds a sidecar.
    await c.stop(capableN3);
    const withoutFlag = c.replaceMember(capableN3, { capable: false });
    await expect(withoutFlag.process.start()).rejects.toThrow(/ErrSidecarPresentWithoutFlag/);
    const n3Again = c.replaceMember(withoutFlag, { capable: true });

    // Phase 2 with a member down: refused, naming it; nothing changes.
    const leader = capable.find((m) => m.process.running)!;
    expectRefusal(await encryptionOp(c, 'enable-raft-envelope'), 'ErrCapabilityCheckFailed', n3);
    expect(await phasesEverywhere(c)).toEqual(capable.map(() => JSON.stringify({ phase: 'storage-envelope', storage: true, cutover: 0 })));
    expect(leader.process.running).toBe(true);

    // Back up: Phase 2 goes through and the data is all there.
    await c.restart(n3Again);
    const phase2 = await encryptionOp(c, 'enable-raft-envelope');
    expect(phase2.code, phase2.stderr + c.describe()).toBe(0);
    await t.writeBatch(10);
    await c.settle();
    const acked = t.acked();
    expect(await c.unreadable(acked)).toBe('');
  }, 150_000);
});

/** Restarts `m` until another member leads (bounded). */
async function notLeader(c: EncryptedCluster, m: Member): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if ((await c.leader()).id !== m.id) return;
    await c.stop(m);
    await c.leader();
    await c.restart(m);
  }
  throw new Error(`${m.id} stays the leader`);
}

/** Replaces an incapable member by the same node (same id, ports and data) started with --encryption-enabled. */
async function startCapable(c: EncryptedCluster, m: Member): Promise<Member> {
  const replacement = c.replaceMember(m, { capable: true });
  await replacement.process.start();
  return replacement;
}
