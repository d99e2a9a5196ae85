// The durable Raft log: round trips, suffix overwrite, rotation and deletion
// after compaction, torn tails cut on reopen, damage in the middle refused
// with ErrRaftLogCorrupt, and a SIGKILL test against a child that appends
// with fsync.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSealError } from '../../../src/errors/index.js';
import { SegmentLog } from '../../../src/raft/log/index.js';
import type { Entry } from '../../../src/raft/index.js';
import { entryData } from './entry-data.js';
import { distScript } from '../../support/dist.js';

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
      }
      if (!sawPending) expect(log.lastIndex()).toBe(ackedLast);
      known = new Map();
      for (let i = log.firstIndex(); i <= log.lastIndex(); i++) known.set(i, log.term(i));
      await log.close();
    }
  }, 30_000 + rounds * 2_000);
});
