// A follower down through a storage and a raft DEK rotation AND through
// the compaction of the others' Raft logs past them (SPEC §4.2, §5.4, §10;
// issue 7 item 7), with real processes: 3 voters, KEK in the loopback KMS,
// `--snapshot-entries 50`, Phase 1 and 2 done before the follower stops.
//   - restart: the leader's log no longer holds the rotations, so the
//     follower catches up by snapshot install, which teaches it the new
//     DEKs and flags (afterRestore: each new DEK at local_epoch =
//     max(0, registered) + 1 = 1, where a rotation entry applied from the
//     log gives 0); no refusal, no resync. Then its status,
//     keys.json, reads of every write, and new writes through it sealed
//     under the new storage DEK; a second restart after kill -9 (its
//     registration under the new DEKs is then at a higher epoch) still
//     starts and serves;
//   - resync-sidecar --admin on the stopped follower after the rotations
//     and the compaction: its keys.json agrees with its own store and log,
//     so nothing is behind; the resync replays the empty gap and raises
//     the epochs from the leader's registry (source log-replay+leader-epochs),
//     it does NOT fetch the DEKs the node missed while down (SPEC §10: the
//     GetSidecarState fallback is for a node whose OWN log was compacted
//     past its keys.json; those DEKs come by snapshot install at start);
//     the node then starts and serves.

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentLog } from '../../src/raft/index.js';
import { parseSidecar, type SidecarState } from '../../src/sidecar/index.js';
import {
  EncryptedCluster,
  Traffic,
  cliFailure,
  encryptionOp,
  encryptionStatus,
  sleep,
  type Member,
} from '../support/encrypted-cluster.js';

let cluster: EncryptedCluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

const keysJson = (m: Member): string => path.join(m.dataDir, 'encryption', 'keys.json');
const sidecarOf = (m: Member): SidecarState => parseSidecar(fs.readFileSync(keysJson(m), 'utf8'));

/** The first index of `m`'s Raft log, read without changing it (retried while the running node rewrites segments). */
async function logFirstIndex(m: Member): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      const log = await SegmentLog.read(path.join(m.dataDir, 'raft', 'log'));
      try {
        return log.firstIndex();
      } finally {
        await log.close();
      }
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(100);
    }
  }
}

interface DownThrough {
  down: Member;
  up: Member[];
  storageKey: number;
  raftKey: number;
  /** The leader's commit index right after both rotations: at or past both rotation entries. */
  rotatedBy: number;
  /** The down node's keys.json when it stopped. */
  before: SidecarState;
}

/**
 * Phase 1 and 2 with a few writes, then a follower stopped (SIGTERM); on the two
 * others a storage and a raft rotation, then writes until both
 * their logs start past the rotations (bounded).
 */
async function downThroughRotations(c: EncryptedCluster, t: Traffic): Promise<DownThrough> {
  const leader = await c.leader();
  t.phase = 'cleartext';
  await t.writeBatch(10);
  for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) {
    const r = await encryptionOp(c, verb);
    expect(r.code, cliFailure(r, c)).toBe(0);
  }
  t.phase = 'before-down';
  await t.writeBatch(20);
  await c.settle();
  const before = await encryptionStatus(c, leader);
  expect(before.phase).toBe('raft-envelope');

  const down = c.voters.find((m) => m.id !== leader.id)!;
  const up = c.voters.filter((m) => m !== down);
  expect(await c.stop(down)).toBe(0);
  const beforeSidecar = sidecarOf(down);
  t.phase = 'while-down';
  await t.writeBatch(10);
  for (const purpose of ['storage', 'raft']) {
    const r = await encryptionOp(c, 'rotate-dek', undefined, ['--purpose', purpose]);
    expect(r.code, cliFailure(r, c)).toBe(0);
  }
  const rotated = await encryptionStatus(c, await c.leader());
  const storageKey = rotated.active.storage!;
  const raftKey = rotated.active.raft!;
  expect(storageKey).not.toBe(before.active.storage);
  expect(raftKey).not.toBe(before.active.raft);
  expect(beforeSidecar.keys.has(storageKey) || beforeSidecar.keys.has(raftKey)).toBe(false);
  const rotatedBy = (await c.status(await c.leader())).commit_index ?? 0;
  expect(rotatedBy).toBeGreaterThan(beforeSidecar.raftAppliedIndex);

  // Writes one by one (a pipelined burst is batched into a few entries) until both running logs start past the rotations.
  for (let round = 0; ; round++) {
    await t.writeBatch(40);
    await c.settle();
    const firsts = await Promise.all(up.map((m) => logFirstIndex(m)));
    if (firsts.every((f) => f > rotatedBy + 1)) break;
    if (round >= 10) throw new Error(`logs not compacted past ${rotatedBy}: first indexes ${firsts.join(', ')}, commit ${(await c.status(await c.leader())).commit_index}`);
  }
  return { down, up, storageKey, raftKey, rotatedBy, before: beforeSidecar };
}

/** Every write readable through `m`, a write through `m` readable on another member and vice versa. */
async function expectServes(c: EncryptedCluster, t: Traffic, m: Member, label: string): Promise<void> {
  await c.settle(30_000);
  expect(await c.unreadable(t.acked(), [m])).toBe('');
  const other = c.running.find((x) => x !== m)!;
  expect(await c.client(m).set(`through-${m.id}-${label}`, label)).toBe('OK');
  expect(await c.client(other).set(`through-${other.id}-${label}`, label)).toBe('OK');
  await c.settle();
  expect(await c.client(other).get(`through-${m.id}-${label}`)).toBe(label);
  expect(await c.client(m).get(`through-${other.id}-${label}`)).toBe(label);
}

describe('a follower down through DEK rotations and log compaction', () => {
  it('catches up by snapshot install: new DEKs in its keys.json, reads everything, seals under the new storage DEK, restarts', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, extraArgs: ['--snapshot-entries', '50'] }));
    const t = new Traffic(c);
    const { down, up, storageKey, raftKey, rotatedBy } = await downThroughRotations(c, t);

    // No refusal, no resync: the snapshot carries the key rows and the rollout row.
    await c.restart(down);
    t.phase = 'after-restart';
    await t.writeBatch(10);
    await c.settle(30_000);

    const mine = await encryptionStatus(c, down);
    for (const m of up) {
      const theirs = await encryptionStatus(c, m);
      expect(mine.active, `${down.id} vs ${m.id}`).toEqual(theirs.active);
    }
    expect(mine.active).toEqual({ storage: storageKey, raft: raftKey });
    expect(mine.phase).toBe('raft-envelope');
    expect(mine.keys_present).toEqual(expect.arrayContaining([storageKey, raftKey]));

    const sidecar = sidecarOf(down);
    expect(sidecar.active).toEqual({ storage: storageKey, raft: raftKey });
    expect(sidecar.raftAppliedIndex).toBeGreaterThanOrEqual(rotatedBy);
    // Learned from the snapshot, never registered under them before: max(0, registered) + 1 = 1
    // (a rotation entry applied from the log would have given 0: this is the snapshot path).
    const firstEpochs = new Map<number, number>();
    for (const id of [storageKey, raftKey]) {
      const key = sidecar.keys.get(id);
      expect(key, `keys.json of ${down.id} holds DEK ${id}`).toBeDefined();
      expect(key!.localEpoch).toBe(1);
      firstEpochs.set(id, key!.localEpoch);
    }
    expect(sidecar.keys.get(storageKey)!.purpose).toBe('storage');
    expect(sidecar.keys.get(raftKey)!.purpose).toBe('raft');

    // Every value written before, while and after it was down reads back through it.
    expect(await c.unreadable(t.acked(), [down])).toBe('');

    // New writes through it land under the new storage DEK (counted by a scan on its own store).
    const counted = (await encryptionStatus(c, down, true)).versions_per_key_id ?? {};
    const fresh = [];
    for (let i = 0; i < 20; i++) {
      const key = `sealed-through-${down.id}-${i}`;
      expect(await c.client(down).set(key, `value-${i}`)).toBe('OK');
      fresh.push(key);
    }
    await c.settle();
    const recounted = (await encryptionStatus(c, down, true)).versions_per_key_id ?? {};
    expect(recounted[String(storageKey)] ?? 0).toBeGreaterThanOrEqual((counted[String(storageKey)] ?? 0) + fresh.length);
    for (const m of up) expect(await c.client(m).mget(...fresh)).toEqual(fresh.map((_, i) => `value-${i}`));
    await expectServes(c, t, down, 'first');

    // A second restart, after kill -9: its registration under the new DEKs moves to a higher epoch.
    await c.kill(down);
    await c.restart(down);
    await expectServes(c, t, down, 'second');
    const again = sidecarOf(down);
    for (const [id, epoch] of firstEpochs) expect(again.keys.get(id)!.localEpoch).toBeGreaterThan(epoch);
    expect((await encryptionStatus(c, down)).active).toEqual({ storage: storageKey, raft: raftKey });
  }, 90_000);

  it('resync-sidecar --admin on the stopped follower finds nothing behind; the start then catches up by snapshot', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3, extraArgs: ['--snapshot-entries', '50'] }));
    const t = new Traffic(c);
    const { down, up, storageKey, raftKey, rotatedBy, before } = await downThroughRotations(c, t);

    const r = await c.cli([
      'encryption', 'resync-sidecar', '--data-dir', down.dataDir, '--raft-id', down.id, '--kek-uri', c.kekUri,
      '--admin', `127.0.0.1:${up[0]!.admin}`, '--admin-token-file', c.tokenFile, '--json',
    ]);
    expect(r.code, cliFailure(r, c)).toBe(0);
    const report = JSON.parse(r.stdout) as {
      source: string;
      entries_replayed: number;
      keys_added: number[];
      active: unknown;
      epochs_raised: { key_id: number; from: number | null; to: number }[];
      raft_applied_index: { from: number; to: number };
    };
    // Its own log holds the (empty) gap past its keys.json: a replay, then the leader's registry epochs.
    expect(report.source).toBe('log-replay+leader-epochs');
    expect(report.entries_replayed).toBe(0);
    expect(report.keys_added).toEqual([]);
    expect(report.active).toBeNull();
    expect(report.raft_applied_index.from).toBe(before.raftAppliedIndex);
    expect(report.raft_applied_index.to).toBeLessThan(rotatedBy);
    const after = sidecarOf(down);
    expect(report.epochs_raised.map((e) => e.key_id).sort()).toEqual([...before.keys.keys()].sort());
    for (const e of report.epochs_raised) expect(e.to).toBeGreaterThan(e.from ?? 0);
    // So the DEKs it missed are not in keys.json yet: they come with the snapshot at start.
    expect([...after.keys.keys()].sort()).toEqual([...before.keys.keys()].sort());
    expect(after.active).toEqual(before.active);

    await c.restart(down);
    await expectServes(c, t, down, 'after-resync');
    expect((await encryptionStatus(c, down)).active).toEqual({ storage: storageKey, raft: raftKey });
    const sidecar = sidecarOf(down);
    expect(sidecar.raftAppliedIndex).toBeGreaterThanOrEqual(rotatedBy);
    for (const id of [storageKey, raftKey]) expect(sidecar.keys.get(id)?.localEpoch ?? 0).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
