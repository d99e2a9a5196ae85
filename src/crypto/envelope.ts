// Envelope byte layouts and AAD builders (SPEC §3.1, §3.2).
//
//   +------+------+---------+----------+------------+--------+
//   | 0x01 | flag | key_id  | nonce    | ciphertext | tag    |
//   | 1 B  | 1 B  | 4 B BE  | 12 B     | N B        | 16 B   |
//   +------+------+---------+----------+------------+--------+
//
// Storage AAD = version ‖ flag ‖ key_id(4 BE) ‖ value_header(9 B) ‖ store_key
// Raft AAD    = 0x52 ('R') ‖ version ‖ key_id(4 BE)
//
// The storage AAD binds a ciphertext to its header fields and to its exact
// location in the store; the raft AAD starts with a byte no storage AAD can
// start with (storage AADs start with the version byte 0x01), so neither kind
// of ciphertext opens as the other.
//
// Every parse failure is a typed SealError; nothing here throws anything else
// for any input bytes.

import { sealError } from '../errors/index.js';

export const ENVELOPE_VERSION = 0x01;
export const HEADER_BYTES = 1 + 1 + 4 + 12;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Bytes an envelope adds to its plaintext: header plus tag. */
export const ENVELOPE_OVERHEAD = HEADER_BYTES + TAG_BYTES;
/** Length of the value header the storage AAD includes (SPEC §5.2). */
export const VALUE_HEADER_BYTES = 9;
/** Flag bit 0: the plaintext was Snappy-compressed before sealing. */
export const FLAG_COMPRESSED = 0x01;
const FLAG_RESERVED_MASK = 0xfe;
const RAFT_AAD_TAG = 0x52;

/** Where a ciphertext belongs: decides its AAD. */
export type AadContext =
  | { readonly kind: 'storage'; readonly valueHeader: Uint8Array; readonly storeKey: Uint8Array }
  | { readonly kind: 'raft' };

export const RAFT_AAD: AadContext = Object.freeze({ kind: 'raft' });

/** The fields of a well-formed envelope; `body` is ciphertext ‖ tag (a view). */
export interface ParsedEnvelope {
  readonly flag: number;
  readonly keyId: number;
  readonly nonce: Uint8Array;
  readonly body: Uint8Array;
}

/**
 * Checks an envelope's framing (length, version, flag) for its kind and
 * returns views into it. Does not authenticate anything.
 */
export function parseEnvelope(envelope: Uint8Array, kind: AadContext['kind']): ParsedEnvelope {
  if (envelope.length < ENVELOPE_OVERHEAD) {
    throw sealError('ErrEnvelopeShort', `envelope of ${envelope.length} bytes is shorter than the ${ENVELOPE_OVERHEAD}-byte minimum`);
  }
  const version = envelope[0]!;
  if (version !== ENVELOPE_VERSION) {
    throw sealError('ErrEnvelopeVersion', `envelope version 0x${version.toString(16).padStart(2, '0')} is not supported`);
  }
  const flag = envelope[1]!;
  const reserved = kind === 'raft' ? 0xff : FLAG_RESERVED_MASK;
  if ((flag & reserved) !== 0) {
    throw sealError('ErrEnvelopeFlag', `${kind} envelope flag 0x${flag.toString(16).padStart(2, '0')} has reserved bits set`);
  }
  return {
    flag,
    keyId: envelopeKeyId(envelope)!,
    nonce: envelope.subarray(6, HEADER_BYTES),
    body: envelope.subarray(HEADER_BYTES),
  };
}

/** The key_id an envelope names, without the other framing checks; undefined when it is too short to be one. */
export function envelopeKeyId(envelope: Uint8Array): number | undefined {
  return envelope.length < ENVELOPE_OVERHEAD ? undefined : readU32BE(envelope, 2);
}

/** Writes the 18-byte envelope header into `out` at `offset`. */
export function writeEnvelopeHeader(out: Uint8Array, offset: number, flag: number, keyId: number, nonce: Uint8Array): void {
  out[offset] = ENVELOPE_VERSION;
  out[offset + 1] = flag;
  writeU32BE(out, offset + 2, keyId);
  out.set(nonce, offset + 6);
}

/** The additional authenticated data for an envelope of this kind. */
export function buildAad(ctx: AadContext, flag: number, keyId: number): Uint8Array {
  if (ctx.kind === 'raft') {
    const aad = new Uint8Array(6);
    aad[0] = RAFT_AAD_TAG;
    aad[1] = ENVELOPE_VERSION;
    writeU32BE(aad, 2, keyId);
    return aad;
  }
  if (ctx.valueHeader.length !== VALUE_HEADER_BYTES) {
    throw new RangeError(`value header must be ${VALUE_HEADER_BYTES} bytes, got ${ctx.valueHeader.length}`);
  }
  const aad = new Uint8Array(6 + VALUE_HEADER_BYTES + ctx.storeKey.length);
  aad[0] = ENVELOPE_VERSION;
  aad[1] = flag;
  writeU32BE(aad, 2, keyId);
  aad.set(ctx.valueHeader, 6);
  aad.set(ctx.storeKey, 6 + VALUE_HEADER_BYTES);
  return aad;
}

/** Validates a flag for sealing: programmer errors are RangeErrors. */
export function checkSealFlag(ctx: AadContext, flag: number): void {
  const reserved = ctx.kind === 'raft' ? 0xff : FLAG_RESERVED_MASK;
  if (!Number.isInteger(flag) || flag < 0 || flag > 0xff || (flag & reserved) !== 0) {
    throw new RangeError(`invalid ${ctx.kind} envelope flag ${flag}`);
  }
}

/** A storage AAD's value header must be VALUE_HEADER_BYTES long (the WASM core and the pool's packing rely on it). */
export function checkValueHeader(aad: AadContext): void {
  if (aad.kind === 'storage' && aad.valueHeader.length !== VALUE_HEADER_BYTES) {
    throw new RangeError(`value header must be ${VALUE_HEADER_BYTES} bytes, got ${aad.valueHeader.length}`);
  }
}

export function readU32BE(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function writeU32BE(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = (value >>> 16) & 0xff;
  buf[offset + 2] = (value >>> 8) & 0xff;
  buf[offset + 3] = value & 0xff;
}
