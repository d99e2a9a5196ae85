// Crashes between the Raft apply of an encryption entry and its store batch
// (issue 12 item 6; SPEC §4.3, §6, §10): a node started with
// SEALKV_TEST_FAULT=<before|after>-sidecar-write:<kind> SIGKILLs itself on
// one side of the durable sidecar write of that entry. The phase completes on
// the majority; after a restart the node replays the entry (the sidecar is
// written now, or left alone when it already had the entry), catches up and
// agrees with the others; data written before and after stays readable
// through every node. The kind-scoped fault cannot fire again on the replay
// of an earlier kind, so a restart may already carry the next phase's fault.
//
// Runs: two clusters with a faulty follower (every kind at each point, one
// of them under client traffic checked for linearizability); the leader
// dying right after its own sidecar write of the Raft cutover (under
// traffic); every voter dying right before its sidecar write of the cutover.
// SEALKV_ROLLOUT_CRASH_ALL=1 runs the leader and whole-cluster crashes at
// every kind and point (about 5 minutes more).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkKvHistory, describeKvHistory } from '../support/linearizability.js';
import {
  EncryptedCluster,
  Traffic,
  describeHits,
  isRaftLogFile,
  scanFiles,
  secretValue,
  sleep,
  type Member,
  type WriteRecord,
} from '../support/encrypted-cluster.js';

const KINDS = ['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope'] as const;
type Kind = (typeof KINDS)[number];
type Point = 'before' | 'after';

/** Bound on a catch-up (2 shared cores, a node replaying after a restart). */
const SETTLE_MS = 45_000;

/** The CLI verb that runs a phase whose entry is `kind`. */
const VERB: Record<Kind, string> = { bootstrap: 'bootstrap', 'enable-storage-envelope': 'enable-storage-envelope', 'enable-raft-envelope': 'enable-raft-envelope' };

interface KeysFile {
  raft_applied_index: number;
  storage_envelope_active: boolean;
  raft_envelope_cutover_index: number | null;
  active: Record<string, number>;
  keys: Record<string, unknown>;
}

interface Status {
  phase: string;
  storage_envelope_active: boolean;
  raft_envelope_cutover_index: number | null;
  active: Record<string, number>;
  keys_present: number[];
}

let cluster: EncryptedCluster | undefined;

afterEach(async (ctx) => {
  if (cluster !== undefined && ctx.task.result?.state === 'fail') {
    // The nodes' own logs, for the failure report (the data dir goes with destroy()).
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-rollout-crash-logs-'));
    for (const m of cluster.members) fs.writeFileSync(path.join(out, `${m.id}.log`), m.process.output);
    console.log(`rollout-crash: node logs of the failed test in ${out}`);
  }
  await cluster?.destroy();
  cluster = undefined;
});

function keysFile(m: Member): KeysFile | undefined {
  const file = path.join(m.dataDir, 'encryption', 'keys.json');
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as KeysFile;
}

function keyIds(k: KeysFile | undefined): string[] {
  return Object.keys(k?.keys ?? {}).sort();
}

async function status(c: EncryptedCluster, m: Member): Promise<Status> {
  const r = await c.encryption('status', m);
  expect(r.code, `${m.id} encryption status: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as Status;
}

/** What must be equal on every node once caught up. */
function agreed(s: Status): unknown {
  return { phase: s.phase, storage: s.storage_envelope_active, cutover: s.raft_envelope_cutover_index, active: s.active, keys: [...s.keys_present].sort() };
}

/** Polls (bounded) until `check` is true of `m`'s status; returns the last status. */
async function waitStatus(c: EncryptedCluster, m: Member, check: (s: Status) => boolean, ms = SETTLE_MS): Promise<Status> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await status(c, m);
    if (check(s)) return s;
    if (Date.now() > end) throw new Error(`${m.id}: status never matched: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

function faultEnv(point: Point, kind: Kind): Record<string, string> {
  return { SEALKV_TEST_FAULT: `${point}-sidecar-write:${kind}` };
}

/** A voter other than the leader, restarted with `env`; returns it and the leader (which stays a healthy node). */
async function followerWith(c: EncryptedCluster, env: Record<string, string>, prefer?: Member): Promise<{ follower: Member; leader: Member }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const leader = await c.leader();
    const follower = prefer !== undefined && prefer !== leader ? prefer : c.voters.find((m) => m !== leader)!;
    if (follower.process.running) await c.kill(follower);
    await c.restart(follower, env);
    const now = await c.leader();
    if (now !== follower) return { follower, leader: now };
  }
  throw new Error('the faulty node kept becoming the leader');
}

/** A value written through `via` and read back through it. */
async function writeRead(c: EncryptedCluster, via: Member): Promise<{ key: string; value: string; needle: string; keyNeedle: string }> {
  const keyNeedle = secretValue(12).needle;
  const { value, needle } = secretValue();
  const key = `crash-${keyNeedle}`;
  const end = Date.now() + 20_000;
  for (;;) {
    try {
      expect(await c.client(via).set(key, value)).toBe('OK');
      break;
    } catch (err) {
      if (!String(err).includes('TRYAGAIN') || Date.now() > end) throw err;
      await sleep(50);
    }
  }
  expect(await c.client(via).get(key)).toBe(value);
  return { key, value, needle, keyNeedle };
}

async function expectReadableEverywhere(c: EncryptedCluster, writes: { key: string; value: string }[]): Promise<void> {
  if (writes.length === 0) return;
  for (const m of c.running) {
    const got = await c.client(m).mget(...writes.map((w) => w.key));
    const missing = writes.filter((w, i) => got[i] !== w.value).map((w) => w.key);
    expect(missing, `${m.id} cannot read ${missing.length} of ${writes.length} writes`).toEqual([]);
  }
}

/** Values and keys proposed after the Raft cutover: absent from every member's Raft log (wrapped). */
function expectWrappedInRaftLogs(c: EncryptedCluster, late: { key: string; needle: string; keyNeedle: string }[]): void {
  const needles = late.flatMap((w) => [Buffer.from(w.needle), Buffer.from(w.keyNeedle)]);
  const labels = late.flatMap((w) => [`value of ${w.key}`, `key ${w.key}`]);
  for (const m of c.members) {
    const scan = scanFiles(m.dataDir, needles, isRaftLogFile);
    expect(scan.files.length, m.id).toBeGreaterThan(0);
    expect(scan.hits.size, `${m.id}: ${describeHits(scan, labels)}`).toBe(0);
  }
}

/** No unexpected client errors; every acknowledged write readable through every node; the history linearizable. */
async function expectTrafficSound(c: EncryptedCluster, traffic: Traffic): Promise<void> {
  const acked = traffic.acked();
  expect(traffic.errors).toEqual([]);
  expect(acked.length).toBeGreaterThan(10);
  await c.settle(SETTLE_MS);
  await expectReadableEverywhere(c, acked);
  const verdict = checkKvHistory(traffic.history);
  expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');
  console.log(`rollout-crash: ${acked.length} acknowledged writes under faults, ${traffic.history.length} operations linearizable`);
}

/** Runs, through `via`, the phases that come before `kind`. */
async function phasesBefore(c: EncryptedCluster, kind: Kind, via: Member): Promise<void> {
  for (const earlier of KINDS.slice(0, KINDS.indexOf(kind))) {
    const r = await c.encryption(VERB[earlier], via);
    expect(r.code, `${earlier}: ${r.stderr}`).toBe(0);
  }
}

/**
 * One phase with `follower` carrying the fault for `kind` at `point`: the
 * phase completes through the leader, the follower dies by SIGKILL with its
 * sidecar on the expected side of the entry, restarts (with `nextEnv`),
 * replays the entry and agrees with the others.
 */
async function phaseWithFaultyFollower(
  c: EncryptedCluster,
  kind: Kind,
  point: Point,
  follower: Member,
  leader: Member,
  nextEnv: Record<string, string>,
  written: { key: string; value: string }[],
): Promise<void> {
  const before = keysFile(follower);
  const r = await c.encryption(VERB[kind], leader);
  expect(r.code, `${kind} via ${leader.id}: ${r.stdout}${r.stderr}`).toBe(0);

  const exit = await c.exited(follower, 20_000);
  expect(exit.signal, `${follower.id} exit ${JSON.stringify(exit)}`).toBe('SIGKILL');

  // The entry's index: the leader's sidecar records it (only encryption entries write the sidecar).
  const leaderKeys = keysFile(leader)!;
  const index = leaderKeys.raft_applied_index;
  expect(index).toBeGreaterThan(before?.raft_applied_index ?? 0);
  const crashed = keysFile(follower);
  if (point === 'after') {
    // Killed right after the durable write: the sidecar has the entry.
    expect(crashed?.raft_applied_index).toBe(index);
    expect(keyIds(crashed)).toEqual(keyIds(leaderKeys));
  } else {
    // Killed right before: the sidecar is as it was.
    expect(crashed?.raft_applied_index ?? 0).toBeLessThan(index);
    expect(crashed?.raft_applied_index ?? 0).toBe(before?.raft_applied_index ?? 0);
  }

  // The majority goes on: the phase shows on the survivors, and they take writes.
  const expected = await status(c, leader);
  for (const m of c.running) expect(agreed(await status(c, m)), m.id).toEqual(agreed(expected));
  written.push(await writeRead(c, leader));

  await c.restart(follower, nextEnv);
  await c.settle(SETTLE_MS);
  const now = await waitStatus(c, follower, (s) => JSON.stringify(agreed(s)) === JSON.stringify(agreed(expected)));
  expect(agreed(now)).toEqual(agreed(expected));
  const recovered = keysFile(follower)!;
  expect(recovered.raft_applied_index).toBeGreaterThanOrEqual(index);
  expect(keyIds(recovered)).toEqual(keyIds(keysFile(leader)));
  expect(recovered.storage_envelope_active).toBe(leaderKeys.storage_envelope_active);
  expect(recovered.raft_envelope_cutover_index).toBe(leaderKeys.raft_envelope_cutover_index);
  expect(recovered.active).toEqual(leaderKeys.active);

  written.push(await writeRead(c, follower));
  await c.settle(SETTLE_MS);
  await expectReadableEverywhere(c, written);
}

/** Three phases, follower faults at `points[i]` for KINDS[i]; optional client traffic throughout. */
async function followerRun(points: readonly Point[], withTraffic: boolean): Promise<void> {
  const c = (cluster = await EncryptedCluster.start({ voters: 3 }));
  await c.leader();
  const written: { key: string; value: string }[] = [];
  const traffic = new Traffic(c, { workers: 3, pauseMs: 5 });
  traffic.phase = 'cleartext';
  const quiet: WriteRecord[] = await traffic.writeBatch(5);
  written.push(...quiet);
  if (withTraffic) traffic.start();

  let { follower, leader } = await followerWith(c, faultEnv(points[0]!, KINDS[0]));
  try {
    for (let i = 0; i < KINDS.length; i++) {
      const kind = KINDS[i]!;
      traffic.phase = kind;
      const next: Record<string, string> = i + 1 < KINDS.length ? faultEnv(points[i + 1]!, KINDS[i + 1]!) : {};
      await phaseWithFaultyFollower(c, kind, points[i]!, follower, leader, next, written);
      leader = await c.leader();
      if (leader === follower) throw new Error(`${follower.id} became the leader; the next fault would be on the leader`);
    }
  } finally {
    if (withTraffic) await traffic.stop();
  }

  // After the cutover: a value proposed now is wrapped in every Raft log, the restarted follower's included.
  const after = await writeRead(c, follower);
  written.push(after);
  await c.settle(SETTLE_MS);
  await expectReadableEverywhere(c, written);
  expectWrappedInRaftLogs(c, [after]);

  if (withTraffic) await expectTrafficSound(c, traffic);
}

/** Whether `s` shows the phase whose entry is `kind` applied. */
function phaseApplied(kind: Kind, s: Status): boolean {
  if (kind === 'bootstrap') return s.keys_present.length > 0;
  if (kind === 'enable-storage-envelope') return s.storage_envelope_active;
  return s.raft_envelope_cutover_index !== null;
}

/**
 * The leader carries the fault for `kind` at `point` and dies applying the
 * entry it proposed: the entry was committed (applied means committed), so
 * the survivors apply it at the same index under a new leader; running the
 * phase again completes (a no-op); the old leader restarts and converges.
 */
async function leaderRun(kind: Kind, point: Point, withTraffic: boolean): Promise<void> {
  const c = (cluster = await EncryptedCluster.start({ voters: 3 }));
  const written: { key: string; value: string }[] = [];
  const first = await c.leader();
  written.push(await writeRead(c, first));
  await phasesBefore(c, kind, first);
  const traffic = new Traffic(c, { workers: 3, pauseMs: 5 });
  traffic.phase = kind;
  if (withTraffic) traffic.start();

  // The faulty node must be the leader when the entry is proposed: restart
  // it with the fault, then restart whoever else leads until it does.
  const faulty = first;
  await c.kill(faulty);
  await c.restart(faulty, faultEnv(point, kind));
  for (let attempt = 0; ; attempt++) {
    const leader = await c.leader();
    if (leader === faulty) break;
    if (attempt >= 12) throw new Error(`${faulty.id} never became the leader again`);
    await c.kill(leader);
    await c.leader();
    await c.restart(leader);
  }
  await c.settle(SETTLE_MS);
  written.push(await writeRead(c, faulty));
  const before = keysFile(faulty);

  // The CLI's answer may be lost with the leader: either outcome is fine here.
  const r = await c.encryption(VERB[kind], faulty);
  const exit = await c.exited(faulty, 20_000);
  expect(exit.signal, `${faulty.id} exit ${JSON.stringify(exit)}; cli ${r.code} ${r.stdout}${r.stderr}`).toBe('SIGKILL');

  // The survivors apply the entry under a new leader.
  const survivors = c.running;
  expect(survivors.length).toBe(2);
  const newLeader = await c.leader();
  expect(newLeader).not.toBe(faulty);
  for (const m of survivors) await waitStatus(c, m, (s) => phaseApplied(kind, s));
  const index = keysFile(newLeader)!.raft_applied_index;
  const crashed = keysFile(faulty);
  if (point === 'after') {
    expect(crashed?.raft_applied_index).toBe(index);
    expect(keyIds(crashed)).toEqual(keyIds(keysFile(newLeader)));
  } else {
    expect(crashed?.raft_applied_index ?? 0).toBe(before?.raft_applied_index ?? 0);
    expect(crashed?.raft_applied_index ?? 0).toBeLessThan(index);
  }
  const cutover = kind === 'enable-raft-envelope' ? (await status(c, newLeader)).raft_envelope_cutover_index : null;
  if (cutover !== null) expect(cutover).toBe(index);

  const expected = await status(c, newLeader);
  expect(expected.raft_envelope_cutover_index).toBe(cutover);
  for (const m of survivors) expect(agreed(await status(c, m)), m.id).toEqual(agreed(expected));

  const late = [];
  for (const m of survivors) late.push(await writeRead(c, m));

  await c.restart(faulty);
  await c.settle(SETTLE_MS);
  // Running the phase again through the new leader (every member up: the
  // capability poll of a phase comes first) is a no-op: same keys, same cutover.
  const again = await c.encryption(VERB[kind], newLeader);
  expect(again.code, again.stderr).toBe(0);
  expect(agreed(JSON.parse(again.stdout) as Status)).toEqual(agreed(expected));
  const now = await waitStatus(c, faulty, (s) => JSON.stringify(agreed(s)) === JSON.stringify(agreed(expected)));
  expect(agreed(now)).toEqual(agreed(expected));
  const recovered = keysFile(faulty)!;
  expect(recovered.raft_applied_index).toBeGreaterThanOrEqual(index);
  expect(recovered.raft_envelope_cutover_index).toBe(cutover);
  expect(keyIds(recovered)).toEqual(keyIds(keysFile(newLeader)));

  for (const m of c.members) late.push(await writeRead(c, m));
  written.push(...late);
  await c.settle(SETTLE_MS);
  await expectReadableEverywhere(c, written);

  // Proposed after the cutover: wrapped in every Raft log, the old leader's included.
  if (cutover !== null) expectWrappedInRaftLogs(c, late);
  if (withTraffic) {
    await traffic.stop();
    await expectTrafficSound(c, traffic);
  }
  console.log(`rollout-crash: leader ${faulty.id} died ${point} its sidecar write of ${kind} (index ${index}; CLI exit ${r.code}); new leader ${newLeader.id}`);
}

/**
 * Every voter carries the fault for `kind` at `point`: each dies applying
 * it (one that never learns the commit before the others are gone is killed
 * by the test), then all restart without it and replay the entry from their
 * own logs; the cluster agrees on the phase, and after the Raft cutover
 * what is proposed is wrapped in every Raft log.
 */
async function wholeClusterRun(kind: Kind, point: Point): Promise<void> {
  const c = (cluster = await EncryptedCluster.start({ voters: 3 }));
  const written: { key: string; value: string }[] = [];
  const first = await c.leader();
  await phasesBefore(c, kind, first);
  for (const m of c.voters) {
    await c.kill(m);
    await c.restart(m, faultEnv(point, kind));
    await c.settle(SETTLE_MS);
  }
  for (const m of c.voters) written.push(await writeRead(c, m));
  const before = new Map(c.voters.map((m) => [m.id, keysFile(m)?.raft_applied_index ?? 0]));

  const r = await c.encryption(VERB[kind], await c.leader());
  const exits: string[] = [];
  const end = Date.now() + 20_000;
  for (const m of c.voters) {
    const exit = await c.exited(m, Math.max(1_000, end - Date.now())).catch(() => undefined);
    if (exit === undefined) {
      await c.kill(m);
      exits.push(`${m.id}: killed by the test`);
    } else {
      expect(exit.signal, m.id).toBe('SIGKILL');
      exits.push(`${m.id}: fault`);
    }
  }
  expect(exits.filter((e) => e.endsWith('fault')).length).toBeGreaterThanOrEqual(1);
  for (const m of c.voters) {
    const applied = keysFile(m)?.raft_applied_index ?? 0;
    if (point === 'before' || exits.includes(`${m.id}: killed by the test`)) expect(applied, m.id).toBe(before.get(m.id));
    else expect(applied, m.id).toBeGreaterThan(before.get(m.id)!);
  }

  await Promise.all(c.voters.map((m) => c.restart(m)));
  await c.settle(SETTLE_MS);
  const leader = await c.leader();
  const expected = await waitStatus(c, leader, (s) => phaseApplied(kind, s));
  const cutover = expected.raft_envelope_cutover_index;
  const index = keysFile(leader)!.raft_applied_index;
  for (const m of c.voters) {
    const now = await waitStatus(c, m, (s) => JSON.stringify(agreed(s)) === JSON.stringify(agreed(expected)));
    expect(agreed(now), m.id).toEqual(agreed(expected));
    const k = keysFile(m)!;
    expect(k.raft_envelope_cutover_index, m.id).toBe(cutover);
    expect(k.raft_applied_index, m.id).toBeGreaterThanOrEqual(index);
    expect(keyIds(k), m.id).toEqual(keyIds(keysFile(leader)));
  }

  const late = [];
  for (const m of c.voters) late.push(await writeRead(c, m));
  written.push(...late);
  await c.settle(SETTLE_MS);
  await expectReadableEverywhere(c, written);
  if (cutover !== null) expectWrappedInRaftLogs(c, late);
  console.log(`rollout-crash: every voter crashed ${point} its sidecar write of ${kind} (${exits.join(', ')}; CLI exit ${r.code}); entry ${index}`);
}

/** SEALKV_ROLLOUT_CRASH_ALL=1 also runs the leader at every other kind and point (about 25 s each). */
const ALL = process.env.SEALKV_ROLLOUT_CRASH_ALL === '1';
const ALL_CASES: [Kind, Point][] = KINDS.flatMap((k) => (['before', 'after'] as const).map((p): [Kind, Point] => [k, p]));
const LEADER_CASES: [Kind, Point][] = ALL ? ALL_CASES : [['enable-raft-envelope', 'after']];

describe('crash between the Raft apply of an encryption entry and its sidecar write', () => {
  it('a follower killed before (bootstrap), after (Phase 1), before (Phase 2) its sidecar write recovers, under client traffic', async () => {
    await followerRun(['before', 'after', 'before'], true);
  }, 120_000);

  it('a follower killed after (bootstrap), before (Phase 1), after (Phase 2) its sidecar write recovers', async () => {
    await followerRun(['after', 'before', 'after'], false);
  }, 120_000);

  for (const [kind, point] of LEADER_CASES) {
    it(`the leader killed ${point} its own sidecar write of ${kind}: a new leader carries the entry, the old leader converges`, async () => {
      await leaderRun(kind, point, kind === 'enable-raft-envelope');
    }, 120_000);
  }

  for (const [kind, point] of ALL ? ALL_CASES : [['enable-raft-envelope', 'before'] as [Kind, Point]]) {
    it(`every voter killed ${point} its sidecar write of ${kind}: all restart, replay it and agree`, async () => {
      await wholeClusterRun(kind, point);
    }, 120_000);
  }
});
