// Test tool for a STOPPED node's Raft log (`<data-dir>/raft`, segments in
// its `log` subdirectory): read what the log holds, and alter one byte of an
// entry's payload while keeping its record checksum valid, so the log still
// opens cleanly (no ErrRaftLogCorrupt) but hands back different bytes — the
// way to test that an unwrap or apply check catches a changed entry.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeProposal, PROPOSAL_HEADER_BYTES, SegmentLog, type EntryType } from '../../src/raft/index.js';
import { parseRecord, RecordType, writeRecord } from '../../src/raft/log/record.js';

const SEGMENT_RE = /^[0-9a-f]{16}\.seg$/;

export interface LogEntryView {
  index: number;
  term: number;
  type: EntryType;
  /** The entry's data as stored (proposal framing included for normal entries). */
  data: Uint8Array;
}

/** `<raftDir>/log` when it exists, else `raftDir` itself (a bare segment directory). */
function logDir(raftDir: string): string {
  const sub = path.join(raftDir, 'log');
  return fs.existsSync(sub) ? sub : raftDir;
}

/**
 * Every entry the log holds, as SegmentLog recovers it. The segments are
 * opened from a temporary copy, so the node's own directory is not touched
 * (opening a log starts a new segment).
 */
export async function readLogEntries(raftDir: string): Promise<LogEntryView[]> {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-logread-'));
  try {
    fs.cpSync(logDir(raftDir), copy, { recursive: true });
    const log = await SegmentLog.open({ dir: copy });
    try {
      const out: LogEntryView[] = [];
      const hi = log.lastIndex() + 1;
      for (let i = log.firstIndex(); i < hi; ) {
        const slice = log.entries(i, hi, 64 * 1024 * 1024);
        for (const e of slice) out.push({ index: e.index, term: e.term, type: e.type, data: e.data });
        i += slice.length;
      }
      return out;
    } finally {
      await log.close();
    }
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

interface Located {
  file: string;
  off: number;
  /** The whole record's bytes (a copy). */
  record: Buffer;
  index: number;
  term: number;
  type: EntryType;
  data: Uint8Array;
}

/**
 * The Entry record in effect for each index, replaying the segments the way
 * recovery does: an entry at i replaces every entry >= i, an `install`
 * snapshot replaces the log, a `compact` one drops entries up to it.
 */
function locateEntries(raftDir: string): Map<number, Located> {
  const dir = logDir(raftDir);
  const files = fs.readdirSync(dir).filter((n) => SEGMENT_RE.test(n)).sort();
  const live = new Map<number, Located>();
  for (const name of files) {
    const file = path.join(dir, name);
    const buf = fs.readFileSync(file);
    let off = 0;
    while (off < buf.length) {
      const res = parseRecord(buf, off);
      if (!res.ok) break; // a torn tail; recovery cuts it off
      const r = res.record;
      if (r.type === RecordType.Entry) {
        for (const i of [...live.keys()]) if (i >= r.entry.index) live.delete(i);
        live.set(r.entry.index, { file, off, record: Buffer.from(buf.subarray(off, res.end)), ...r.entry });
      } else if (r.type === RecordType.Snapshot) {
        for (const i of [...live.keys()]) if (r.kind === 'install' || i <= r.meta.index) live.delete(i);
      }
      off = res.end;
    }
  }
  return live;
}

export interface TamperTarget {
  /** The entry at this index… */
  index?: number;
  /** …or the first normal entry (in index order) whose decoded payload matches. */
  match?: (payload: Uint8Array) => boolean;
  /** Byte of the decoded payload to change (default: the last one). */
  at?: number;
  /** XOR mask for that byte (default 0x01; must not be 0). */
  mask?: number;
}

/**
 * Flips one byte inside the payload (after the proposal framing) of one
 * normal entry of a stopped node's log and rewrites that record in place
 * with a recomputed checksum. Returns the entry's index and its payload
 * before and after.
 */
export function tamperLogEntry(raftDir: string, target: TamperTarget): { index: number; before: Uint8Array; after: Uint8Array } {
  const live = [...locateEntries(raftDir).values()].sort((a, b) => a.index - b.index);
  const payloadOf = (e: Located): Uint8Array | undefined =>
    e.type === 'normal' && e.data.length > PROPOSAL_HEADER_BYTES ? decodeProposal(e.data).payload : undefined;
  let hit: Located | undefined;
  if (target.index !== undefined) {
    hit = live.find((e) => e.index === target.index);
    if (hit === undefined) throw new Error(`no entry ${target.index} in the log at ${raftDir}`);
  } else if (target.match !== undefined) {
    hit = live.find((e) => {
      const p = payloadOf(e);
      return p !== undefined && target.match!(p);
    });
    if (hit === undefined) throw new Error(`no normal entry matches in the log at ${raftDir}`);
  } else {
    throw new Error('tamperLogEntry: give an index or a match');
  }
  const before = payloadOf(hit);
  if (before === undefined) throw new Error(`entry ${hit.index} has no payload to alter`);
  const at = target.at ?? before.length - 1;
  if (at < 0 || at >= before.length) throw new RangeError(`byte ${at} is outside the payload (${before.length} bytes)`);
  const mask = target.mask ?? 0x01;
  if ((mask & 0xff) === 0) throw new RangeError('mask must change the byte');
  const data = new Uint8Array(hit.data);
  data[PROPOSAL_HEADER_BYTES + at]! ^= mask;
  // Same size, so the record is rewritten over itself; writeRecord recomputes the CRC.
  const rec = Buffer.alloc(hit.record.length);
  const end = writeRecord(rec, 0, { type: RecordType.Entry, entry: { index: hit.index, term: hit.term, type: hit.type, data } });
  if (end !== rec.length) throw new Error('record size changed');
  const fd = fs.openSync(hit.file, 'r+');
  try {
    fs.writeSync(fd, rec, 0, rec.length, hit.off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { index: hit.index, before: new Uint8Array(before), after: data.subarray(PROPOSAL_HEADER_BYTES) };
}
