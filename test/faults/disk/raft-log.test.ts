// Damage to a node's Raft log on disk (SPEC §6 "Durability", §13), on a
// real 3-voter cluster in Phase 2 (log payloads are Raft envelopes) under
// client traffic. One follower is SIGKILLed and its log damaged three ways:
//   - the tail record cut short, or
//   - a bit flipped in the tail record: recovery cuts the log at the first
//     bad record and says so in the log. The node rejoins — or, when the cut
//     record was an entry it had already acknowledged, halts with
//     ErrRaftLogCorrupt (one line, exit 1) once the leader's commit index
//     runs past its log, and rejoins after the leader is restarted (a new
//     leader probes its log afresh). A crash tears only unacknowledged
//     records; damage to a whole record cannot be told from a tear;
//   - a bit flipped in a record with valid records after it (the middle of
//     the log): the node refuses to start with ErrRaftLogCorrupt, one line,
//     exit 1 — never skipping the damaged record — and the two others keep
//     every acknowledged write and keep serving.
// Each time, every acknowledged write is read back on every running member
// and the client history is checked for linearizability. Under
// SEALKV_FAULT_SOAK=1 each tail scenario runs five rounds.

import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, Traffic, encryptionOp, cliFailure, finishTraffic, type Member } from '../../support/encrypted-cluster.js';
import { recordFault } from '../support/report.js';
import { soakOr } from '../support/soak.js';
import { plainLines } from '../support/single-node.js';
import { flipByte, lastSegment, recordOffsets } from './support.js';

/** Kill-damage-restart rounds per tail scenario. */
const TAIL_ROUNDS = soakOr(1, 5);

let c: EncryptedCluster;
let traffic: Traffic;
let victim: Member;
/** Length of the traffic history when the current scenario began (the history spans all three). */
let historyFrom = 0;
/** Tail cuts after which the follower halted (it had acknowledged the cut entry) and came back under a new leader. */
let halts = 0;

/** Runs traffic while `victim` is killed, damaged by `damage`, and restarted (`restart` false: expected to refuse). */
async function damagedRestart(phase: string, damage: (segment: string, offsets: number[]) => string, restart: boolean): Promise<{ faults: number; refusal?: string }> {
  traffic.phase = phase;
  historyFrom = traffic.history.length;
  traffic.start();
  await traffic.untilAcked(30);
  await c.kill(victim);
  await traffic.untilAcked(60);
  const segment = lastSegment(victim.dataDir);
  const offsets = recordOffsets(segment);
  expect(offsets.length, `records in ${segment}`).toBeGreaterThan(3);
  const what = damage(segment, offsets);
  if (!restart) {
    const from = victim.process.output.length;
    const failed = await c.restart(victim).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failed, `${what}: the node must refuse to start`).toBeDefined();
    const { code } = await victim.process.exited(5_000).catch(() => ({ code: -1 }));
    return { faults: 1, refusal: `${code ?? 'null'}\n${victim.process.output.slice(from)}` };
  }
  const from = victim.process.output.length;
  const started = await c.restart(victim).then(
    () => true,
    () => false,
  );
  const output = (): string => victim.process.output.slice(from);
  expect(output(), `${what}: the cut is logged`).toContain('raft log: cut a torn or damaged tail record at start');
  if (started && (await rejoined())) {
    await traffic.untilAcked(90);
    return { faults: 1 };
  }
  // The cut record was an entry this follower had acknowledged: the leader's
  // commit index runs past its log and it halts, typed, rather than vote or
  // apply with a hole. A new leader probes its log afresh: restart the leader.
  const { code } = await victim.process.exited(10_000).catch(() => ({ code: victim.process.running ? -1 : 1 }));
  expect(code, output().slice(-3000)).toBe(1);
  const lines = plainLines(output()).filter((l) => l.startsWith('sealkv'));
  expect(lines, output().slice(-3000)).toHaveLength(1);
  expect(lines[0]).toMatch(/^sealkv: halted: ErrRaftLogCorrupt: /);
  halts++;
  const leader = await c.leader();
  await c.stop(leader);
  await c.restart(leader);
  await c.restart(victim);
  expect(await rejoined(), c.describe()).toBe(true);
  await traffic.untilAcked(90);
  return { faults: 1 };
}

/** Waits (bounded) until the victim has applied what the leader committed; false when it halted instead. */
async function rejoined(): Promise<boolean> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (!victim.process.running) return false;
    const ok = await c.settle(3_000).then(
      () => true,
      () => false,
    );
    if (ok && victim.process.running) return true;
  }
  return false;
}

/** Client errors other than a halting node's typed ErrRaftStopped (outcome unknown, checked as such). */
function expectOnlyHaltErrors(): void {
  expect(traffic.errors.filter((e) => !/ErrRaftStopped/.test(e))).toEqual([]);
}

beforeAll(async () => {
  c = await EncryptedCluster.start({ voters: 3 });
  for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) {
    const r = await encryptionOp(c, verb);
    expect(r.code, `${verb}: ${cliFailure(r, c)}`).toBe(0);
  }
  const leader = await c.leader();
  victim = c.voters.find((m) => m.id !== leader.id)!;
  traffic = new Traffic(c, { workers: 3, pauseMs: 5 });
}, 120_000);

afterAll(async () => {
  await traffic?.stop();
  await c?.destroy();
});

describe('Raft log damage on a real node', () => {
  /** TAIL_ROUNDS rounds of `damage` on the follower's tail; every acknowledged write read back on every member each round. */
  async function tailRounds(phase: string, damage: (segment: string, offsets: number[]) => string, scenario: string): Promise<void> {
    let faults = 0;
    let operations = 0;
    const haltsBefore = halts;
    for (let round = 0; round < TAIL_ROUNDS; round++) {
      faults += (await damagedRestart(`${phase}-${round}`, damage, true)).faults;
      const { acked, unreadable, linearizable } = await finishTraffic(c, traffic);
      expect(unreadable, c.describe()).toBe('');
      expect(linearizable).toBe('');
      expectOnlyHaltErrors();
      operations += acked.length * c.running.length + traffic.history.length - historyFrom;
    }
    recordFault({ area: 'disk', scenario: `${scenario}: ${halts - haltsBefore} of ${TAIL_ROUNDS} halted ErrRaftLogCorrupt, then rejoined`, faults, operations, anomalies: 0 });
  }

  it('a tail record cut short is truncated at start; the node rejoins (or halts typed and rejoins under a new leader); every acknowledged write is kept', async () => {
    await tailRounds(
      'torn-tail',
      (segment, offsets) => {
        const last = offsets.at(-1)!;
        const size = fs.statSync(segment).size;
        fs.truncateSync(segment, last + Math.max(1, Math.floor((size - last) * Math.random())));
        return `cut at ${last}+`;
      },
      'Raft log tail cut short (follower, Phase 2, under traffic)',
    );
  }, 120_000 * TAIL_ROUNDS);

  it('a bit flipped in the tail record is truncated at start; the node rejoins (or halts typed and rejoins under a new leader); every acknowledged write is kept', async () => {
    await tailRounds(
      'flipped-tail',
      (segment, offsets) => {
        const last = offsets.at(-1)!;
        const at = last + 12 + Math.floor(Math.random() * (fs.statSync(segment).size - last - 12));
        flipByte(segment, at);
        return `flip at ${at}`;
      },
      'bit flipped in the Raft log tail record (follower, Phase 2)',
    );
  }, 120_000 * TAIL_ROUNDS);

  it('a bit flipped in the middle of the log stops the node with ErrRaftLogCorrupt; the others keep every acknowledged write', async () => {
    const { faults, refusal } = await damagedRestart(
      'flipped-middle',
      (segment, offsets) => {
        const middle = offsets[Math.floor(offsets.length / 2)]!;
        flipByte(segment, middle + 12 + 1);
        return `flip at ${middle + 13} of ${offsets.length} records`;
      },
      false,
    );
    const [code, ...rest] = refusal!.split('\n');
    expect(code, rest.join('\n')).toBe('1');
    // The one line the refusal writes (the AWS SDK may add its own runtime warnings to stderr).
    const lines = plainLines(rest.join('\n')).filter((l) => l.startsWith('sealkv'));
    expect(lines, rest.join('\n').slice(-3000)).toHaveLength(1);
    expect(lines[0]).toMatch(/^sealkv: cannot start: ErrRaftLogCorrupt: /);
    expect(victim.process.running).toBe(false);
    const { acked, unreadable, linearizable } = await finishTraffic(c, traffic);
    expect(c.running).toHaveLength(2);
    expect(unreadable, c.describe()).toBe('');
    expect(linearizable).toBe('');
    expectOnlyHaltErrors();
    recordFault({ area: 'disk', scenario: 'bit flipped mid-log: ErrRaftLogCorrupt, majority keeps every write', faults, operations: acked.length * c.running.length + traffic.history.length - historyFrom, anomalies: 0 });
  }, 120_000);
});
