// State-machine snapshot streams (SPEC §5.4): a header, the store's raw
// rows (ciphertext stays ciphertext: a snapshot never decrypts), and a
// trailer with a checksum.
//
//   header v1   "EKVTHLC1" ‖ ceiling(8 BE)
//   header v2   "EKVTHLC2" ‖ len(2 BE, 16 today) ‖ ceiling(8 BE) ‖ cutover(8 BE) ‖ (len-16 bytes skipped)
//   legacy      no header: the stream starts with its first record
//   record      key_len(4 BE) ‖ value_len(4 BE) ‖ key ‖ value      (key_len ≥ 1)
//   trailer     0xFFFFFFFF ‖ record_count(8 BE) ‖ SHA-256(every byte before it)
//
// Header versions are chosen by the exact 8-byte magic; "EKVTHLC" with any
// other last byte is ErrSnapshotHeaderVersion. Anything wrong after the
// header (truncation, a bad length, a checksum mismatch, bytes after the
// trailer) is ErrSnapshotCorrupt, and a restore that fails leaves the store
// empty again.
//
// Memory stays flat: the writer pulls rows from a RocksDB iterator and
// yields ~256 KiB chunks on demand; the reader writes ~4 MiB batches and
// waits for each.

import crypto from 'node:crypto';
import { sealError } from '../errors/index.js';
import type { Engine, EngineOp } from './engine.js';
import { SPACE_END } from './keys.js';

export const SNAPSHOT_MAGIC_V1 = Buffer.from('EKVTHLC1');
export const SNAPSHOT_MAGIC_V2 = Buffer.from('EKVTHLC2');
const MAGIC_STEM = Buffer.from('EKVTHLC');
const V2_FIELDS_LEN = 16;
const END_MARK = 0xffffffff;
const DIGEST_BYTES = 32;
const CHUNK_BYTES = 256 * 1024;
const RESTORE_BATCH_BYTES = 4 * 1024 * 1024;
const MAX_KEY_BYTES = 64 * 1024;
const MAX_VALUE_BYTES = 256 * 1024 * 1024;

export type SnapshotHeader = { readonly version: 1; readonly ceiling: bigint } | { readonly version: 2; readonly ceiling: bigint; readonly cutover: bigint };

export interface SnapshotInfo {
  /** 0 = headerless legacy stream. */
  readonly version: 0 | 1 | 2;
  readonly ceiling?: bigint;
  readonly cutover?: bigint;
  readonly rows: number;
}

export function encodeSnapshotHeader(header: SnapshotHeader): Buffer {
  if (header.version === 1) {
    const out = Buffer.alloc(16);
    SNAPSHOT_MAGIC_V1.copy(out, 0);
    out.writeBigUInt64BE(header.ceiling, 8);
    return out;
  }
  const out = Buffer.alloc(8 + 2 + V2_FIELDS_LEN);
  SNAPSHOT_MAGIC_V2.copy(out, 0);
  out.writeUInt16BE(V2_FIELDS_LEN, 8);
  out.writeBigUInt64BE(header.ceiling, 10);
  out.writeBigUInt64BE(header.cutover, 18);
  return out;
}

/** Streams every row of `engine` from one consistent view; `header` null writes a legacy stream. */
export async function* writeSnapshot(engine: Engine, header: SnapshotHeader | null): AsyncGenerator<Buffer> {
  const hash = crypto.createHash('sha256');
  const emit = (chunk: Buffer): Buffer => {
    hash.update(chunk);
    return chunk;
  };
  const view = engine.snapshot();
  try {
    if (header !== null) yield emit(encodeSnapshotHeader(header));
    let parts: Buffer[] = [];
    let size = 0;
    let count = 0n;
    for await (const { key, value } of view.iterate({ gte: Buffer.from([0]), lt: Buffer.from([SPACE_END]) })) {
      const lengths = Buffer.allocUnsafe(8);
      lengths.writeUInt32BE(key.length, 0);
      lengths.writeUInt32BE(value.length, 4);
      parts.push(lengths, key, value);
      size += 8 + key.length + value.length;
      count++;
      if (size >= CHUNK_BYTES) {
        yield emit(Buffer.concat(parts, size));
        parts = [];
        size = 0;
      }
    }
    const end = Buffer.allocUnsafe(12);
    end.writeUInt32BE(END_MARK, 0);
    end.writeBigUInt64BE(count, 4);
    parts.push(end);
    yield emit(Buffer.concat(parts));
    yield hash.digest();
  } finally {
    await view.release();
  }
}

/** Reads exact byte counts from an async byte source, hashing what it hands out. */
class ByteReader {
  readonly #source: AsyncIterator<Uint8Array>;
  readonly #hash = crypto.createHash('sha256');
  #chunks: Buffer[] = [];
  #buffered = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#buffered < n && !this.#done) {
      const next = await this.#source.next();
      if (next.done === true) this.#done = true;
      else if (next.value.length > 0) {
        this.#chunks.push(Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length));
        this.#buffered += next.value.length;
      }
    }
    return this.#buffered >= n;
  }

  /** Looks at up to n bytes without consuming them. */
  async peek(n: number): Promise<Buffer> {
    await this.#fill(n);
    const all = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [all];
    return all.subarray(0, Math.min(n, all.length));
  }

  async take(n: number, hashed = true): Promise<Buffer> {
    if (!(await this.#fill(n))) throw corrupt('the stream ends early');
    let out: Buffer;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.#chunks, this.#buffered);
      out = all.subarray(0, n);
      this.#chunks = n < all.length ? [all.subarray(n)] : [];
    }
    this.#buffered -= n;
    if (hashed) this.#hash.update(out);
    return out;
  }

  digest(): Buffer {
    return this.#hash.digest();
  }

  async atEnd(): Promise<boolean> {
    return !(await this.#fill(1));
  }
}

function corrupt(detail: string): Error {
  return sealError('ErrSnapshotCorrupt', `snapshot stream is corrupt: ${detail}`);
}

async function readHeader(reader: ByteReader): Promise<Omit<SnapshotInfo, 'rows'>> {
  const magic = await reader.peek(8);
  if (magic.length === 8 && magic.equals(SNAPSHOT_MAGIC_V1)) {
    const header = await reader.take(16);
    return { version: 1, ceiling: header.readBigUInt64BE(8) };
  }
  if (magic.length === 8 && magic.equals(SNAPSHOT_MAGIC_V2)) {
    const fixed = await reader.take(10);
    const len = fixed.readUInt16BE(8);
    if (len < V2_FIELDS_LEN) throw corrupt(`v2 header length ${len} is below ${V2_FIELDS_LEN}`);
    const fields = await reader.take(len);
    return { version: 2, ceiling: fields.readBigUInt64BE(0), cutover: fields.readBigUInt64BE(8) };
  }
  if (magic.length === 8 && magic.subarray(0, 7).equals(MAGIC_STEM)) {
    throw sealError('ErrSnapshotHeaderVersion', `snapshot header version byte 0x${magic[7]!.toString(16).padStart(2, '0')} is not supported`);
  }
  return { version: 0 };
}

/**
 * Parses a snapshot stream and hands its rows to `write` in batches. On
 * any failure after a write, the rows written are removed again.
 */
export async function readSnapshot(source: AsyncIterable<Uint8Array>, write: (ops: EngineOp[]) => Promise<void>): Promise<SnapshotInfo> {
  const reader = new ByteReader(source);
  const header = await readHeader(reader);
  let wrote = false;
  try {
    let ops: EngineOp[] = [];
    let size = 0;
    let rows = 0n;
    for (;;) {
      const lengths = await reader.take(4);
      const keyLen = lengths.readUInt32BE(0);
      if (keyLen === END_MARK) break;
      const valueLen = (await reader.take(4)).readUInt32BE(0);
      if (keyLen === 0 || keyLen > MAX_KEY_BYTES || valueLen > MAX_VALUE_BYTES) throw corrupt(`record lengths ${keyLen}/${valueLen} are out of range`);
      const key = Buffer.from(await reader.take(keyLen));
      if (key[0]! >= SPACE_END) throw corrupt(`row key in unknown space 0x${key[0]!.toString(16)}`);
      const value = Buffer.from(await reader.take(valueLen));
      ops.push({ type: 'put', key, value });
      size += keyLen + valueLen;
      rows++;
      if (size >= RESTORE_BATCH_BYTES) {
        wrote = true;
        await write(ops);
        ops = [];
        size = 0;
      }
    }
    const count = (await reader.take(8)).readBigUInt64BE(0);
    const expected = reader.digest();
    const digest = await reader.take(DIGEST_BYTES, false);
    if (count !== rows) throw corrupt(`trailer counts ${count} rows, stream has ${rows}`);
    if (!crypto.timingSafeEqual(expected, digest)) throw corrupt('checksum mismatch');
    if (!(await reader.atEnd())) throw corrupt('bytes after the trailer');
    wrote = true;
    await write(ops);
    return { ...header, rows: Number(rows) };
  } catch (err) {
    if (wrote) await write([{ type: 'delRange', gte: Buffer.from([0]), lt: Buffer.from([SPACE_END]) }]);
    throw err;
  }
}
