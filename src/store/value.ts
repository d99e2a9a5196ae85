// The stored value of one version (SPEC §5.2): a 9-byte header, then the
// body.
//
//   byte 0      flags
//                 bit 0      tombstone
//                 bits 1-2   encryption_state: 00 cleartext body,
//                            01 body is a storage envelope (SPEC §3.1),
//                            10 / 11 reserved → ErrReservedEncryptionState
//                 bits 3-7   reserved, must be 0 → ErrReservedEncryptionState
//   bytes 1-8   expire_at, uint64 little-endian, ms since the Unix epoch,
//               0 = never expires
//   bytes 9..   body: the value (cleartext) or its storage envelope
//
// The header is outside the encryption (TTL and tombstone are visible on
// disk) but inside the storage AAD, so flipping any of its bits on an
// encrypted value fails authentication. The read path decides cleartext vs
// envelope from encryption_state alone, never from the body's first byte.

import { VALUE_HEADER_BYTES } from '../crypto/index.js';
import { sealError } from '../errors/index.js';

export const FLAG_TOMBSTONE = 0x01;
export const ENCRYPTION_STATE_SHIFT = 1;
export const ENCRYPTION_STATE_MASK = 0x06;
export const STATE_CLEARTEXT = 0;
export const STATE_ENVELOPE = 1;
const FLAGS_RESERVED_MASK = 0xf8;

export interface ValueHeader {
  readonly tombstone: boolean;
  /** 0 cleartext, 1 storage envelope. */
  readonly encryptionState: 0 | 1;
  /** ms since the epoch; 0n = never. */
  readonly expireAt: bigint;
}

export function encodeValueHeader(header: ValueHeader, out: Uint8Array = Buffer.allocUnsafe(VALUE_HEADER_BYTES), offset = 0): Uint8Array {
  out[offset] = (header.tombstone ? FLAG_TOMBSTONE : 0) | (header.encryptionState << ENCRYPTION_STATE_SHIFT);
  new DataView(out.buffer, out.byteOffset + offset + 1, 8).setBigUint64(0, header.expireAt, true);
  return out;
}

/** Reads and checks a stored value's header; the body is the rest (a view). */
export function decodeValue(row: Uint8Array): { header: ValueHeader; headerBytes: Uint8Array; body: Uint8Array } {
  if (row.length < VALUE_HEADER_BYTES) throw sealError('ErrStoreCorrupt', `stored value of ${row.length} bytes is shorter than its header`);
  const flags = row[0]!;
  const state = (flags & ENCRYPTION_STATE_MASK) >>> ENCRYPTION_STATE_SHIFT;
  if ((flags & FLAGS_RESERVED_MASK) !== 0 || state > STATE_ENVELOPE) {
    throw sealError('ErrReservedEncryptionState', `value header flags 0x${flags.toString(16).padStart(2, '0')} use reserved bits`);
  }
  const expireAt = new DataView(row.buffer, row.byteOffset + 1, 8).getBigUint64(0, true);
  return {
    header: { tombstone: (flags & FLAG_TOMBSTONE) !== 0, encryptionState: state as 0 | 1, expireAt },
    headerBytes: row.subarray(0, VALUE_HEADER_BYTES),
    body: row.subarray(VALUE_HEADER_BYTES),
  };
}

export function isExpired(header: ValueHeader, nowMs: bigint): boolean {
  return header.expireAt !== 0n && header.expireAt <= nowMs;
}
