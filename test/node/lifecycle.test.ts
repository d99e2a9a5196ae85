// The key lifecycle end to end with real processes (SPEC §3.3, §4.2, §8.5,
// §12; issue 7 items 1, 2, 3, 6, 7): 3 voters with the KEK in the loopback
// KMS-protocol server, client traffic through every node, Phase 1 and 2,
// two storage rotations and one raft rotation, a KEK rewrap to a second KMS
// key and a restart of every node with it, kill -9 of a node after each
// step; then --encryption-rotate-on-startup, the /metrics surface and a node
// that was down through a rewrap, on the same cluster; and, on a single node
// with a lowered write ceiling, the automatic rotation at 90% and the
// refusal at 100% (the raft DEK, sealed at propose: the client gets
// ErrWriteCeilingReached and the node keeps serving); on 3 voters the
// storage DEK, sealed at apply, reaches it first and every replica halts with
// ErrWriteCeilingReached at that entry: no acknowledged write is lost and a
// restart with the right KEK brings the cluster back.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, finishTraffic, sleep, withFlag, withKekUri, type CliResult, type Member } from '../support/encrypted-cluster.js';

interface EncStatus {
  phase: string;
  active: { storage?: number; raft?: number };
  keys_present: number[];
  versions_per_key_id?: Record<string, number>;
  sidecar_raft_applied_index: number | null;
}

/** What the failure of a CLI call says, with the cluster's output. */
function why(r: CliResult, c: EncryptedCluster): string {
  return `exit ${r.code}\n${r.stdout}\n${r.stderr}\n${c.describe()}`;
}

async function encStatus(c: EncryptedCluster, m: Member, verify = false): Promise<EncStatus> {
  const r = await c.encryption('status', m, true, verify ? ['--verify'] : []);
  if (r.code !== 0) throw new Error(`status on ${m.id}: ${why(r, c)}`);
  const json = JSON.parse(r.stdout) as Record<string, unknown>;
  return ((json.encryption as EncStatus | undefined) ?? json) as EncStatus;
}

/** An encryption verb through `via`, retried (bounded) while no leader is known or the leader changes. */
async function op(c: EncryptedCluster, verb: string, via: Member, extra: string[] = []): Promise<CliResult> {
  const end = Date.now() + 30_000;
  for (;;) {
    const r = await c.encryption(verb, via, true, extra);
    if (r.code === 0 || !/ErrNotLeader|ErrTimeout|ErrProposalDropped|ECONNREFUSED/.test(r.stderr) || Date.now() > end) return r;
    await sleep(300);
  }
}

/** Waits (bounded) until `check` holds for the status of `m`. */
async function until(c: EncryptedCluster, m: Member, what: string, check: (s: EncStatus) => boolean, ms = 20_000): Promise<EncStatus> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await encStatus(c, m).catch(() => undefined);
    if (s !== undefined && check(s)) return s;
    if (Date.now() > end) throw new Error(`${m.id}: ${what} not reached in ${ms} ms: ${JSON.stringify(s)}\n${c.describe()}`);
    await sleep(200);
  }
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

let cluster: EncryptedCluster | undefined;
let traffic: Traffic | undefined;
let single: EncryptedCluster | undefined;
let trio: EncryptedCluster | undefined;
const CEILING = 60;
/** SPEC §12's list, as written there (labels in braces). */
const METRICS = (
  'sealkv_encryption_active_dek_id{purpose} sealkv_encryption_decrypt_failures_total{reason} sealkv_encryption_writes_per_dek{key_id} ' +
  'sealkv_encryption_last_proposed_index_per_raft_dek{key_id} sealkv_encryption_value_overhead_bytes sealkv_encryption_kek_unwrap_seconds ' +
  'sealkv_encryption_sidecar_raft_index'
)
  .split(' ')
  .map((m) => m.replace(/\{.*\}$/, ''));

describe('key lifecycle on a 3-voter cluster of real processes', () => {
  afterAll(async () => {
    await traffic?.stop();
    await cluster?.destroy();
  });

  it('rotates two storage DEKs and one raft DEK, then rewraps to a second KMS key, under traffic with kill -9 after each step', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 3 }));
    const oldKek = c.kekUri;
    const newKek = c.kms.uri(c.kms.createKey('sealkv-lifecycle-second').keyId);
    const t = (traffic = new Traffic(c, { workers: 3, pauseMs: 5 }));
    const storageDeks = new Set<number>();
    let victimIsLeader = false;

    /** kill -9 of the leader or a follower (alternating), traffic through the others, restart (with new args when given). */
    const killAndRestart = async (label: string, edit?: (args: string[]) => string[]): Promise<void> => {
      const leader = await c.leader();
      const victim = victimIsLeader ? leader : c.voters.find((m) => m.id !== leader.id)!;
      victimIsLeader = !victimIsLeader;
      await c.kill(victim);
      t.phase = `${label}-down`;
      await t.untilAcked(15, 30_000);
      await c.restart(edit === undefined ? victim : c.reconfigure(victim, edit));
      await c.settle();
    };
    const step = async (label: string, verb: string, extra: string[] = []): Promise<EncStatus> => {
      t.phase = label;
      const via = c.running[Math.floor(Math.random() * c.running.length)]!;
      const r = await op(c, verb, via, extra);
      expect(r.code, why(r, c)).toBe(0);
      await t.untilAcked(20, 30_000);
      const s = await encStatus(c, await c.leader());
      if (s.active.storage !== undefined) storageDeks.add(s.active.storage);
      return s;
    };

    t.phase = 'cleartext';
    t.start();
    await t.untilAcked(30);

    const p1 = await step('phase1', 'enable-storage-envelope');
    expect(p1.phase).toBe('storage-envelope');
    await killAndRestart('phase1');
    const p2 = await step('phase2', 'enable-raft-envelope');
    expect(p2.phase).toBe('raft-envelope');
    await killAndRestart('phase2');

    const s1 = await step('rotate-storage-1', 'rotate-dek', ['--purpose', 'storage']);
    expect(s1.active.storage).not.toBe(p2.active.storage);
    expect(s1.active.raft).toBe(p2.active.raft);
    await killAndRestart('rotate-storage-1');
    const s2 = await step('rotate-storage-2', 'rotate-dek', ['--purpose', 'storage']);
    expect(s2.active.storage).not.toBe(s1.active.storage);
    await killAndRestart('rotate-storage-2');
    const r1 = await step('rotate-raft', 'rotate-dek', ['--purpose', 'raft']);
    expect(r1.active.raft).not.toBe(s2.active.raft);
    expect(r1.active.storage).toBe(s2.active.storage);
    await killAndRestart('rotate-raft');

    // KEK rotation: every DEK wrapped under the second KMS key, key bytes unchanged.
    const rw = await step('rewrap', 'rewrap-deks', ['--kek-uri', newKek]);
    expect(rw.active).toEqual(r1.active);
    // While the leader still runs the old KEK, rotate-dek is refused.
    const refused = await c.encryption('rotate-dek', await c.leader(), true, ['--purpose', 'storage']);
    expect(refused.code, why(refused, c)).not.toBe(0);
    expect(refused.stderr).toContain('ErrKEKMismatch');
    // The node killed now must come back with the new KEK; then every other node, one at a time.
    await killAndRestart('rewrap', (args) => withKekUri(args, newKek));
    for (const m of c.voters) {
      if (m.process.args.includes(newKek)) continue;
      t.phase = `kek-restart-${m.id}`;
      await c.stop(m);
      await c.restart(c.reconfigure(m, (args) => withKekUri(args, newKek)));
      await c.settle();
    }
    expect(c.voters.every((m) => m.process.args.includes(newKek))).toBe(true);
    // Under the new KEK rotations work again.
    const s3 = await step('rotate-storage-3', 'rotate-dek', ['--purpose', 'storage']);
    expect(s3.active.storage).not.toBe(s2.active.storage);

    // A start with the OLD KEK is refused (and leaves the node's data alone).
    const leader = await c.leader();
    const follower = c.voters.find((m) => m.id !== leader.id)!;
    await c.stop(follower);
    const old = await c.cli(['start', ...withKekUri(follower.process.args, oldKek)], 30_000);
    expect(old.code, why(old, c)).not.toBe(0);
    expect(old.code).not.toBe(-1);
    expect(old.stderr + old.stdout).toContain('ErrKEKMismatch');
    await c.restart(follower);

    t.phase = 'end';
    await t.untilAcked(20);
    const { acked, unreadable, linearizable } = await finishTraffic(c, t);
    expect(t.errors).toEqual([]);
    expect(unreadable).toBe('');
    expect(linearizable).toBe('');

    expect(storageDeks.size).toBe(4);
    const finals = await Promise.all(c.voters.map((m) => encStatus(c, m, true)));
    for (const [i, s] of finals.entries()) {
      expect(s.active, c.voters[i]!.id).toEqual(finals[0]!.active);
      for (const keyId of storageDeks) expect(s.versions_per_key_id?.[String(keyId)] ?? 0, `${c.voters[i]!.id}: versions under ${keyId}: ${JSON.stringify(s.versions_per_key_id)}`).toBeGreaterThan(0);
      expect(s.keys_present.length).toBe(6);
    }
    console.log(
      `lifecycle: ${acked.length} acknowledged writes, ${t.history.length} operations linearizable; versions per key_id on ${c.voters[0]!.id}: ${JSON.stringify(finals[0]!.versions_per_key_id)}`,
    );
  }, 150_000);

  it('--encryption-rotate-on-startup: the node that leads rotates each active purpose once, followers do not block', async () => {
    const c = cluster!;
    const before = await encStatus(c, await c.leader());
    await Promise.all(c.voters.map((m) => c.stop(m)));
    for (const m of [...c.voters]) c.reconfigure(m, (args) => withFlag(args, '--encryption-rotate-on-startup'));
    const from = new Map(c.voters.map((m) => [m.id, m.process.output.length]));
    // Every node gets ready, the followers included (they keep the request pending).
    await Promise.all(c.voters.map((m) => c.restart(m)));
    const leader = await c.leader();
    const after = await until(c, leader, 'both purposes rotated', (s) => s.active.storage !== before.active.storage && s.active.raft !== before.active.raft);
    const t = new Traffic(c);
    await t.writeBatch(9);
    await sleep(1_000);
    await c.settle();
    for (const m of c.voters) {
      const s = await encStatus(c, m);
      expect(s.active, m.id).toEqual(after.active);
      // Exactly one new DEK per purpose.
      expect(s.keys_present.length, m.id).toBe(before.keys_present.length + 2);
    }
    const rotations = c.voters.map((m) => count(m.process.output.slice(from.get(m.id)), '"msg":"DEK rotated"'));
    expect(rotations.reduce((a, b) => a + b, 0), c.describe()).toBe(2);
    expect(await c.unreadable(t.acked())).toBe('');
  }, 60_000);

  it('/metrics exports every sealkv_encryption_* metric of SPEC §12 with values that match the status', async () => {
    const c = cluster!;
    const token = fs.readFileSync(c.tokenFile, 'utf8').trim();
    for (const m of c.voters) {
      const url = `http://127.0.0.1:${m.admin}/metrics`;
      expect((await fetch(url, { signal: AbortSignal.timeout(5_000) })).status).toBe(401);
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
      expect(res.status).toBe(200);
      const text = await res.text();
      const samples = new Map<string, number>();
      for (const line of text.split('\n')) {
        const match = /^(sealkv_encryption_\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (match !== null) samples.set(match[1]!, Number(match[2]));
      }
      const value = (name: string): number | undefined => samples.get(name);
      const s = await encStatus(c, m);
      const raftApplied = (s as unknown as { raft_applied_index: number }).raft_applied_index;
      for (const name of METRICS) expect(text, `${m.id}: ${name}`).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
      expect(value(`sealkv_encryption_active_dek_id{purpose="storage"}`), text).toBe(s.active.storage);
      expect(value(`sealkv_encryption_active_dek_id{purpose="raft"}`), text).toBe(s.active.raft);
      const failures = [...samples].filter(([k]) => k.startsWith('sealkv_encryption_decrypt_failures_total'));
      for (const [k, v] of failures) expect(v, k).toBe(0);
      expect(value(`sealkv_encryption_writes_per_dek{key_id="${s.active.storage}"}`), text).toBeGreaterThan(0);
      const lastRaft = value(`sealkv_encryption_last_proposed_index_per_raft_dek{key_id="${s.active.raft}"}`) ?? 0;
      expect(lastRaft, text).toBeGreaterThan(0);
      expect(lastRaft).toBeLessThanOrEqual(raftApplied);
      expect(value('sealkv_encryption_value_overhead_bytes'), text).toBeGreaterThan(0);
      expect(value('sealkv_encryption_kek_unwrap_seconds_count'), text).toBeGreaterThanOrEqual(s.keys_present.length);
      const sidecar = value('sealkv_encryption_sidecar_raft_index') ?? 0;
      expect(sidecar, text).toBeGreaterThan(0);
      expect(sidecar).toBeLessThanOrEqual(raftApplied);
      expect(text).not.toContain('wrapped');
    }
  }, 30_000);

  it('a node down through rewrap-deks starts once more with the old KEK to replay it, then with the new one', async () => {
    const c = cluster!;
    const current = c.voters[0]!.process.args[c.voters[0]!.process.args.indexOf('--kek-uri') + 1]!;
    const third = c.kms.uri(c.kms.createKey('sealkv-lifecycle-third').keyId);
    const leader = await c.leader();
    const down = c.voters.find((m) => m.id !== leader.id)!;
    await c.kill(down);
    const t = new Traffic(c);
    await t.writeBatch(5);
    const rw = await op(c, 'rewrap-deks', leader, ['--kek-uri', third]);
    expect(rw.code, why(rw, c)).toBe(0);
    await t.writeBatch(5);
    // Its sidecar is still wrapped under the KEK it ran with: the new one cannot open it.
    const early = await c.cli(['start', ...withKekUri(down.process.args, third)], 30_000);
    expect(early.code, why(early, c)).not.toBe(0);
    expect(early.code).not.toBe(-1);
    expect(early.stderr).toContain('ErrKEKMismatch');
    // With the old KEK it starts and replays the rewrap from the log ...
    await c.restart(down);
    await c.settle();
    const rewrapIndex = (JSON.parse(rw.stdout) as EncStatus).sidecar_raft_applied_index ?? Infinity;
    await until(c, down, 'the rewrap replayed', (s) => (s.sidecar_raft_applied_index ?? 0) >= rewrapIndex);
    // ... and from then on only the new KEK opens it: every node restarts with it (without rotate-on-startup now).
    for (const m of [...c.voters]) {
      await c.stop(m);
      await c.restart(c.reconfigure(m, (args) => withFlag(withKekUri(args, third), '--encryption-rotate-on-startup', false)));
      await c.settle();
    }
    const stale = c.voters[0]!;
    await c.stop(stale);
    const old = await c.cli(['start', ...withKekUri(stale.process.args, current)], 30_000);
    expect(old.stderr, why(old, c)).toContain('ErrKEKMismatch');
    await c.restart(stale);
    await c.settle();
    expect(await c.unreadable(t.acked())).toBe('');
  }, 90_000);
});

describe('automatic rotation at the write ceiling (SEALKV_TEST_WRITE_CEILING)', () => {
  afterAll(async () => {
    await single?.destroy();
    await trio?.destroy();
  });

  /** A cluster through both phases, then restarted with the lowered ceiling (per (DEK, process): a new process). */
  const ceilingCluster = async (voters: number): Promise<EncryptedCluster> => {
    const c = await EncryptedCluster.start({ voters });
    if (voters === 1) single = c;
    else trio = c;
    await c.leader();
    for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) {
      const r = await op(c, verb, c.members[0]!);
      expect(r.code, why(r, c)).toBe(0);
    }
    await c.settle();
    for (const m of [...c.members]) {
      await c.stop(m);
      c.reconfigure(m, (args) => args, { SEALKV_TEST_WRITE_CEILING: String(CEILING) });
    }
    await Promise.all(c.members.map((m) => c.restart(m)));
    await c.leader();
    return c;
  };

  it('rotates the storage DEK by itself at 90%, then refuses to seal at 100% when the rotation cannot happen', async () => {
    const c = (single = await ceilingCluster(1));
    let node = c.members[0]!;
    const before = await encStatus(c, node);
    const t = new Traffic(c);
    t.phase = 'auto';
    const from = node.process.output.length;
    let after = before;
    for (let i = 0; i < 4 && after.active.storage === before.active.storage; i++) {
      await t.writeBatch(CEILING / 2);
      after = await encStatus(c, node);
    }
    expect(after.active.storage).not.toBe(before.active.storage);
    const log = node.process.output.slice(from);
    expect(log).toContain(`"key_id":${before.active.storage},"purpose":"storage","msg":"DEK near its write ceiling: proposing rotate-dek"`);
    expect(log).toContain(`"key_id":${after.active.storage},"previous_key_id":${before.active.storage},"msg":"DEK rotated"`);
    expect(await c.unreadable(t.acked())).toBe('');

    // Rewrapped to another KEK without a restart: rotate-dek is refused (the node runs the old KEK),
    // so the next automatic rotation cannot happen and the DEKs run into the ceiling.
    const second = c.kms.uri(c.kms.createKey('sealkv-ceiling-second').keyId);
    const rw = await op(c, 'rewrap-deks', node, ['--kek-uri', second]);
    expect(rw.code, why(rw, c)).toBe(0);
    let refusal: unknown;
    for (let i = 0; i < CEILING * 3 && refusal === undefined; i++) {
      await c.client(node).set(`ceiling-${i}`, `value-${i}`).catch((err: unknown) => (refusal = err));
    }
    // On a single node the raft DEK (sealed when the leader proposes) reaches it first: the client
    // gets the code and the node goes on serving reads.
    expect(String(refusal)).toContain('ErrWriteCeilingReached');
    expect(node.process.running).toBe(true);
    expect(node.process.output.slice(from)).toContain('ErrKEKMismatch');
    expect(await c.unreadable(t.acked())).toBe('');

    // Recovery: restart with the new KEK (a new process: fresh counters), then rotation works again.
    await c.stop(node);
    node = c.reconfigure(node, (args) => withKekUri(args, second));
    await c.restart(node);
    const rotated = await op(c, 'rotate-dek', node, ['--purpose', 'storage']);
    expect(rotated.code, why(rotated, c)).toBe(0);
    await t.writeBatch(10);
    expect(await c.unreadable(t.acked())).toBe('');
  }, 90_000);

  it('on 3 voters a storage DEK at the ceiling stops apply on every replica; no acknowledged write is lost and a restart with the right KEK recovers', async () => {
    const c = await ceilingCluster(3);
    // Rotation blocked (the nodes run the old KEK after the rewrap).
    const second = c.kms.uri(c.kms.createKey('sealkv-ceiling-apply').keyId);
    const rw = await op(c, 'rewrap-deks', c.members[0]!, ['--kek-uri', second]);
    expect(rw.code, why(rw, c)).toBe(0);
    // Writes through every node in turn: every replica seals every value at apply under the storage
    // DEK, while the raft DEK is sealed only by the node that proposes, so the storage DEK gets there first.
    const t = new Traffic(c);
    let refusal = '';
    for (let i = 0; i < CEILING * 2 && refusal === ''; i++) await t.burst(1, c.members[i % c.members.length]!).catch((err: unknown) => (refusal = String(err)));
    expect(refusal, 'no write failed').not.toBe('');
    const end = Date.now() + 15_000;
    while (c.running.length > 0 && !refusal.includes('ErrWriteCeilingReached') && Date.now() < end) await sleep(100);
    const halted = c.members.filter((m) => !m.process.running && m.process.output.includes('halted: ErrWriteCeilingReached'));
    console.log(`storage DEK at the ceiling on 3 voters: client saw "${refusal.slice(0, 120)}"; halted with ErrWriteCeilingReached: ${halted.map((m) => m.id).join(', ') || 'none'}`);
    expect(refusal.includes('ErrWriteCeilingReached') || halted.length === c.members.length, c.describe()).toBe(true);
    for (const m of [...c.members]) {
      await c.stop(m);
      await c.restart(c.reconfigure(m, (args) => withKekUri(args, second)));
    }
    await c.settle();
    await t.writeBatch(5);
    expect(await c.unreadable(t.acked())).toBe('');
    const actives = await Promise.all(c.members.map(async (m) => (await encStatus(c, m)).active));
    for (const a of actives) expect(a).toEqual(actives[0]);
  }, 90_000);
});
