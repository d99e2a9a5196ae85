// Record framing of the Raft log segments (SPEC §6 "Durability").
//
//   magic(4) 'SKRL' ‖ len(4 BE) ‖ crc32(4 BE) ‖ type(1) ‖ body(len - 1)
//
// The CRC-32 covers the length field, the type and the body, so a flipped
// length is caught like any other flipped bit. The magic lets recovery look
// past a damaged record for a valid one: finding one means the damage is in
// the middle of the log (stop the node), finding none means a torn tail
// (truncate it).

import zlib from 'node:zlib';
import type { ConfState, Entry, EntryType, HardState, SnapshotMeta } from '../core/types.js';

export const MAGIC = 0x534b524c; // 'SKRL'
export const HEADER_BYTES = 12;
/** Largest record accepted; a length above it is damage, not a record. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

export const enum RecordType {
  /** First record of every segment: seq, and the last entry index held by earlier segments. */
  Head = 1,
  Entry = 2,
  HardState = 3,
  Snapshot = 4,
}

/** `compact`: entries up to the index are dropped; `install`: the whole log is replaced. */
export type SnapshotKind = 'compact' | 'install';

export type LogRecord =
  | { type: RecordType.Head; seq: number; lastIndex: number }
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.HardState; hardState: HardState }
  | { type: RecordType.Snapshot; kind: SnapshotKind; meta: SnapshotMeta };

const ENTRY_TYPES: EntryType[] = ['normal', 'confChange'];

function putU64(view: DataView, off: number, n: number): void {
  view.setUint32(off, Math.floor(n / 0x1_0000_0000));
  view.setUint32(off + 4, n >>> 0);
}

function getU64(view: DataView, off: number): number {
  return view.getUint32(off) * 0x1_0000_0000 + view.getUint32(off + 4);
}

function bodySize(r: LogRecord): number {
  switch (r.type) {
    case RecordType.Head:
      return 16;
    case RecordType.Entry:
      return 17 + r.entry.data.length;
    case RecordType.HardState:
      return 24;
    case RecordType.Snapshot:
      return 1 + 16 + 8 + 8 * (r.meta.confState.voters.length + r.meta.confState.learners.length);
  }
}

/** Bytes `r` takes on disk. */
export function recordSize(r: LogRecord): number {
  return HEADER_BYTES + 1 + bodySize(r);
}

/** Writes `r` at `off` of `buf` (which has room for recordSize(r)); returns the next offset. */
export function writeRecord(buf: Buffer, off: number, r: LogRecord): number {
  const len = 1 + bodySize(r);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setUint32(off, MAGIC);
  view.setUint32(off + 4, len);
  const b = off + HEADER_BYTES;
  buf[b] = r.type;
  switch (r.type) {
    case RecordType.Head:
      putU64(view, b + 1, r.seq);
      putU64(view, b + 9, r.lastIndex);
      break;
    case RecordType.Entry:
      putU64(view, b + 1, r.entry.index);
      putU64(view, b + 9, r.entry.term);
      buf[b + 17] = ENTRY_TYPES.indexOf(r.entry.type);
      buf.set(r.entry.data, b + 18);
      break;
    case RecordType.HardState:
      putU64(view, b + 1, r.hardState.term);
      putU64(view, b + 9, r.hardState.vote);
      putU64(view, b + 17, r.hardState.commit);
      break;
    case RecordType.Snapshot: {
      const { index, term, confState } = r.meta;
      buf[b + 1] = r.kind === 'install' ? 1 : 0;
      putU64(view, b + 2, index);
      putU64(view, b + 10, term);
      view.setUint32(b + 18, confState.voters.length);
      view.setUint32(b + 22, confState.learners.length);
      let p = b + 26;
      for (const id of [...confState.voters, ...confState.learners]) {
        putU64(view, p, id);
        p += 8;
      }
      break;
    }
  }
  view.setUint32(off + 8, checksum(buf, off, len));
  return off + HEADER_BYTES + len;
}

function checksum(buf: Uint8Array, off: number, len: number): number {
  const c = zlib.crc32(buf.subarray(off + 4, off + 8));
  return zlib.crc32(buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len), c);
}

/** Encodes records into one buffer (one write, one fsync). */
export function encodeRecords(records: LogRecord[]): Buffer {
  let size = 0;
  for (const r of records) size += recordSize(r);
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  for (const r of records) off = writeRecord(buf, off, r);
  return buf;
}

export type ParseResult =
  | { ok: true; record: LogRecord; end: number }
  /** `short`: the record runs past the end of `buf`; `bad`: magic, length or CRC wrong. */
  | { ok: false; reason: 'short' | 'bad' };

/**
 * Parses the record at `off`. Entry data is a copy (the caller may keep it
 * after `buf` is reused).
 */
export function parseRecord(buf: Buffer, off: number): ParseResult {
  if (buf.length - off < HEADER_BYTES) return { ok: false, reason: 'short' };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(off) !== MAGIC) return { ok: false, reason: 'bad' };
  const len = view.getUint32(off + 4);
  if (len < 1 || len > MAX_RECORD_BYTES) return { ok: false, reason: 'bad' };
  if (buf.length - off - HEADER_BYTES < len) return { ok: false, reason: 'short' };
  if (view.getUint32(off + 8) !== checksum(buf, off, len)) return { ok: false, reason: 'bad' };
  const b = off + HEADER_BYTES;
  const end = b + len;
  const record = decodeBody(buf, view, b, len);
  return record === undefined ? { ok: false, reason: 'bad' } : { ok: true, record, end };
}

function decodeBody(buf: Buffer, view: DataView, b: number, len: number): LogRecord | undefined {
  switch (buf[b]) {
    case RecordType.Head:
      if (len !== 17) return undefined;
      return { type: RecordType.Head, seq: getU64(view, b + 1), lastIndex: getU64(view, b + 9) };
    case RecordType.Entry: {
      if (len < 18) return undefined;
      const type = ENTRY_TYPES[buf[b + 17]!];
      if (type === undefined) return undefined;
      const data = new Uint8Array(buf.subarray(b + 18, b + len));
      return { type: RecordType.Entry, entry: { index: getU64(view, b + 1), term: getU64(view, b + 9), type, data } };
    }
    case RecordType.HardState:
      if (len !== 25) return undefined;
      return {
        type: RecordType.HardState,
        hardState: { term: getU64(view, b + 1), vote: getU64(view, b + 9), commit: getU64(view, b + 17) },
      };
    case RecordType.Snapshot: {
      if (len < 26) return undefined;
      const nv = view.getUint32(b + 18);
      const nl = view.getUint32(b + 22);
      if (len !== 26 + 8 * (nv + nl)) return undefined;
      const ids: number[] = [];
      for (let i = 0; i < nv + nl; i++) ids.push(getU64(view, b + 26 + 8 * i));
      const confState: ConfState = { voters: ids.slice(0, nv), learners: ids.slice(nv) };
      return {
        type: RecordType.Snapshot,
        kind: buf[b + 1] === 1 ? 'install' : 'compact',
        meta: { index: getU64(view, b + 2), term: getU64(view, b + 10), confState },
      };
    }
    default:
      return undefined;
  }
}

/** Offset of the first valid record at or after `from`, or -1. */
export function findNextValidRecord(buf: Buffer, from: number): number {
  const magic = Buffer.from([0x53, 0x4b, 0x52, 0x4c]);
  let at = buf.indexOf(magic, from);
  while (at >= 0) {
    if (parseRecord(buf, at).ok) return at;
    at = buf.indexOf(magic, at + 1);
  }
  return -1;
}
