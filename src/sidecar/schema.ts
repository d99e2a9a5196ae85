// The sidecar's schema (SPEC §4.3): the in-memory state, strict parsing of
// keys.json into it, the consistency rules every state must keep, and the
// canonical serialisation.
//
// Parsing is strict on purpose: an unknown field, a missing field, a wrong
// type or an inconsistent state is ErrSidecarCorrupt naming the problem,
// never a best-effort read — the node refuses to start rather than guess
// (SPEC §9). There is no checksum field: SPEC's format has none, and a
// half-written file cannot appear because every write is tmp + fsync +
// rename (src/durable); strict validation catches anything else.

import { MAX_LOCAL_EPOCH, PURPOSES, type Purpose } from '../crypto/index.js';
import { sealError } from '../errors/index.js';

export const SIDECAR_VERSION = 1;
/** Refuse to read more than this: a real sidecar holds a handful of keys. */
export const MAX_SIDECAR_BYTES = 1 << 20;

export interface SidecarKey {
  readonly keyId: number;
  readonly purpose: Purpose;
  /** The DEK wrapped by the KEK: opaque, safe to leak. */
  readonly wrapped: Uint8Array;
  /** RFC 3339 UTC timestamp of the key's creation. */
  readonly created: string;
  /** Nonce epoch of this node for this DEK, bumped at every start (uint16). */
  readonly localEpoch: number;
  /** The KEK provider that wrapped it, without secrets. */
  readonly kek: string;
}

export interface SidecarState {
  readonly raftAppliedIndex: number;
  readonly storageEnvelopeActive: boolean;
  /** Index of the Phase 2 cutover entry; null before Phase 2. */
  readonly raftEnvelopeCutoverIndex: number | null;
  readonly active: Readonly<Partial<Record<Purpose, number>>>;
  /** Unretired DEKs by key_id (retiring removes the entry). */
  readonly keys: ReadonlyMap<number, SidecarKey>;
}

export const EMPTY_SIDECAR_STATE: SidecarState = Object.freeze({
  raftAppliedIndex: 0,
  storageEnvelopeActive: false,
  raftEnvelopeCutoverIndex: null,
  active: Object.freeze({}),
  keys: new Map(),
});

const TOP_FIELDS = ['version', 'raft_applied_index', 'storage_envelope_active', 'raft_envelope_cutover_index', 'active', 'keys'];
const KEY_FIELDS = ['purpose', 'wrapped', 'created', 'local_epoch', 'kek'];
const DECIMAL_KEY_ID = /^[1-9]\d{0,9}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MAX_WRAPPED_BYTES = 6144;

/** Parses and validates keys.json; anything wrong is ErrSidecarCorrupt. */
export function parseSidecar(text: string, source = 'keys.json'): SidecarState {
  try {
    return parseStrict(text);
  } catch (err) {
    if (!(err instanceof InvalidSidecar)) throw err;
    throw sealError('ErrSidecarCorrupt', `${source}: ${err.message}; restore it from a backup (never delete it: it holds the only copies of the wrapped DEKs)`);
  }
}

/** What parseSidecar would refuse in `text`, or undefined when it is a valid sidecar. */
export function sidecarTextProblem(text: string): string | undefined {
  try {
    parseStrict(text);
    return undefined;
  } catch (err) {
    if (err instanceof InvalidSidecar) return err.message;
    throw err;
  }
}

class InvalidSidecar extends Error {}

function parseStrict(text: string): SidecarState {
  const corrupt = (reason: string) => new InvalidSidecar(reason);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt(`not JSON (${(err as Error).message})`);
  }
  const top = object(doc, 'the document', corrupt);
  exactFields(top, TOP_FIELDS, 'the document', corrupt);
  if (top.version !== SIDECAR_VERSION) throw corrupt(`version ${JSON.stringify(top.version)} is not ${SIDECAR_VERSION}`);
  const raftAppliedIndex = index(top.raft_applied_index, 'raft_applied_index', corrupt);
  if (typeof top.storage_envelope_active !== 'boolean') throw corrupt('storage_envelope_active is not a boolean');
  const cutover = top.raft_envelope_cutover_index === null ? null : index(top.raft_envelope_cutover_index, 'raft_envelope_cutover_index', corrupt);

  const activeDoc = object(top.active, 'active', corrupt);
  const active: Partial<Record<Purpose, number>> = {};
  for (const [purpose, keyId] of Object.entries(activeDoc)) {
    if (!isPurpose(purpose)) throw corrupt(`active names unknown purpose "${purpose}"`);
    if (!Number.isInteger(keyId) || (keyId as number) < 1 || (keyId as number) > 0xffffffff) {
      throw corrupt(`active.${purpose} is not a non-zero uint32 key_id`);
    }
    active[purpose] = keyId as number;
  }

  const keys = new Map<number, SidecarKey>();
  for (const [name, entry] of Object.entries(object(top.keys, 'keys', corrupt))) {
    if (!DECIMAL_KEY_ID.test(name) || Number(name) > 0xffffffff) {
      throw corrupt(`keys has "${name}", not the decimal form of a non-zero uint32 key_id`);
    }
    const keyId = Number(name);
    const where = `keys.${name}`;
    const e = object(entry, where, corrupt);
    exactFields(e, KEY_FIELDS, where, corrupt);
    if (!isPurpose(e.purpose)) throw corrupt(`${where}.purpose ${JSON.stringify(e.purpose)} is not one of ${PURPOSES.join(', ')}`);
    if (typeof e.wrapped !== 'string' || e.wrapped.length === 0 || !BASE64.test(e.wrapped)) throw corrupt(`${where}.wrapped is not base64`);
    const wrapped = Uint8Array.from(Buffer.from(e.wrapped, 'base64'));
    if (wrapped.length > MAX_WRAPPED_BYTES) throw corrupt(`${where}.wrapped is longer than ${MAX_WRAPPED_BYTES} bytes`);
    if (typeof e.created !== 'string' || !RFC3339_UTC.test(e.created) || Number.isNaN(Date.parse(e.created))) {
      throw corrupt(`${where}.created is not an RFC 3339 UTC timestamp`);
    }
    if (!Number.isInteger(e.local_epoch) || (e.local_epoch as number) < 0 || (e.local_epoch as number) > MAX_LOCAL_EPOCH) {
      throw corrupt(`${where}.local_epoch ${JSON.stringify(e.local_epoch)} is outside 0..${MAX_LOCAL_EPOCH}`);
    }
    if (typeof e.kek !== 'string' || e.kek.length === 0 || e.kek.length > 2048) throw corrupt(`${where}.kek is not a provider description`);
    keys.set(keyId, Object.freeze({ keyId, purpose: e.purpose, wrapped, created: e.created, localEpoch: e.local_epoch as number, kek: e.kek }));
  }

  const state = freezeState({ raftAppliedIndex, storageEnvelopeActive: top.storage_envelope_active, raftEnvelopeCutoverIndex: cutover, active, keys });
  const inconsistency = checkConsistency(state);
  if (inconsistency !== undefined) throw corrupt(inconsistency);
  return state;
}

/**
 * The rules a state must keep, beyond field types. Returns what is wrong,
 * or undefined. Used on read (→ ErrSidecarCorrupt) and before every write.
 */
export function checkConsistency(state: SidecarState): string | undefined {
  if (!Number.isSafeInteger(state.raftAppliedIndex) || state.raftAppliedIndex < 0) return 'raft_applied_index is not a non-negative integer';
  for (const purpose of PURPOSES) {
    const keyId = state.active[purpose];
    const hasKeys = [...state.keys.values()].some((k) => k.purpose === purpose);
    if (keyId === undefined) {
      if (hasKeys) return `there are ${purpose} keys but no active ${purpose} key_id`;
      continue;
    }
    const key = state.keys.get(keyId);
    if (key === undefined) return `active ${purpose} key_id ${keyId} is missing from keys`;
    if (key.purpose !== purpose) return `active ${purpose} key_id ${keyId} is a ${key.purpose} key`;
  }
  if (state.storageEnvelopeActive && state.active.storage === undefined) return 'storage_envelope_active is set without an active storage key';
  const cutover = state.raftEnvelopeCutoverIndex;
  if (cutover !== null) {
    if (!Number.isSafeInteger(cutover) || cutover < 1) return 'raft_envelope_cutover_index is not a positive integer';
    if (cutover > state.raftAppliedIndex) return `raft_envelope_cutover_index ${cutover} is past raft_applied_index ${state.raftAppliedIndex}`;
    if (state.active.raft === undefined) return 'raft_envelope_cutover_index is set without an active raft key';
  }
  return undefined;
}

/** Canonical keys.json text: fixed field order, keys by ascending key_id. */
export function serializeSidecar(state: SidecarState): string {
  const keys: Record<string, unknown> = {};
  for (const key of [...state.keys.values()].sort((a, b) => a.keyId - b.keyId)) {
    keys[String(key.keyId)] = {
      purpose: key.purpose,
      wrapped: Buffer.from(key.wrapped).toString('base64'),
      created: key.created,
      local_epoch: key.localEpoch,
      kek: key.kek,
    };
  }
  const active: Record<string, number> = {};
  for (const purpose of PURPOSES) {
    const keyId = state.active[purpose];
    if (keyId !== undefined) active[purpose] = keyId;
  }
  const doc = {
    version: SIDECAR_VERSION,
    raft_applied_index: state.raftAppliedIndex,
    storage_envelope_active: state.storageEnvelopeActive,
    raft_envelope_cutover_index: state.raftEnvelopeCutoverIndex,
    active,
    keys,
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

export function freezeState(state: SidecarState): SidecarState {
  return Object.freeze({ ...state, active: Object.freeze({ ...state.active }), keys: new Map(state.keys) });
}

function isPurpose(value: unknown): value is Purpose {
  return typeof value === 'string' && (PURPOSES as readonly string[]).includes(value);
}

type Corrupt = (reason: string) => Error;

function object(value: unknown, where: string, corrupt: Corrupt): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw corrupt(`${where} is not an object`);
  return value as Record<string, unknown>;
}

function exactFields(value: Record<string, unknown>, fields: readonly string[], where: string, corrupt: Corrupt): void {
  for (const field of fields) if (!(field in value)) throw corrupt(`${where} lacks "${field}"`);
  for (const field of Object.keys(value)) if (!fields.includes(field)) throw corrupt(`${where} has unknown field "${field}"`);
}

function index(value: unknown, where: string, corrupt: Corrupt): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw corrupt(`${where} is not a non-negative integer`);
  return value as number;
}
