// Codecs of the encryption payloads (SPEC §7): tags 0x03 writer
// registration, 0x04 bootstrap-encryption, 0x05 key and rollout changes.
//
//   0x03 ‖ 0x01 ‖ msgpack({rows: [{key_id, node_id16, full_node_id, local_epoch}], reason})
//   0x04 ‖ 0x01 ‖ msgpack({keys: [key], writers: [{node_id16, full_node_id, local_epoch}]})
//   0x05 ‖ 0x01 ‖ sub ‖ msgpack(body)     sub 0x01 rotate-dek {key, writers}
//                                          sub 0x02 rewrap-deks {keys: [{key_id, wrapped, kek}]}
//                                          sub 0x03 retire-dek {key_id}
//                                          sub 0x04 enable-storage-envelope {}
//                                          sub 0x05 enable-raft-envelope {}
//   key = {key_id, purpose, wrapped, created, kek}
//
// Decoding is strict: an unknown wire version or sub-tag, a missing or
// mistyped field, is ErrEncryptionApply — a committed entry that cannot be
// understood halts apply, it is never skipped.

import { PURPOSES, checkKeyId, type Purpose } from '../crypto/index.js';
import { sealError } from '../errors/index.js';
import { PAYLOAD_WIRE_VERSION, TAG_BOOTSTRAP_ENCRYPTION, TAG_KEY_CHANGE, TAG_WRITER_REGISTRATION, packValue, unpackValue } from '../fsm/index.js';

export const SUB_ROTATE_DEK = 0x01;
export const SUB_REWRAP_DEKS = 0x02;
export const SUB_RETIRE_DEK = 0x03;
export const SUB_ENABLE_STORAGE_ENVELOPE = 0x04;
export const SUB_ENABLE_RAFT_ENVELOPE = 0x05;

/** A DEK as entries and store rows carry it: wrapped by the KEK, never in the clear. */
export interface KeyRecord {
  readonly keyId: number;
  readonly purpose: Purpose;
  readonly wrapped: Uint8Array;
  /** RFC 3339 UTC. */
  readonly created: string;
  /** The KEK provider that wrapped it, without secrets. */
  readonly kek: string;
}

/** A member as a writer: who it is and the local_epoch it seals with. */
export interface WriterIdentity {
  readonly nodeId16: number;
  readonly fullNodeId: string;
  readonly localEpoch: number;
}

export interface WriterRegistration extends WriterIdentity {
  readonly keyId: number;
}

export type EncryptionPayload =
  | { readonly kind: 'register'; readonly rows: readonly WriterRegistration[]; readonly reason: string }
  | { readonly kind: 'bootstrap'; readonly keys: readonly KeyRecord[]; readonly writers: readonly WriterIdentity[] }
  | { readonly kind: 'rotate-dek'; readonly key: KeyRecord; readonly writers: readonly WriterIdentity[] }
  | { readonly kind: 'rewrap-deks'; readonly keys: readonly { keyId: number; wrapped: Uint8Array; kek: string }[] }
  | { readonly kind: 'retire-dek'; readonly keyId: number }
  | { readonly kind: 'enable-storage-envelope' }
  | { readonly kind: 'enable-raft-envelope' };

const SUB_BY_KIND = {
  'rotate-dek': SUB_ROTATE_DEK,
  'rewrap-deks': SUB_REWRAP_DEKS,
  'retire-dek': SUB_RETIRE_DEK,
  'enable-storage-envelope': SUB_ENABLE_STORAGE_ENVELOPE,
  'enable-raft-envelope': SUB_ENABLE_RAFT_ENVELOPE,
} as const;

function keyWire(key: KeyRecord): Record<string, unknown> {
  return { key_id: key.keyId, purpose: key.purpose, wrapped: key.wrapped, created: key.created, kek: key.kek };
}

function writerWire(w: WriterIdentity): Record<string, unknown> {
  return { node_id16: w.nodeId16, full_node_id: w.fullNodeId, local_epoch: w.localEpoch };
}

function frame(head: readonly number[], body: unknown): Buffer {
  return Buffer.concat([Buffer.from(head), packValue(body)]);
}

export function encodeEncryptionPayload(p: EncryptionPayload): Buffer {
  switch (p.kind) {
    case 'register':
      return frame([TAG_WRITER_REGISTRATION, PAYLOAD_WIRE_VERSION], {
        rows: p.rows.map((r) => ({ key_id: r.keyId, ...writerWire(r) })),
        reason: p.reason,
      });
    case 'bootstrap':
      return frame([TAG_BOOTSTRAP_ENCRYPTION, PAYLOAD_WIRE_VERSION], { keys: p.keys.map(keyWire), writers: p.writers.map(writerWire) });
    case 'rotate-dek':
      return frame([TAG_KEY_CHANGE, PAYLOAD_WIRE_VERSION, SUB_ROTATE_DEK], { key: keyWire(p.key), writers: p.writers.map(writerWire) });
    case 'rewrap-deks':
      return frame([TAG_KEY_CHANGE, PAYLOAD_WIRE_VERSION, SUB_REWRAP_DEKS], {
        keys: p.keys.map((k) => ({ key_id: k.keyId, wrapped: k.wrapped, kek: k.kek })),
      });
    case 'retire-dek':
      return frame([TAG_KEY_CHANGE, PAYLOAD_WIRE_VERSION, SUB_RETIRE_DEK], { key_id: p.keyId });
    case 'enable-storage-envelope':
    case 'enable-raft-envelope':
      return frame([TAG_KEY_CHANGE, PAYLOAD_WIRE_VERSION, SUB_BY_KIND[p.kind]], {});
  }
}

class Malformed extends Error {}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw new Malformed(`${what} is not a map`);
  return v as Record<string, unknown>;
}

function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Malformed(`${what} is not an array`);
  return v;
}

function uint(v: unknown, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new Malformed(`${what} is not an integer in 0..${max}`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Malformed(`${what} is not a string`);
  return v;
}

function bytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length === 0) throw new Malformed(`${what} is not a byte string`);
  return Uint8Array.from(v);
}

function keyId(v: unknown, what: string): number {
  const id = uint(v, 0xffffffff, what);
  try {
    checkKeyId(id);
  } catch {
    throw new Malformed(`${what} ${id} is not a valid key_id`);
  }
  return id;
}

function readKey(v: unknown): KeyRecord {
  const k = obj(v, 'key');
  const purpose = str(k.purpose, 'key.purpose');
  if (!(PURPOSES as readonly string[]).includes(purpose)) throw new Malformed(`key.purpose "${purpose}" is unknown`);
  return { keyId: keyId(k.key_id, 'key.key_id'), purpose: purpose as Purpose, wrapped: bytes(k.wrapped, 'key.wrapped'), created: str(k.created, 'key.created'), kek: str(k.kek, 'key.kek') };
}

function readWriter(v: unknown): WriterIdentity {
  const w = obj(v, 'writer');
  const fullNodeId = str(w.full_node_id, 'writer.full_node_id');
  if (fullNodeId.length === 0) throw new Malformed('writer.full_node_id is empty');
  return { nodeId16: uint(w.node_id16, 0xffff, 'writer.node_id16'), fullNodeId, localEpoch: uint(w.local_epoch, 0xffff, 'writer.local_epoch') };
}

/** True for tags this part decodes (0x03..0x05). */
export function isEncryptionTag(tag: number | undefined): boolean {
  return tag === TAG_WRITER_REGISTRATION || tag === TAG_BOOTSTRAP_ENCRYPTION || tag === TAG_KEY_CHANGE;
}

/** Decodes a 0x03/0x04/0x05 payload; anything malformed is ErrEncryptionApply. */
export function decodeEncryptionPayload(payload: Uint8Array): EncryptionPayload {
  const tag = payload[0];
  try {
    if (!isEncryptionTag(tag)) throw new Malformed(`tag 0x${(tag ?? 0).toString(16)} is not an encryption tag`);
    if (payload[1] !== PAYLOAD_WIRE_VERSION) throw new Malformed(`unknown wire version 0x${(payload[1] ?? 0).toString(16)}`);
    const sub = tag === TAG_KEY_CHANGE ? payload[2] : undefined;
    let body: Record<string, unknown>;
    try {
      body = obj(unpackValue(payload.subarray(tag === TAG_KEY_CHANGE ? 3 : 2)), 'body');
    } catch (err) {
      throw err instanceof Malformed ? err : new Malformed('body is not valid msgpack');
    }
    if (tag === TAG_WRITER_REGISTRATION) {
      const rows = arr(body.rows, 'rows').map((r) => ({ ...readWriter(r), keyId: keyId(obj(r, 'row').key_id, 'row.key_id') }));
      return { kind: 'register', rows, reason: str(body.reason, 'reason') };
    }
    if (tag === TAG_BOOTSTRAP_ENCRYPTION) {
      return { kind: 'bootstrap', keys: arr(body.keys, 'keys').map(readKey), writers: arr(body.writers, 'writers').map(readWriter) };
    }
    switch (sub) {
      case SUB_ROTATE_DEK:
        return { kind: 'rotate-dek', key: readKey(body.key), writers: arr(body.writers, 'writers').map(readWriter) };
      case SUB_REWRAP_DEKS:
        return {
          kind: 'rewrap-deks',
          keys: arr(body.keys, 'keys').map((v) => {
            const k = obj(v, 'key');
            return { keyId: keyId(k.key_id, 'key.key_id'), wrapped: bytes(k.wrapped, 'key.wrapped'), kek: str(k.kek, 'key.kek') };
          }),
        };
      case SUB_RETIRE_DEK:
        return { kind: 'retire-dek', keyId: keyId(body.key_id, 'key_id') };
      case SUB_ENABLE_STORAGE_ENVELOPE:
        return { kind: 'enable-storage-envelope' };
      case SUB_ENABLE_RAFT_ENVELOPE:
        return { kind: 'enable-raft-envelope' };
      default:
        throw new Malformed(`unknown sub-tag 0x${(sub ?? 0).toString(16)}`);
    }
  } catch (err) {
    if (err instanceof Malformed) throw sealError('ErrEncryptionApply', `encryption payload (tag 0x${(tag ?? 0).toString(16)}): ${err.message}`);
    throw err;
  }
}

/**
 * True for the Phase 2 cutover entry, in the clear (it is never wrapped).
 * Cheap: looks at the three head bytes only.
 */
export function isCutoverPayload(payload: Uint8Array): boolean {
  return payload.length >= 3 && payload[0] === TAG_KEY_CHANGE && payload[1] === PAYLOAD_WIRE_VERSION && payload[2] === SUB_ENABLE_RAFT_ENVELOPE;
}
