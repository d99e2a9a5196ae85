// Byte-level surgery on a STOPPED node's files, for the disk-fault tests
// (test/faults/disk):
//   - `tamperWalValue`: flips one byte of a sealed value inside a RocksDB
//     WAL record and recomputes that record's CRC-32C, so RocksDB replays
//     the record as written and only the envelope's tag can notice;
//   - `lastSegment` / `recordOffsets` / `flipByte`: where the Raft log's
//     records start, for truncating or flipping its tail or its middle.

import fs from 'node:fs';
import path from 'node:path';
import { parseRecord } from '../../../src/raft/log/record.js';

// ---- RocksDB WAL -----------------------------------------------------------------
//
// RocksDB's log format: 32 KiB blocks of physical records
//   crc(4 LE, masked CRC-32C) ‖ length(2 LE) ‖ type(1) [‖ log_number(4) for recyclable types 5..8, 11]
// the CRC covering type [‖ log_number] ‖ payload. A WriteBatch payload holds
// `kTypeValue(0x01) ‖ varint32 key_len ‖ key ‖ varint32 value_len ‖ value`
// per put in the default column family.

const WAL_BLOCK = 32 * 1024;
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

interface WalRecord {
  /** Offset of the record header. */
  off: number;
  headerBytes: number;
  /** Payload range [start, end). */
  start: number;
  end: number;
}

function walRecords(buf: Buffer): WalRecord[] {
  const out: WalRecord[] = [];
  let off = 0;
  while (off + 7 <= buf.length) {
    const left = WAL_BLOCK - (off % WAL_BLOCK);
    if (left < 7) {
      off += left; // block trailer padding
      continue;
    }
    const len = buf.readUInt16LE(off + 4);
    const type = buf[off + 6]!;
    if (type === 0 && len === 0) break; // preallocated zeros
    const headerBytes = (type >= 5 && type <= 8) || type === 11 ? 11 : 7;
    if (off + headerBytes + len > buf.length) break;
    out.push({ off, headerBytes, start: off + headerBytes, end: off + headerBytes + len });
    off += headerBytes + len;
  }
  return out;
}

function readVarint32(buf: Buffer, off: number): { value: number; next: number } {
  let value = 0;
  for (let shift = 0, i = off; shift < 35; shift += 7, i++) {
    const b = buf[i]!;
    value |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value: value >>> 0, next: i + 1 };
  }
  throw new Error('bad varint');
}

/**
 * In the WAL files of a stopped node's store, finds the put of a version of
 * `userKey` (row key 0x03 ‖ userKey ‖ ~ts) and XORs `mask` into the value byte
 * at `valueOffset` (past the 9-byte value header: inside the envelope), then
 * rewrites that record's CRC. Returns the file and the value's length, or
 * undefined when no WAL holds the put whole inside one physical record.
 */
export function tamperWalValue(storeDir: string, userKey: string, valueOffset: number, mask = 0x01): { file: string; valueBytes: number } | undefined {
  const needle = Buffer.concat([Buffer.from([0x03]), Buffer.from(userKey)]);
  for (const name of fs.readdirSync(storeDir).filter((n) => n.endsWith('.log')).sort()) {
    const file = path.join(storeDir, name);
    const buf = fs.readFileSync(file);
    for (const rec of walRecords(buf)) {
      const at = buf.indexOf(needle, rec.start);
      if (at < 0 || at >= rec.end) continue;
      // The byte before the key is its varint length (one byte for short keys).
      if (buf[at - 1] !== needle.length + 8 || buf[at - 2] !== 0x01) continue;
      const { value: valueLen, next } = readVarint32(buf, at + needle.length + 8);
      if (next + valueLen > rec.end || valueOffset >= valueLen) continue;
      buf[next + valueOffset]! ^= mask;
      buf.writeUInt32LE(maskCrc(crc32c(buf.subarray(rec.off + 6, rec.end))), rec.off);
      fs.writeFileSync(file, buf);
      return { file, valueBytes: valueLen };
    }
  }
  return undefined;
}

// ---- Raft log segments -------------------------------------------------------------

/** The newest segment file of a node's Raft log. */
export function lastSegment(dataDir: string): string {
  const dir = path.join(dataDir, 'raft', 'log');
  const names = fs.readdirSync(dir).filter((n) => /^[0-9a-f]{16}\.seg$/.test(n)).sort();
  if (names.length === 0) throw new Error(`no segment in ${dir}`);
  return path.join(dir, names.at(-1)!);
}

/** Start offsets of the valid records of a segment file, in order. */
export function recordOffsets(file: string): number[] {
  const buf = fs.readFileSync(file);
  const out: number[] = [];
  for (let off = 0; off < buf.length; ) {
    const r = parseRecord(buf, off);
    if (!r.ok) break;
    out.push(off);
    off = r.end;
  }
  return out;
}

/** XORs `mask` into byte `at` of `file`. */
export function flipByte(file: string, at: number, mask = 0x10): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0]! ^= mask;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}
