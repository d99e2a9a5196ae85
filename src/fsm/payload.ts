// State-machine payload codecs (SPEC §7) and the dispatch table for tags
// that other parts implement.
//
// A payload is what `decodeProposal` leaves after the proposal id (and after
// `openRaft` past the cutover). Its first byte is the tag; every body starts
// with the wire-version byte 0x01:
//
//   0x00 single request   0x00 ‖ 0x01 ‖ proposed_ts(8 BE) ‖ msgpack(request)
//   0x01 batch            0x01 ‖ 0x01 ‖ proposed_ts(8 BE) ‖ msgpack([request, ...])
//   0x02 HLC ceiling      0x02 ‖ 0x01 ‖ ceiling(8 BE)            (exactly 10 bytes)
//   0x03 writer registration, 0x04 bootstrap-encryption, 0x05 key/rollout
//        changes (sub-tag in the body): handlers registered by the encryption
//        part through `PayloadHandlers`.
//
// `proposed_ts` is the leader's issued HLC timestamp (0 = not stamped); the
// commit timestamp is derived from it at apply (hlc.ts). A request is an
// opaque msgpack value owned by the request model (src/kv): this file only
// frames it. A payload that cannot be decoded — unknown tag, unknown wire
// version, bad length — is `ErrApplyPayload`; an encryption tag without a
// registered handler is `ErrEncryptionApply`. Both halt apply: a committed
// entry is never skipped.

import { Packr } from 'msgpackr';
import { sealError } from '../errors/index.js';
import { checkTimestamp } from './hlc.js';

export const TAG_REQUEST = 0x00;
export const TAG_BATCH = 0x01;
export const TAG_HLC_CEILING = 0x02;
export const TAG_WRITER_REGISTRATION = 0x03;
export const TAG_BOOTSTRAP_ENCRYPTION = 0x04;
export const TAG_KEY_CHANGE = 0x05;
/** Wire version that opens every payload body. */
export const PAYLOAD_WIRE_VERSION = 0x01;

/** Tags whose handlers other parts register (SPEC §7: 0x03..0x05). */
export const EXTENSION_TAGS: readonly number[] = [TAG_WRITER_REGISTRATION, TAG_BOOTSTRAP_ENCRYPTION, TAG_KEY_CHANGE];

const STAMPED_HEADER_BYTES = 10;
const CEILING_PAYLOAD_BYTES = 10;

// Records off: every payload decodes on its own, with no shared structure
// table that replicas could disagree on.
const packr = new Packr({ useRecords: false });

export type CorePayload =
  | { tag: typeof TAG_REQUEST; proposedTs: bigint; request: unknown }
  | { tag: typeof TAG_BATCH; proposedTs: bigint; requests: unknown[] }
  | { tag: typeof TAG_HLC_CEILING; ceiling: bigint };

function stamped(tag: number, proposedTs: bigint, body: unknown): Buffer {
  const packed = packr.pack(body);
  const out = Buffer.allocUnsafe(STAMPED_HEADER_BYTES + packed.length);
  out[0] = tag;
  out[1] = PAYLOAD_WIRE_VERSION;
  out.writeBigUInt64BE(checkTimestamp(proposedTs), 2);
  out.set(packed, STAMPED_HEADER_BYTES);
  return out;
}

/** Encodes a `0x00` single-request payload. */
export function encodeRequestPayload(request: unknown, proposedTs: bigint): Buffer {
  return stamped(TAG_REQUEST, proposedTs, request);
}

/** Encodes a `0x01` batch payload: the requests apply atomically, in order. */
export function encodeBatchPayload(requests: readonly unknown[], proposedTs: bigint): Buffer {
  if (requests.length === 0) throw new RangeError('a batch payload needs at least one request');
  return stamped(TAG_BATCH, proposedTs, requests);
}

/** Encodes a `0x02` HLC-ceiling payload. */
export function encodeCeilingPayload(ceiling: bigint): Buffer {
  const out = Buffer.allocUnsafe(CEILING_PAYLOAD_BYTES);
  out[0] = TAG_HLC_CEILING;
  out[1] = PAYLOAD_WIRE_VERSION;
  out.writeBigUInt64BE(checkTimestamp(ceiling), 2);
  return out;
}

/** The tag of a payload; `ErrApplyPayload` for an empty one. */
export function payloadTag(payload: Uint8Array): number {
  const tag = payload[0];
  if (tag === undefined) throw sealError('ErrApplyPayload', 'empty payload');
  return tag;
}

/** True for entries that change `keys.json`: tag 0x04 and every 0x05 sub-tag. */
export function isEncryptionRelevant(payload: Uint8Array): boolean {
  return payload[0] === TAG_BOOTSTRAP_ENCRYPTION || payload[0] === TAG_KEY_CHANGE;
}

function checkVersion(payload: Uint8Array, tag: number): void {
  if (payload.length < 2) throw sealError('ErrApplyPayload', `tag 0x${hex(tag)} payload has no wire version`);
  if (payload[1] !== PAYLOAD_WIRE_VERSION) {
    throw sealError('ErrApplyPayload', `tag 0x${hex(tag)} payload has unknown wire version 0x${hex(payload[1] ?? 0)}`);
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function view(payload: Uint8Array): Buffer {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** Decodes a core payload (tags 0x00..0x02); anything else is `ErrApplyPayload`. */
export function decodeCorePayload(payload: Uint8Array): CorePayload {
  const tag = payloadTag(payload);
  if (tag !== TAG_REQUEST && tag !== TAG_BATCH && tag !== TAG_HLC_CEILING) {
    throw sealError('ErrApplyPayload', `tag 0x${hex(tag)} is not a core payload`);
  }
  checkVersion(payload, tag);
  const buf = view(payload);
  if (tag === TAG_HLC_CEILING) {
    if (buf.length !== CEILING_PAYLOAD_BYTES) {
      throw sealError('ErrApplyPayload', `HLC ceiling payload is ${buf.length} bytes, expected ${CEILING_PAYLOAD_BYTES}`);
    }
    return { tag, ceiling: buf.readBigUInt64BE(2) };
  }
  if (buf.length <= STAMPED_HEADER_BYTES) throw sealError('ErrApplyPayload', `tag 0x${hex(tag)} payload is truncated`);
  const proposedTs = buf.readBigUInt64BE(2);
  let body: unknown;
  try {
    body = packr.unpack(buf.subarray(STAMPED_HEADER_BYTES));
  } catch (err) {
    throw sealError('ErrApplyPayload', `tag 0x${hex(tag)} body is not valid msgpack`, err);
  }
  if (tag === TAG_REQUEST) return { tag, proposedTs, request: body };
  if (!Array.isArray(body) || body.length === 0) {
    throw sealError('ErrApplyPayload', 'batch payload body is not a non-empty array');
  }
  return { tag, proposedTs, requests: body };
}

/** Encodes a value with the payload msgpack settings (results, dedupe records). */
export function packValue(value: unknown): Buffer {
  return Buffer.from(packr.pack(value));
}

/** Decodes a value written by `packValue`. */
export function unpackValue(bytes: Uint8Array): unknown {
  return packr.unpack(view(bytes));
}

/**
 * Handler for an extension tag. It runs inside the apply of one entry and
 * must be deterministic; it may read and stage writes through `tx` (the
 * state machine's apply transaction, see state-machine.ts). A thrown error
 * halts apply.
 */
export type PayloadHandler<Tx> = (payload: Uint8Array, tx: Tx) => unknown | Promise<unknown>;

/** Dispatch table for tags 0x03..0x05. */
export class PayloadHandlers<Tx> {
  readonly #handlers = new Map<number, PayloadHandler<Tx>>();

  /** Registers the handler of an extension tag; each tag once. */
  register(tag: number, handler: PayloadHandler<Tx>): void {
    if (!EXTENSION_TAGS.includes(tag)) throw new RangeError(`tag 0x${hex(tag)} is not an extension tag`);
    if (this.#handlers.has(tag)) throw new Error(`tag 0x${hex(tag)} already has a handler`);
    this.#handlers.set(tag, handler);
  }

  /** The handler of `tag`; halts with a typed error when there is none. */
  lookup(tag: number): PayloadHandler<Tx> {
    const handler = this.#handlers.get(tag);
    if (handler !== undefined) return handler;
    if (EXTENSION_TAGS.includes(tag)) {
      throw sealError('ErrEncryptionApply', `no handler registered for tag 0x${hex(tag)}`);
    }
    throw sealError('ErrApplyPayload', `unknown payload tag 0x${hex(tag)}`);
  }
}
