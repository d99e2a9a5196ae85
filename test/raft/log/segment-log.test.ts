// The durable Raft log: round trips, suffix overwrite, rotation and deletion
// after compaction, torn tails cut on reopen, damage in the middle refused
// with ErrRaftLogCorrupt, a SIGKILL test against a child that appends
// with fsync, and SegmentLog.read (the read-only recovery for offline tools:
// the same view as open(), not a byte of the directory changed).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSealError } from '../../../src/errors/index.js';
import { SegmentLog } from '../../../src/raft/log/index.js';
import type { Entry } from '../../../src/raft/index.js';
import { entryData } from './entry-data.js';
import { distScript } from '../../support/dist.js';
import { recordFault } from '../../faults/support/report.js';

const VOTERS = { voters: [1, 2, 3], learners: [] };
const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-raftlog-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function ents(first: number, last: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = first; i <= last; i++) out.push({ index: i, term, type: 'normal', data: entryData(i, term) });
  return out;
}

function expectEntries(log: SegmentLog, first: number, last: number, termOf: (i: number) => number): void {
  const got = log.entries(first, last + 1, Number.MAX_SAFE_INTEGER);
  expect(got.length).toBe(last - first + 1);
  for (const e of got) {
    expect(e.term).toBe(termOf(e.index));
    expect(Buffer.from(e.data).equals(Buffer.from(entryData(e.index, e.term)))).toBe(true);
  }
}

function segFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort().map((n) => path.join(dir, n));
}

async function expectCorrupt(dir: string): Promise<void> {
  const err = await SegmentLog.open({ dir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSealError(err, 'ErrRaftLogCorrupt')).toBe(true);
}

describe('SegmentLog', () => {
  it('bootstraps, saves entries and hard state, and reads them back after reopen', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    expect(log.snapshot()).toEqual({ index: 1, term: 1, confState: VOTERS });
    expect(log.initialState().hardState).toEqual({ term: 1, vote: 0, commit: 1 });
    await log.save({ entries: ents(2, 10, 2), hardState: { term: 2, vote: 3, commit: 5 } }, true);
    await log.close();
    const again = await SegmentLog.open({ dir, bootstrap: { voters: [9], learners: [] } });
    expect(again.firstIndex()).toBe(2);
    expect(again.lastIndex()).toBe(10);
    expect(again.term(1)).toBe(1);
    expect(again.initialState()).toEqual({ hardState: { term: 2, vote: 3, commit: 5 }, confState: VOTERS });
    expectEntries(again, 2, 10, () => 2);
    expect(again.entries(2, 11, 100).length).toBe(1); // at least one entry, then the byte limit
    expect(() => again.entries(1, 3, 1000)).toThrow(RangeError);
    await again.close();
  });

  it('an append at a lower index replaces the conflicting suffix, durably', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 20, 2) }, true);
    await log.save({ entries: ents(15, 17, 3), hardState: { term: 3, vote: 2, commit: 14 } }, true);
    expect(log.lastIndex()).toBe(17);
    await log.close();
    const again = await SegmentLog.open({ dir });
    expect(again.lastIndex()).toBe(17);
    expectEntries(again, 2, 17, (i) => (i >= 15 ? 3 : 2));
    await expect(again.save({ entries: ents(19, 19, 3) }, true)).rejects.toThrow(RangeError); // a gap, refused before writing
    await expect(again.save({ entries: [...ents(18, 18, 3), ...ents(20, 20, 3)] }, true)).rejects.toThrow(RangeError);
    await again.close();
  });

  it('rotates segments, deletes those a compaction covers, and reads evicted entries from disk', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS, segmentBytes: 4096, cacheBytes: 2048 });
    for (let i = 2; i <= 400; i += 10) await log.save({ entries: ents(i, i + 9, 2) }, false);
    expect(segFiles(dir).length).toBeGreaterThan(10);
    expectEntries(log, 2, 401, () => 2); // most of these come from disk (cache is 2 KiB)
    const before = segFiles(dir).length;
    await log.compact(300, VOTERS);
    expect(log.firstIndex()).toBe(301);
    expect(segFiles(dir).length).toBeLessThan(before);
    expect(log.term(300)).toBe(2);
    await log.close();
    const again = await SegmentLog.open({ dir, segmentBytes: 4096 });
    expect(again.snapshot().index).toBe(300);
    expect(again.firstIndex()).toBe(301);
    expectEntries(again, 301, 401, () => 2);
    await again.close();
  });

  it('installing a snapshot replaces the whole log', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 50, 2) }, true);
    const snap = { index: 40, term: 5, confState: { voters: [1, 2], learners: [3] } };
    await log.save({ snapshot: snap, entries: ents(41, 42, 5), hardState: { term: 5, vote: 0, commit: 40 } }, true);
    await log.close();
    const again = await SegmentLog.open({ dir });
    expect(again.snapshot()).toEqual(snap);
    expect(again.lastIndex()).toBe(42);
    expectEntries(again, 41, 42, () => 5);
    await again.close();
  });

  it('cuts a torn tail (a record cut short at any byte) and keeps everything before it', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 30, 2) }, true);
    await log.close();
    const file = segFiles(dir).at(-1)!;
    const full = fs.readFileSync(file);
    const lastRecord = 12 + 18 + entryData(30, 2).length;
    for (const cut of [1, 5, 12, 20, lastRecord - 1]) {
      fs.writeFileSync(file, full.subarray(0, full.length - cut));
      const again = await SegmentLog.open({ dir });
      expect(again.lastIndex()).toBe(29);
      expectEntries(again, 2, 29, () => 2);
      await again.save({ entries: ents(30, 30, 2) }, true);
      await again.close();
      // Restore the layout of this round for the next cut.
      for (const f of segFiles(dir)) if (f !== file) fs.rmSync(f);
    }
    recordFault({ area: 'disk', scenario: 'SegmentLog: torn tail cut at 5 offsets (unit)', faults: 5, operations: 5 * 28, anomalies: 0 });
  });

  it('cuts trailing zeros and garbage that holds no valid record', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 9, 2) }, true);
    await log.close();
    const file = segFiles(dir).at(-1)!;
    fs.appendFileSync(file, Buffer.alloc(4096));
    fs.appendFileSync(file, Buffer.from('SKRL\x00\x00\x00\x05garbage'));
    const again = await SegmentLog.open({ dir });
    expect(again.lastIndex()).toBe(9);
    await again.close();
  });

  it('a log whose creation was cut short starts anew', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.close();
    const file = segFiles(dir)[0]!;
    fs.writeFileSync(file, fs.readFileSync(file).subarray(0, 20)); // inside the Head
    const again = await SegmentLog.open({ dir, bootstrap: VOTERS });
    expect(again.snapshot().index).toBe(1);
    expect(again.lastIndex()).toBe(1);
    await again.close();
  });

  it('a flipped bit before valid records is ErrRaftLogCorrupt, wherever it is', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 30, 2) }, true);
    await log.close();
    const file = segFiles(dir).at(-1)!;
    const pristine = fs.readFileSync(file);
    // Offsets inside the 5th entry record: magic, length, crc, type, index, data.
    let recordStart = 0;
    let off = 0;
    for (let k = 0; k < 3 + 5; k++) {
      recordStart = off;
      off += 12 + pristine.readUInt32BE(off + 4);
    }
    for (const at of [0, 4, 7, 9, 12, 13, 20, 31, 40]) {
      const bad = Buffer.from(pristine);
      bad[recordStart + at]! ^= 0x10;
      fs.writeFileSync(file, bad);
      await expectCorrupt(dir);
    }
    recordFault({ area: 'disk', scenario: 'SegmentLog: bit flipped mid-log at 9 offsets is ErrRaftLogCorrupt (unit)', faults: 9, operations: 9, anomalies: 0 });
  });

  it('damage in an earlier segment or a missing segment is ErrRaftLogCorrupt', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS, segmentBytes: 2048 });
    for (let i = 2; i <= 200; i += 10) await log.save({ entries: ents(i, i + 9, 2) }, true);
    await log.close();
    const files = segFiles(dir);
    expect(files.length).toBeGreaterThan(3);
    const victim = files[1]!;
    const pristine = fs.readFileSync(victim);
    const bad = Buffer.from(pristine);
    bad[bad.length - 3]! ^= 1; // last record of a sealed segment: not a torn tail
    fs.writeFileSync(victim, bad);
    await expectCorrupt(dir);
    fs.writeFileSync(victim, pristine);
    fs.rmSync(files[2]!);
    await expectCorrupt(dir);
  });
});

describe('SegmentLog under SIGKILL', () => {
  const rounds = Number(process.env.RAFT_LOG_KILL_ROUNDS ?? 12);

  it(`keeps every acknowledged entry and a clean tail over ${rounds} kills`, async () => {
    const dir = tmpDir();
    const script = distScript('test/raft/log/append-child.js');
    // index -> term of the log as verified after the previous kill.
    let known = new Map<number, number>();
    let checked = 0;
    for (let round = 0; round < rounds; round++) {
      const child = spawn(process.execPath, [script, dir, String(round + 1)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let acks = 0;
      const killAfter = 5 + Math.floor(Math.random() * 200);
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          acks = out.split('\nack').length - 1;
          if (acks >= killAfter && child.exitCode === null && !child.killed) child.kill('SIGKILL');
        });
        child.on('exit', () => resolve());
        child.on('error', reject);
        setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
      });
      // Replay what the child was told: the acknowledged log, and the save in flight.
      const acked = new Map(known);
      let pending: { first: number; last: number; term: number } | undefined;
      for (const line of out.split('\n')) {
        const m = /^try (\d+) (\d+) (\d+)$/.exec(line);
        if (m !== null) pending = { first: Number(m[1]), last: Number(m[2]), term: Number(m[3]) };
        else if (line === 'ack' && pending !== undefined) {
          for (const k of [...acked.keys()]) if (k >= pending.first) acked.delete(k);
          for (let i = pending.first; i <= pending.last; i++) acked.set(i, pending.term);
          pending = undefined;
        }
      }
      const log = await SegmentLog.open({ dir });
      const ackedLast = Math.max(0, ...acked.keys());
      expect(log.firstIndex()).toBeLessThanOrEqual(ackedLast + 1);
      let sawPending = false;
      for (let i = log.firstIndex(); i <= log.lastIndex(); i++) {
        const [e] = log.entries(i, i + 1, Infinity);
        const fromPending = pending !== undefined && i >= pending.first && i <= pending.last && e!.term === pending.term;
        if (fromPending) sawPending = true;
        else expect(e!.term, `entry ${i} after kill round ${round}`).toBe(acked.get(i));
        expect(Buffer.from(e!.data).equals(Buffer.from(entryData(i, e!.term)))).toBe(true);
        checked++;
      }
      if (!sawPending) expect(log.lastIndex()).toBe(ackedLast);
      known = new Map();
      for (let i = log.firstIndex(); i <= log.lastIndex(); i++) known.set(i, log.term(i));
      await log.close();
    }
    recordFault({ area: 'disk', scenario: 'SegmentLog: appender SIGKILLed mid-save (unit)', faults: rounds, operations: checked, anomalies: 0 });
  }, 30_000 + rounds * 2_000);
});

/** Every file of the directory with a hash of its bytes. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) out[name] = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex');
  return out;
}

describe('SegmentLog.read', () => {
  it('reads entries, hard state and the compaction point across segments, changing nothing', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS, segmentBytes: 2048 });
    for (let i = 2; i < 60; i += 10) await log.save({ entries: ents(i, i + 9, 2) }, true);
    await log.save({ entries: ents(60, 60, 2), hardState: { term: 2, vote: 1, commit: 55 } }, true);
    await log.compact(20, VOTERS);
    await log.save({ entries: ents(61, 70, 3), hardState: { term: 3, vote: 1, commit: 68 } }, true);
    await log.close();
    const before = fingerprint(dir);
    expect(Object.keys(before).length).toBeGreaterThan(1);

    const ro = await SegmentLog.read(dir);
    expect(ro.firstIndex()).toBe(21);
    expect(ro.lastIndex()).toBe(70);
    expect(ro.initialState().hardState).toEqual({ term: 3, vote: 1, commit: 68 });
    const got = ro.entries(21, 71, Number.MAX_SAFE_INTEGER);
    expect(got.map((e) => e.index)).toEqual(Array.from({ length: 50 }, (_, i) => i + 21));
    for (const e of got) expect(Buffer.from(e.data).equals(Buffer.from(entryData(e.index, e.index > 60 ? 3 : 2)))).toBe(true);
    await expect(ro.save({ entries: ents(71, 71, 3) }, true)).rejects.toSatisfy((err) => isSealError(err, 'ErrRaftStopped'));
    await expect(ro.compact(30, VOTERS)).rejects.toSatisfy((err) => isSealError(err, 'ErrRaftStopped'));
    await ro.close();
    expect(fingerprint(dir)).toEqual(before);

    // The same view as a normal open (which does change the directory).
    const rw = await SegmentLog.open({ dir });
    expect([rw.firstIndex(), rw.lastIndex()]).toEqual([21, 70]);
    await rw.close();
  });

  it('ignores a torn tail without cutting it, where open() would cut it', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS });
    await log.save({ entries: ents(2, 30, 2) }, true);
    await log.close();
    const file = path.join(dir, fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort().at(-1)!);
    const full = fs.readFileSync(file);
    fs.writeFileSync(file, full.subarray(0, full.length - 5));
    const before = fingerprint(dir);
    const ro = await SegmentLog.read(dir);
    expect(ro.lastIndex()).toBe(29);
    expect(ro.entries(29, 30, 1 << 20)[0]!.data).toEqual(entryData(29, 2));
    await ro.close();
    expect(fingerprint(dir)).toEqual(before);
  });

  it('reads a missing or empty directory as an empty log without creating anything', async () => {
    const parent = tmpDir();
    const missing = path.join(parent, 'no-log');
    const ro = await SegmentLog.read(missing);
    expect([ro.firstIndex(), ro.lastIndex()]).toEqual([1, 0]);
    await ro.close();
    expect(fs.existsSync(missing)).toBe(false);
    const empty = path.join(parent, 'empty');
    fs.mkdirSync(empty);
    const ro2 = await SegmentLog.read(empty);
    expect(ro2.lastIndex()).toBe(0);
    await ro2.close();
    expect(fs.readdirSync(empty)).toEqual([]);
  });

  it('still refuses damage in the middle of the log with ErrRaftLogCorrupt', async () => {
    const dir = tmpDir();
    const log = await SegmentLog.open({ dir, bootstrap: VOTERS, segmentBytes: 2048 });
    for (let i = 2; i <= 100; i += 10) await log.save({ entries: ents(i, i + 9, 2) }, true);
    await log.close();
    const first = path.join(dir, fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort()[1]!);
    const bad = fs.readFileSync(first);
    bad[bad.length - 3]! ^= 1;
    fs.writeFileSync(first, bad);
    await expect(SegmentLog.read(dir)).rejects.toSatisfy((err) => isSealError(err, 'ErrRaftLogCorrupt'));
  });
});
