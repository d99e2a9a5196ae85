// Key encodings of the MVCC store (SPEC §5.1) and the physical layout of
// the rows in the engine.
//
//   store_key = user_key ‖ uint64_BE(~commit_ts)     (newest version first)
//
// The store_key is what the storage AAD binds (SPEC §3.1). In the engine
// every row carries a one-byte space tag in front, so that versions, head
// pointers, internal rows and store metadata never collide:
//
//   0x00 ‖ name                 store metadata (applied index)
//   0x01 ‖ "!encryption|..."    internal rows (writer registry, rewrite cursors)
//   0x02 ‖ user_key             head pointer: uint64_BE(newest commit_ts)
//   0x03 ‖ store_key            one version: value header ‖ body (SPEC §5.2)
//
// Why head pointers: rocksdb-native offers no seek other than an iterator,
// and an iterator costs three thread-pool round trips (open, read, close).
// A head pointer turns "newest version at or below ts" into two exact gets
// in the common case (reading at or after the newest write), and gives
// scans one row per user key in plain user-key order (versions of "a" and
// "ab" interleave in store_key order, heads do not).

import { sealError } from '../errors/index.js';

const MAX_U64 = (1n << 64n) - 1n;

export const SPACE_META = 0x00;
export const SPACE_INTERNAL = 0x01;
export const SPACE_HEAD = 0x02;
export const SPACE_VERSION = 0x03;
/** First byte past every space: the end of a whole-store range. */
export const SPACE_END = 0x04;

/** SPEC §5.1: user keys under this prefix are refused (ErrReservedKey). */
export const RESERVED_PREFIX = Buffer.from('!encryption|');
export const TS_BYTES = 8;

export const APPLIED_INDEX_KEY = Buffer.from([SPACE_META, ...Buffer.from('applied_index')]);

export function checkTimestamp(ts: bigint, what = 'commit_ts'): void {
  if (typeof ts !== 'bigint' || ts < 0n || ts > MAX_U64) throw new RangeError(`${what} must be a uint64 bigint`);
}

/** user_key ‖ uint64_BE(~commit_ts). */
export function encodeStoreKey(userKey: Uint8Array, commitTs: bigint): Buffer {
  checkTimestamp(commitTs);
  const out = Buffer.allocUnsafe(userKey.length + TS_BYTES);
  out.set(userKey, 0);
  out.writeBigUInt64BE(MAX_U64 - commitTs, userKey.length);
  return out;
}

export function decodeStoreKey(storeKey: Uint8Array): { userKey: Buffer; commitTs: bigint } {
  if (storeKey.length < TS_BYTES) throw new RangeError('store key shorter than its timestamp');
  const buf = Buffer.from(storeKey.buffer, storeKey.byteOffset, storeKey.length);
  const split = buf.length - TS_BYTES;
  return { userKey: buf.subarray(0, split), commitTs: MAX_U64 - buf.readBigUInt64BE(split) };
}

export function tagged(space: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = space;
  out.set(body, 1);
  return out;
}

export function versionRowKey(userKey: Uint8Array, commitTs: bigint): Buffer {
  checkTimestamp(commitTs);
  const out = Buffer.allocUnsafe(1 + userKey.length + TS_BYTES);
  out[0] = SPACE_VERSION;
  out.set(userKey, 1);
  out.writeBigUInt64BE(MAX_U64 - commitTs, 1 + userKey.length);
  return out;
}

export function headRowKey(userKey: Uint8Array): Buffer {
  return tagged(SPACE_HEAD, userKey);
}

export function encodeTs(ts: bigint): Buffer {
  const out = Buffer.allocUnsafe(TS_BYTES);
  out.writeBigUInt64BE(ts, 0);
  return out;
}

/** Reads a stored uint64 (head pointer, applied index); a wrong length is on-disk damage. */
export function decodeTs(bytes: Uint8Array): bigint {
  if (bytes.length !== TS_BYTES) throw sealError('ErrStoreCorrupt', `a ${TS_BYTES}-byte row holds ${bytes.length} bytes`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readBigUInt64BE(0);
}

export function isReservedKey(userKey: Uint8Array): boolean {
  return userKey.length >= RESERVED_PREFIX.length && Buffer.compare(userKey.subarray(0, RESERVED_PREFIX.length), RESERVED_PREFIX) === 0;
}

/**
 * The smallest key greater than every key starting with `prefix`, or
 * undefined when there is none (prefix of all 0xFF bytes).
 */
export function prefixEnd(prefix: Uint8Array): Buffer | undefined {
  const out = Buffer.from(prefix);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i]! < 0xff) {
      out[i]! += 1;
      return out.subarray(0, i + 1);
    }
  }
  return undefined;
}

/** Writer-registry row key: `!encryption|writers|<key_id>|<node_id16>` (SPEC §8.4). */
export function writerRegistryKey(keyId: number, nodeId16: number): Buffer {
  return Buffer.from(`!encryption|writers|${keyId}|${nodeId16}`);
}

/** Rewrite-cursor row key: `!encryption|rewrite|cursor|<key_id>` (SPEC §11). */
export function rewriteCursorKey(keyId: number): Buffer {
  return Buffer.from(`!encryption|rewrite|cursor|${keyId}`);
}
