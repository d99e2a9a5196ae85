// The replicated encryption state as internal store rows (README.md of this
// folder). Apply decisions read these, never the node-local sidecar, so
// every replica decides the same; snapshots carry them, so a node that
// catches up by snapshot learns the wrapped DEKs and the rollout flags.
//
//   !encryption|writers|<key_id>|<node_id16> → {full_node_id, first_seen_local_epoch, last_seen_local_epoch}
//   !encryption|keys|<key_id>                → {purpose, wrapped, created, kek}
//   !encryption|rollout                      → {storage_envelope_active, raft_envelope_cutover_index, active}
//   !encryption|superseded|<key_id>          → {index, below_ts}: the rotation entry that made another DEK
//                                              active in its place, and a commit timestamp above every
//                                              version ever sealed under it (retire-dek, SPEC §4.2)

import type { Purpose } from '../crypto/index.js';
import { sealError } from '../errors/index.js';
import { packValue, unpackValue } from '../fsm/index.js';
import { writerRegistryKey } from '../store/index.js';
import type { KeyRecord } from './payload.js';

export const KEY_ROW_PREFIX = Buffer.from('!encryption|keys|');
export const ROLLOUT_ROW_KEY = Buffer.from('!encryption|rollout');
export const WRITER_ROW_PREFIX = Buffer.from('!encryption|writers|');
export const SUPERSEDED_ROW_PREFIX = Buffer.from('!encryption|superseded|');

export interface WriterRow {
  readonly fullNodeId: string;
  readonly firstSeenLocalEpoch: number;
  readonly lastSeenLocalEpoch: number;
}

export interface Rollout {
  readonly storageEnvelopeActive: boolean;
  readonly raftEnvelopeCutoverIndex: number | null;
  readonly active: Readonly<Partial<Record<Purpose, number>>>;
}

/**
 * When a DEK stopped being active. `index` is the rotation entry that
 * replaced it: every entry after it seals under the new DEK (storage, at
 * apply) and every node that applied it wraps under the new one (raft).
 * `belowTs`: every version sealed under the DEK has a commit timestamp below
 * it (the writes it sealed came before the rotation entry; a rewrite keeps
 * a version's timestamp).
 */
export interface Superseded {
  readonly index: number;
  readonly belowTs: bigint;
}

export const INITIAL_ROLLOUT: Rollout = Object.freeze({ storageEnvelopeActive: false, raftEnvelopeCutoverIndex: null, active: Object.freeze({}) });

export { writerRegistryKey };

export function writerRowPrefix(keyId: number): Buffer {
  return Buffer.from(`!encryption|writers|${keyId}|`);
}

export function keyRowKey(keyId: number): Buffer {
  return Buffer.concat([KEY_ROW_PREFIX, Buffer.from(String(keyId))]);
}

export function supersededRowKey(keyId: number): Buffer {
  return Buffer.concat([SUPERSEDED_ROW_PREFIX, Buffer.from(String(keyId))]);
}

function corrupt(what: string): never {
  throw sealError('ErrStoreCorrupt', `encryption row ${what} is malformed`);
}

function map(bytes: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = unpackValue(bytes);
  } catch {
    corrupt(what);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) corrupt(what);
  return v as Record<string, unknown>;
}

export function encodeWriterRow(row: WriterRow): Buffer {
  return packValue({ full_node_id: row.fullNodeId, first_seen_local_epoch: row.firstSeenLocalEpoch, last_seen_local_epoch: row.lastSeenLocalEpoch });
}

export function decodeWriterRow(bytes: Uint8Array): WriterRow {
  const m = map(bytes, 'writer');
  if (typeof m.full_node_id !== 'string' || typeof m.first_seen_local_epoch !== 'number' || typeof m.last_seen_local_epoch !== 'number') corrupt('writer');
  return { fullNodeId: m.full_node_id, firstSeenLocalEpoch: m.first_seen_local_epoch, lastSeenLocalEpoch: m.last_seen_local_epoch };
}

export function encodeKeyRow(key: KeyRecord): Buffer {
  return packValue({ purpose: key.purpose, wrapped: key.wrapped, created: key.created, kek: key.kek });
}

export function decodeKeyRow(keyId: number, bytes: Uint8Array): KeyRecord {
  const m = map(bytes, `key ${keyId}`);
  if ((m.purpose !== 'storage' && m.purpose !== 'raft') || !(m.wrapped instanceof Uint8Array) || typeof m.created !== 'string' || typeof m.kek !== 'string') {
    corrupt(`key ${keyId}`);
  }
  return { keyId, purpose: m.purpose, wrapped: Uint8Array.from(m.wrapped), created: m.created, kek: m.kek };
}

/** key_id from a `!encryption|keys|<key_id>` row key. */
export function keyIdOfKeyRow(rowKey: Uint8Array): number {
  const id = Number(Buffer.from(rowKey).subarray(KEY_ROW_PREFIX.length).toString('latin1'));
  if (!Number.isInteger(id) || id < 1) corrupt('key name');
  return id;
}

export function encodeRollout(r: Rollout): Buffer {
  return packValue({ storage_envelope_active: r.storageEnvelopeActive, raft_envelope_cutover_index: r.raftEnvelopeCutoverIndex, active: { ...r.active } });
}

export function decodeRollout(bytes: Uint8Array | undefined): Rollout {
  if (bytes === undefined) return INITIAL_ROLLOUT;
  const m = map(bytes, 'rollout');
  const cut = m.raft_envelope_cutover_index;
  if (typeof m.storage_envelope_active !== 'boolean' || (cut !== null && typeof cut !== 'number')) corrupt('rollout');
  const active = m.active as Record<string, unknown>;
  if (typeof active !== 'object' || active === null) corrupt('rollout');
  const out: Partial<Record<Purpose, number>> = {};
  for (const p of ['storage', 'raft'] as const) if (typeof active[p] === 'number') out[p] = active[p] as number;
  return { storageEnvelopeActive: m.storage_envelope_active, raftEnvelopeCutoverIndex: cut as number | null, active: out };
}

export function encodeSuperseded(s: Superseded): Buffer {
  return packValue({ index: s.index, below_ts: s.belowTs.toString() });
}

export function decodeSuperseded(keyId: number, bytes: Uint8Array): Superseded {
  const m = map(bytes, `superseded ${keyId}`);
  if (typeof m.index !== 'number' || typeof m.below_ts !== 'string' || !/^\d+$/.test(m.below_ts)) corrupt(`superseded ${keyId}`);
  return { index: m.index, belowTs: BigInt(m.below_ts) };
}
