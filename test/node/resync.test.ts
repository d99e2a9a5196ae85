// `sealkv encryption resync-sidecar` with real processes (SPEC §10; issue 7
// item 4), each on its own 3-voter cluster whose KEK is in the loopback KMS:
//   - log replay: n3's keys.json is put back to a copy taken before a
//     storage DEK rotation (after Phase 2, so the rotation entry in the log
//     is a Raft envelope); its start is refused with ErrSidecarBehindRaftLog;
//     resync-sidecar (refused with ErrDataDirLocked while n3 runs) replays
//     the log into keys.json and n3 starts, reads and writes; then keys.json
//     put back to a copy from an earlier lifetime → ErrLocalEpochRollback,
//     recovered by resync-sidecar --admin (local epochs raised);
//   - compacted log: the same with a tiny --snapshot-entries and enough
//     writes that n3's log no longer holds the gap: resync-sidecar without
//     --admin is refused with ErrLogCompactedPastSidecar, with --admin (a
//     running node) but another KEK, ErrKEKMismatch and nothing written;
//     with --admin and the KEK it writes the leader's GetSidecarState and n3 serves.
// Each refusal is exit 1 with one `sealkv: <Code>: ...` line on stderr.

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentLog } from '../../src/raft/index.js';
import { parseSidecar } from '../../src/sidecar/index.js';
import { EncryptedCluster, Traffic, findField, type CliResult, type Member } from '../support/encrypted-cluster.js';

// The CLI children inherit this: the AWS SDK's Node-version notice would be a second stderr line.
process.env.NODE_NO_WARNINGS = '1';

let cluster: EncryptedCluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

const keysJson = (m: Member): string => path.join(m.dataDir, 'encryption', 'keys.json');

/** Exit 1 and exactly one stderr line `sealkv: <code>: ...`. */
function expectRefused(result: CliResult, code: string, context: string): void {
  expect(result.code, `${context}: ${result.stdout}\n${result.stderr}`).toBe(1);
  const lines = result.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines, `${context}: ${result.stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^sealkv: .*${code}: `));
}

/** resync-sidecar on the stopped `m`; retried (bounded) while asking the leader fails for a retryable reason (no leader yet after `m` stopped, an RPC timeout). */
async function resync(c: EncryptedCluster, m: Member, extra: string[] = [], kekUri = c.kekUri): Promise<CliResult> {
  const end = Date.now() + 30_000;
  for (;;) {
    const r = await c.cli(['encryption', 'resync-sidecar', '--data-dir', m.dataDir, '--raft-id', m.id, '--kek-uri', kekUri, '--json', ...extra]);
    if (!/^sealkv: (ErrTimeout|ErrNotLeader):/m.test(r.stderr) || Date.now() > end) return r;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function activeStorageKey(c: EncryptedCluster, via: Member): Promise<number> {
  const status = await c.encryption('status', via);
  expect(status.code, status.stderr).toBe(0);
  return Number((findField(JSON.parse(status.stdout), 'active') as { storage: number }).storage);
}

/**
 * Bootstrap + Phase 1 (and Phase 2 when asked), a copy of n3's keys.json,
 * a storage rotation that n3 applies, `writes` more writes; then n3 stopped
 * with its keys.json put back to the copy. Returns the new storage key_id.
 */
async function staleSidecarOnN3(c: EncryptedCluster, t: Traffic, opts: { phase2: boolean; writes: number }): Promise<{ n3: Member; rotated: number; stale: string }> {
  const n3 = c.member('n3');
  const phase1 = await c.encryption('enable-storage-envelope', await c.leader());
  expect(phase1.code, phase1.stderr + c.describe()).toBe(0);
  if (opts.phase2) {
    const phase2 = await c.encryption('enable-raft-envelope', await c.leader());
    expect(phase2.code, phase2.stderr + c.describe()).toBe(0);
  }
  t.phase = 'before-rotation';
  await t.writeBatch(10);
  await c.settle();
  const stale = fs.readFileSync(keysJson(n3), 'utf8');
  const rotate = await c.encryption('rotate-dek', await c.leader(), true, ['--purpose', 'storage']);
  expect(rotate.code, rotate.stderr + c.describe()).toBe(0);
  t.phase = 'after-rotation';
  await t.writeBatch(opts.writes);
  await c.settle();
  const rotated = await activeStorageKey(c, n3);
  expect(parseSidecar(stale).keys.has(rotated)).toBe(false);
  expect(await c.stop(n3)).toBe(0);
  fs.writeFileSync(keysJson(n3), stale);
  return { n3, rotated, stale };
}

/** n3's start refused, one line, ErrSidecarBehindRaftLog. */
async function expectStartRefused(c: EncryptedCluster, n3: Member): Promise<void> {
  expectRefused(await c.cli(['start', ...n3.process.args]), 'ErrSidecarBehindRaftLog', 'start of n3 with a stale keys.json');
}

/** n3 back: every acknowledged write readable through it, a write through it readable elsewhere. */
async function expectServes(c: EncryptedCluster, t: Traffic, n3: Member): Promise<void> {
  await c.restart(n3);
  await c.settle();
  expect(await c.unreadable(t.acked(), [n3])).toBe('');
  expect(await c.client(n3).set('written-through-n3', 'after-resync')).toBe('OK');
  await c.settle();
  expect(await c.client(c.member('n1')).get('written-through-n3')).toBe('after-resync');
}

describe('encryption resync-sidecar on real processes', () => {
  it('replays the Raft log into a stale keys.json (rotation entry inside a Raft envelope); refused while the node runs', async () => {
    cluster = await EncryptedCluster.start({ voters: 3 });
    const c = cluster;
    const t = new Traffic(c);
    await c.leader();
    expectRefused(await resync(c, c.member('n3')), 'ErrDataDirLocked', 'resync on a running node');

    const { n3, rotated } = await staleSidecarOnN3(c, t, { phase2: true, writes: 10 });
    await expectStartRefused(c, n3);

    const result = await resync(c, n3);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report.source).toBe('log-replay');
    expect(report.written).toBe(true);
    expect(report.keys_added).toEqual([rotated]);
    expect(report.entries_replayed).toBeGreaterThanOrEqual(1);
    // The rotation came after the cutover: its entry was opened with the raft DEK.
    expect(report.raft_envelopes_opened).toBeGreaterThanOrEqual(1);
    const after = parseSidecar(fs.readFileSync(keysJson(n3), 'utf8'));
    expect(after.active.storage).toBe(rotated);
    expect(after.raftEnvelopeCutoverIndex).not.toBeNull();

    await expectServes(c, t, n3);

    // ErrLocalEpochRollback: keys.json put back to a copy from an earlier
    // lifetime (its epochs are ones n3 registered since); the documented
    // procedure is resync-sidecar with --admin, which raises every local_epoch.
    const earlier = fs.readFileSync(keysJson(n3), 'utf8');
    expect(await c.stop(n3)).toBe(0);
    await c.restart(n3);
    expect(await c.client(n3).set('registered-again', 'x')).toBe('OK');
    await c.settle();
    expect(await c.stop(n3)).toBe(0);
    fs.writeFileSync(keysJson(n3), earlier);
    expectRefused(await c.cli(['start', ...n3.process.args]), 'ErrLocalEpochRollback', 'start of n3 with keys.json from an earlier lifetime');
    const raised = await resync(c, n3, ['--admin', `127.0.0.1:${c.member('n1').admin}`, '--admin-token-file', c.tokenFile]);
    expect(raised.code, raised.stderr).toBe(0);
    const raisedReport = JSON.parse(raised.stdout) as { source: string; keys_added: number[]; epochs_raised: unknown[] };
    expect(raisedReport.source).toBe('log-replay+leader-epochs');
    expect(raisedReport.keys_added).toEqual([]);
    expect(raisedReport.epochs_raised.length).toBe(parseSidecar(earlier).keys.size);
    await expectServes(c, t, n3);
  }, 90_000);

  it('a log compacted past the gap is refused without --admin, and recovered from the leader\'s GetSidecarState with it', async () => {
    cluster = await EncryptedCluster.start({ voters: 3, extraArgs: ['--snapshot-entries', '20'] });
    const c = cluster;
    const t = new Traffic(c);
    await c.leader();
    const { n3, rotated, stale } = await staleSidecarOnN3(c, t, { phase2: false, writes: 60 });
    const log = await SegmentLog.read(path.join(n3.dataDir, 'raft', 'log'));
    const firstIndex = log.firstIndex();
    await log.close();
    expect(firstIndex, 'n3\'s log was compacted past the copy').toBeGreaterThan(parseSidecar(stale).raftAppliedIndex + 1);
    await expectStartRefused(c, n3);

    // (The refused start bumped the epochs in keys.json: compare with what it holds now.)
    const refusedOn = fs.readFileSync(keysJson(n3), 'utf8');
    expectRefused(await resync(c, n3), 'ErrLogCompactedPastSidecar', 'resync without --admin');
    expect(fs.readFileSync(keysJson(n3), 'utf8')).toBe(refusedOn);

    const admin = ['--admin', `127.0.0.1:${c.member('n1').admin}`, '--admin-token-file', c.tokenFile];
    // Another KEK: the leader's DEKs do not unwrap, and nothing is written.
    const otherKek = c.kms.uri(c.kms.createKey('not-the-cluster-kek').keyId);
    expectRefused(await resync(c, n3, admin, otherKek), 'ErrKEKMismatch', 'resync with another KEK');
    expect(fs.readFileSync(keysJson(n3), 'utf8')).toBe(refusedOn);

    const leaderSide = await resync(c, n3, admin);
    expect(leaderSide.code, leaderSide.stderr).toBe(0);
    const report = JSON.parse(leaderSide.stdout) as { source: string; keys_added: number[]; epochs_raised: { key_id: number; from: number | null; to: number }[] };
    expect(report.source).toBe('leader');
    expect(report.keys_added).toEqual([rotated]);
    // Every DEK above its old local epoch (SPEC §10: max(local, registered) + 1).
    for (const e of report.epochs_raised) expect(e.to).toBeGreaterThan(e.from ?? 0);
    expect(report.epochs_raised.map((e) => e.key_id).sort()).toEqual([...parseSidecar(fs.readFileSync(keysJson(n3), 'utf8')).keys.keys()].sort());

    await expectServes(c, t, n3);
  }, 90_000);
});
