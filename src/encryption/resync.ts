// The pure half of `sealkv encryption resync-sidecar` (SPEC §10): what an
// encryption-relevant entry does to keys.json, the state a leader's
// GetSidecarState answer makes, the local_epoch rule, and what changed
// between two sidecar states. No I/O here: src/cli/resync-sidecar.ts reads
// the store, the Raft log and the sidecar of a stopped node and writes once.
//
// sidecarChangesFor mirrors the sidecar part of EncryptionRuntime's apply
// (runtime.ts #applyKeyChange) — the same changes for the same entry — but
// decides on the sidecar state being rebuilt instead of the store rows,
// which are not available as of each replayed index offline. An entry the
// runtime refuses at apply changes nothing here either.

import { MAX_LOCAL_EPOCH, PURPOSES, type Purpose } from '../crypto/index.js';
import { sealError } from '../errors/index.js';
import type { SidecarChange, SidecarKey, SidecarState } from '../sidecar/index.js';
import type { EncryptionPayload, KeyRecord } from './payload.js';
import { writerCollision } from './runtime.js';

export type KeyChangePayload = Exclude<EncryptionPayload, { kind: 'register' }>;

export interface ReplayContext {
  /** The DEK as a replayed entry or the store's rows describe it (purpose, created) — for a rewrap that adds a DEK the sidecar lacks. */
  readonly keyRecord: (keyId: number) => KeyRecord | undefined;
  /** This node's last registered local_epoch under a DEK, if any. */
  readonly registeredEpoch: (keyId: number) => number | undefined;
}

function addKey(key: KeyRecord, localEpoch?: number): SidecarChange {
  return { type: 'add-key', keyId: key.keyId, purpose: key.purpose, wrapped: key.wrapped, kek: key.kek, created: key.created, ...(localEpoch === undefined ? {} : { localEpoch }) };
}

/** The sidecar changes of one encryption-relevant entry at `index`, applied on `state` (the sidecar as of the entry before). */
export function sidecarChangesFor(p: KeyChangePayload, state: SidecarState, index: number, ctx: ReplayContext): SidecarChange[] {
  switch (p.kind) {
    case 'bootstrap': {
      if (state.active.storage !== undefined) return [];
      const storage = p.keys.filter((k) => k.purpose === 'storage');
      const raft = p.keys.filter((k) => k.purpose === 'raft');
      if (storage.length !== 1 || raft.length !== 1) throw sealError('ErrEncryptionApply', `bootstrap entry ${index} must carry one storage and one raft DEK`);
      if (p.keys.some((k) => state.keys.has(k.keyId))) return [];
      if (writerCollision(p.writers) !== undefined) return [];
      return [...p.keys.map((k) => addKey(k)), { type: 'set-active', purpose: 'storage', keyId: storage[0]!.keyId }, { type: 'set-active', purpose: 'raft', keyId: raft[0]!.keyId }];
    }
    case 'rotate-dek': {
      if (state.active.storage === undefined || state.keys.has(p.key.keyId)) return [];
      return [addKey(p.key), { type: 'set-active', purpose: p.key.purpose, keyId: p.key.keyId }];
    }
    case 'rewrap-deks': {
      const changes: SidecarChange[] = [];
      for (const k of p.keys) {
        if (state.keys.has(k.keyId)) {
          changes.push({ type: 'rewrap-key', keyId: k.keyId, wrapped: k.wrapped, kek: k.kek });
          continue;
        }
        const record = ctx.keyRecord(k.keyId);
        // The runtime refuses the whole entry for a key it has no row of.
        if (record === undefined) return [];
        // A DEK this node may have sealed under before: above any epoch it registered.
        changes.push(addKey({ ...record, wrapped: k.wrapped, kek: k.kek }, Math.max(0, ctx.registeredEpoch(k.keyId) ?? 0) + 1));
      }
      return changes;
    }
    case 'retire-dek': {
      if (state.active.storage === p.keyId || state.active.raft === p.keyId || !state.keys.has(p.keyId)) return [];
      return [{ type: 'retire-key', keyId: p.keyId }];
    }
    case 'enable-storage-envelope':
      return state.active.storage === undefined || state.storageEnvelopeActive ? [] : [{ type: 'enable-storage-envelope' }];
    case 'enable-raft-envelope': {
      if (state.active.raft === undefined) throw sealError('ErrEncryptionApply', `cutover entry ${index} before bootstrap`);
      const cut = state.raftEnvelopeCutoverIndex;
      if (cut === null) return [{ type: 'raft-envelope-cutover' }];
      if (cut !== index) throw sealError('ErrEnvelopeCutoverDivergence', `cutover entry ${index} but the sidecar records the cutover at ${cut}`);
      return [];
    }
  }
}

/** A leader's GetSidecarState answer (SPEC §10), checked. */
export interface LeaderSidecarState {
  readonly raftAppliedIndex: number;
  readonly storageEnvelopeActive: boolean;
  readonly raftEnvelopeCutoverIndex: number | null;
  readonly active: Partial<Record<Purpose, number>>;
  readonly keys: readonly KeyRecord[];
  /** This node's last registered local_epoch per key_id. */
  readonly registry: ReadonlyMap<number, number>;
}

function malformed(what: string): never {
  throw sealError('ErrAdminRequest', `the GetSidecarState answer is malformed: ${what}`);
}

function index(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) malformed(`${what} is not a non-negative integer`);
  return v;
}

function keyIdOf(v: unknown, what: string): number {
  const id = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 0xffffffff) malformed(`${what} is not a key_id`);
  return id;
}

export function parseLeaderSidecarState(answer: unknown): LeaderSidecarState {
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) malformed('not an object');
  const a = answer as Record<string, unknown>;
  if (typeof a.storage_envelope_active !== 'boolean') malformed('storage_envelope_active is not a boolean');
  const cut = a.raft_envelope_cutover_index === null ? null : index(a.raft_envelope_cutover_index, 'raft_envelope_cutover_index');
  if (typeof a.active !== 'object' || a.active === null) malformed('active is not an object');
  const active: Partial<Record<Purpose, number>> = {};
  for (const purpose of PURPOSES) {
    const id = (a.active as Record<string, unknown>)[purpose];
    if (id !== undefined && id !== null) active[purpose] = keyIdOf(id, `active.${purpose}`);
  }
  if (!Array.isArray(a.keys)) malformed('keys is not an array');
  const keys = a.keys.map((v: unknown, i): KeyRecord => {
    if (typeof v !== 'object' || v === null) malformed(`keys[${i}] is not an object`);
    const k = v as Record<string, unknown>;
    if (k.purpose !== 'storage' && k.purpose !== 'raft') malformed(`keys[${i}].purpose`);
    if (typeof k.wrapped !== 'string' || k.wrapped.length === 0) malformed(`keys[${i}].wrapped`);
    if (typeof k.created !== 'string' || typeof k.kek !== 'string') malformed(`keys[${i}].created/kek`);
    return { keyId: keyIdOf(k.key_id, `keys[${i}].key_id`), purpose: k.purpose, wrapped: Uint8Array.from(Buffer.from(k.wrapped, 'base64')), created: k.created, kek: k.kek };
  });
  if (typeof a.registry_for_node !== 'object' || a.registry_for_node === null) malformed('registry_for_node is not an object');
  const registry = new Map<number, number>();
  for (const [id, epoch] of Object.entries(a.registry_for_node)) registry.set(keyIdOf(id, 'registry_for_node key'), index(epoch, `registry_for_node.${id}`));
  return { raftAppliedIndex: index(a.raft_applied_index, 'raft_applied_index'), storageEnvelopeActive: a.storage_envelope_active, raftEnvelopeCutoverIndex: cut, active, keys, registry };
}

/** The epoch rule of SPEC §10: above both this node's own and every epoch the cluster registered for it. */
export function recoveredEpoch(local: number | undefined, registered: number | undefined): number {
  const epoch = Math.max(local ?? 0, registered ?? 0) + 1;
  if (epoch > MAX_LOCAL_EPOCH) throw sealError('ErrLocalEpochExhausted', `a DEK would need local_epoch ${epoch} (above ${MAX_LOCAL_EPOCH}): rotate it from another node first`);
  return epoch;
}

/**
 * keys.json as the leader's answer describes it, for a node whose log no
 * longer holds its gap: every DEK at local_epoch max(old local, registered) + 1.
 * `appliedIndex` is the index to record (the answer's, capped by the caller
 * at this node's last log index: SPEC §10 refuses a sidecar past the log).
 */
export function stateFromLeader(leader: LeaderSidecarState, old: SidecarState, appliedIndex: number): SidecarState {
  const keys = new Map<number, SidecarKey>();
  for (const k of leader.keys) {
    keys.set(k.keyId, { keyId: k.keyId, purpose: k.purpose, wrapped: k.wrapped, created: k.created, kek: k.kek, localEpoch: recoveredEpoch(old.keys.get(k.keyId)?.localEpoch, leader.registry.get(k.keyId)) });
  }
  return { raftAppliedIndex: appliedIndex, storageEnvelopeActive: leader.storageEnvelopeActive, raftEnvelopeCutoverIndex: leader.raftEnvelopeCutoverIndex, active: { ...leader.active }, keys };
}

/**
 * Every DEK's local_epoch raised to at least `floor(keyId) + bump` (never
 * lowered): bump 1 with the leader's registry is the rollback recovery of
 * SPEC §10; bump 0 with this store's own registry rows makes the next
 * start's +1 land above every epoch this node registered.
 */
export function raiseEpochs(state: SidecarState, floor: (keyId: number) => number | undefined, bump: 0 | 1): SidecarState {
  const keys = new Map<number, SidecarKey>();
  for (const key of state.keys.values()) {
    const localEpoch = bump === 1 ? recoveredEpoch(key.localEpoch, floor(key.keyId)) : Math.max(key.localEpoch, floor(key.keyId) ?? 0);
    keys.set(key.keyId, { ...key, localEpoch });
  }
  return { ...state, keys };
}

export interface SidecarDiff {
  readonly keys_added: number[];
  readonly keys_retired: number[];
  readonly keys_rewrapped: number[];
  readonly epochs_raised: { key_id: number; from: number | null; to: number }[];
  readonly active: { from: Partial<Record<Purpose, number>>; to: Partial<Record<Purpose, number>> } | null;
  readonly storage_envelope_active: { from: boolean; to: boolean } | null;
  readonly raft_envelope_cutover_index: { from: number | null; to: number | null } | null;
  readonly raft_applied_index: { from: number; to: number };
}

/** What changed from `old` to `next`, for the operator (key_ids and epochs only). */
export function sidecarDiff(old: SidecarState, next: SidecarState): SidecarDiff {
  const ids = (m: ReadonlyMap<number, SidecarKey>) => [...m.keys()].sort((a, b) => a - b);
  const added = ids(next.keys).filter((id) => !old.keys.has(id));
  const sameActive = PURPOSES.every((p) => old.active[p] === next.active[p]);
  return {
    keys_added: added,
    keys_retired: ids(old.keys).filter((id) => !next.keys.has(id)),
    keys_rewrapped: ids(next.keys).filter((id) => {
      const before = old.keys.get(id);
      return before !== undefined && Buffer.compare(Buffer.from(before.wrapped), Buffer.from(next.keys.get(id)!.wrapped)) !== 0;
    }),
    epochs_raised: ids(next.keys)
      .filter((id) => (old.keys.get(id)?.localEpoch ?? -1) !== next.keys.get(id)!.localEpoch && (old.keys.has(id) || next.keys.get(id)!.localEpoch > 0))
      .map((id) => ({ key_id: id, from: old.keys.get(id)?.localEpoch ?? null, to: next.keys.get(id)!.localEpoch })),
    active: sameActive ? null : { from: { ...old.active }, to: { ...next.active } },
    storage_envelope_active: old.storageEnvelopeActive === next.storageEnvelopeActive ? null : { from: old.storageEnvelopeActive, to: next.storageEnvelopeActive },
    raft_envelope_cutover_index: old.raftEnvelopeCutoverIndex === next.raftEnvelopeCutoverIndex ? null : { from: old.raftEnvelopeCutoverIndex, to: next.raftEnvelopeCutoverIndex },
    raft_applied_index: { from: old.raftAppliedIndex, to: next.raftAppliedIndex },
  };
}
