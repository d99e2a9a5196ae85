// `sealkv encryption resync-sidecar` (SPEC §10): brings the keys.json of a
// STOPPED node up to its Raft log, after a start refused with
// ErrSidecarBehindRaftLog (or ErrLocalEpochRollback after a restore).
//
//   1. Open the store (RocksDB's LOCK: a running node → ErrDataDirLocked),
//      read its applied index, DEK rows and this node's registry rows, close.
//      Read the sidecar (absent → empty) and the Raft log, read-only
//      (SegmentLog.read never changes a file).
//   2. Log replay: every committed entry in (sidecar index, min(max(store
//      applied, log commit), log last)] that changes keys.json is applied to
//      the sidecar state in order, with its index (sidecarChangesFor, the same
//      changes the node's apply makes). Entries after the cutover are Raft
//      envelopes, opened with the raft DEKs (the sidecar's, unwrapped with the
//      KEK, and those the replayed entries carry).
//   3. The log no longer holds the gap → ErrLogCompactedPastSidecar, unless a
//      running node's admin API is given: then the leader's GetSidecarState is
//      written, every DEK at local_epoch max(old local, registered) + 1 —
//      also when a replayed Raft envelope does not open under this KEK (a KEK
//      rotation inside the gap: the old entries need the old KEK).
//      With the admin API and a log that does hold the gap, the replay is
//      followed by the same epoch rule (recovery from ErrLocalEpochRollback).
//   4. Every DEK of the result must unwrap under the given KEK before
//      anything is written (ErrKEKMismatch). The sidecar is written once,
//      durably, at the end — only if it changed.

import fs from 'node:fs';
import path from 'node:path';
import { Keystore, RAFT_AAD, Sealer, createBackend, nodeId16 } from '../crypto/index.js';
import {
  KEY_ROW_PREFIX,
  WRITER_ROW_PREFIX,
  decodeEncryptionPayload,
  decodeKeyRow,
  decodeWriterRow,
  keyIdOfKeyRow,
  parseLeaderSidecarState,
  raiseEpochs,
  sidecarChangesFor,
  sidecarDiff,
  stateFromLeader,
  type KeyRecord,
  type SidecarDiff,
} from '../encryption/index.js';
import { isSealError, sealError } from '../errors/index.js';
import { isEncryptionRelevant } from '../fsm/index.js';
import { kekConfigured, openKekProvider, type KekProvider } from '../kek/index.js';
import { BOOTSTRAP_INDEX, SegmentLog, decodeProposal } from '../raft/index.js';
import { Sidecar, applySidecarChanges, serializeSidecar, type SidecarChange, type SidecarState } from '../sidecar/index.js';
import { openStore } from '../store/index.js';

export interface ResyncOptions {
  readonly dataDir: string;
  readonly raftId: string;
  readonly kekUri?: string;
  readonly kekFile?: string;
  /** GetSidecarState for this --raft-id from a running node (`--admin`); absent without it. */
  readonly fetchLeaderState?: () => Promise<unknown>;
}

export interface ResyncReport extends SidecarDiff {
  /** 'log-replay', 'leader' (GetSidecarState written), or 'log-replay+leader-epochs'. */
  readonly source: string;
  /** Encryption-relevant entries replayed from the log. */
  readonly entries_replayed: number;
  /** Raft envelopes (entries after the cutover) opened during the replay. */
  readonly raft_envelopes_opened: number;
  /** False when keys.json was already what the resync would write. */
  readonly written: boolean;
}

interface StoreFacts {
  appliedIndex: number;
  keys: Map<number, KeyRecord>;
  /** This node's last registered local_epoch per key_id (rows naming this --raft-id). */
  registered: Map<number, number>;
}

export async function resyncSidecar(options: ResyncOptions): Promise<ResyncReport> {
  const dataDir = path.resolve(options.dataDir);
  if (options.raftId.length === 0) throw sealError('ErrBadRequest', '--raft-id is required');
  if (!kekConfigured(options)) throw sealError('ErrKEKRequired', 'resync-sidecar needs the node\'s KEK: --kek-uri or --kek-file');
  const storeDir = path.join(dataDir, 'store');
  if (!fs.existsSync(storeDir)) throw sealError('ErrBadRequest', `${dataDir} holds no store (${storeDir}): not a node's data dir`);
  const facts = await readStore(storeDir, options.raftId);
  const sidecar = (await Sidecar.exists(dataDir)) ? await Sidecar.load(dataDir) : Sidecar.empty(dataDir);
  const old = sidecar.state;
  const kek = openKekProvider({ ...options, dataDir });
  const keystore = new Keystore();
  try {
    const log = await SegmentLog.read(path.join(dataDir, 'raft', 'log'));
    let next: SidecarState;
    let source: string;
    let replayed = 0;
    let opened = 0;
    try {
      const last = log.lastIndex();
      const upTo = Math.min(Math.max(facts.appliedIndex, log.initialState().hardState.commit), last);
      const from = old.raftAppliedIndex;
      // A founding member's log starts after the bootstrap membership (index 1), which holds no entry.
      const gapHeld = from <= last && (from >= upTo || log.firstIndex() <= from + 1 || log.snapshot().index <= BOOTSTRAP_INDEX);
      let replayedState: SidecarState | undefined;
      if (gapHeld) {
        // A DEK the KEK does not open may be rewrapped in the gap; the final check below is strict.
        for (const key of old.keys.values()) await unwrapInto(kek, keystore, key, false);
        try {
          const result = await replay(log, old, from, upTo, facts, kek, keystore);
          replayedState = raiseEpochs(result.state, (id) => facts.registered.get(id), 0);
          replayed = result.replayed;
          opened = result.opened;
        } catch (err) {
          // A Raft envelope this KEK cannot open (a KEK rotation inside the gap): the leader's state will do, when asked for.
          if (!isSealError(err, 'ErrRaftUnwrapFailed') || options.fetchLeaderState === undefined) throw err;
        }
      } else if (options.fetchLeaderState === undefined) {
        throw from > last
          ? sealError('ErrSidecarCorrupt', `keys.json is current to Raft index ${from}, past this node's Raft log (last index ${last}); give --admin <a running node> to rewrite it from the leader's GetSidecarState`)
          : sealError(
              'ErrLogCompactedPastSidecar',
              `keys.json is current to Raft index ${from} but this node's Raft log starts at ${log.firstIndex()}: the entries in between were compacted; give --admin <a running node's admin address> (and --admin-token-file) to rewrite it from the leader's GetSidecarState`,
            );
      }
      if (options.fetchLeaderState === undefined) {
        next = replayedState!;
        source = 'log-replay';
      } else {
        const leader = parseLeaderSidecarState(await options.fetchLeaderState());
        if (replayedState !== undefined) {
          next = raiseEpochs(replayedState, (id) => leader.registry.get(id), 1);
          source = 'log-replay+leader-epochs';
        } else {
          // SPEC §10 refuses a sidecar past the log; entries up to the answer's index that this node has not received re-apply idempotently.
          next = stateFromLeader(leader, old, Math.min(leader.raftAppliedIndex, last));
          source = 'leader';
        }
      }
    } finally {
      await log.close();
    }
    // Nothing is written unless every DEK of the result opens under this KEK.
    for (const key of next.keys.values()) await unwrapInto(kek, keystore, key, true);
    const written = serializeSidecar(next) !== (sidecar.present ? serializeSidecar(old) : '');
    if (written) await sidecar.overwrite(next);
    return { source, entries_replayed: replayed, raft_envelopes_opened: opened, written, ...sidecarDiff(old, next) };
  } finally {
    keystore.clear();
    kek.close();
  }
}

async function readStore(storeDir: string, raftId: string): Promise<StoreFacts> {
  let store;
  try {
    store = await openStore(storeDir);
  } catch (err) {
    if (isSealError(err, 'ErrDataDirLocked')) {
      throw sealError('ErrDataDirLocked', `a node is running on ${path.dirname(storeDir)} (its store is locked): stop it, then run resync-sidecar again`, err);
    }
    throw err;
  }
  try {
    const keys = new Map<number, KeyRecord>();
    for (const { key, value } of await store.scanInternal(KEY_ROW_PREFIX)) {
      const id = keyIdOfKeyRow(key);
      keys.set(id, decodeKeyRow(id, value));
    }
    const registered = new Map<number, number>();
    const suffix = `|${nodeId16(raftId)}`;
    for (const { key, value } of await store.scanInternal(WRITER_ROW_PREFIX)) {
      const name = key.toString('latin1');
      if (!name.endsWith(suffix)) continue;
      const row = decodeWriterRow(value);
      if (row.fullNodeId === raftId) registered.set(Number(name.slice(WRITER_ROW_PREFIX.length, name.length - suffix.length)), row.lastSeenLocalEpoch);
    }
    return { appliedIndex: Number(await store.appliedIndex()), keys, registered };
  } finally {
    await store.close();
  }
}

/** Unwraps a DEK into the keystore; `must`: a failure is ErrKEKMismatch, else it is left for a later rewrap. */
async function unwrapInto(kek: KekProvider, keystore: Keystore, key: { keyId: number; purpose: 'storage' | 'raft'; wrapped: Uint8Array }, must: boolean): Promise<void> {
  let dek: Uint8Array;
  try {
    dek = await kek.unwrap(key.wrapped, { keyId: key.keyId, purpose: key.purpose });
  } catch (err) {
    if (!must) return;
    throw sealError('ErrKEKMismatch', `DEK ${key.keyId} (${key.purpose}) does not unwrap under ${kek.describe()} (${isSealError(err) ? err.code : 'error'}): give the KEK this node's DEKs are wrapped under; nothing was written`, err);
  }
  try {
    if (keystore.get(key.keyId) === undefined) keystore.install(key.keyId, key.purpose, dek);
  } finally {
    dek.fill(0);
  }
}

async function replay(
  log: SegmentLog,
  start: SidecarState,
  from: number,
  upTo: number,
  facts: StoreFacts,
  kek: KekProvider,
  keystore: Keystore,
): Promise<{ state: SidecarState; replayed: number; opened: number }> {
  let state = start;
  let replayed = 0;
  let opened = 0;
  const learned = new Map<number, KeyRecord>();
  const sealer = new Sealer({
    keystore,
    backend: createBackend('aesni'),
    nonceFactory: () => {
      throw new Error('resync-sidecar never seals');
    },
  });
  const ctx = {
    keyRecord: (id: number) => learned.get(id) ?? facts.keys.get(id),
    registeredEpoch: (id: number) => facts.registered.get(id),
  };
  for (let i = Math.max(from + 1, log.firstIndex()); i <= upTo; ) {
    const slice = log.entries(i, upTo + 1, 16 * 1024 * 1024);
    for (const entry of slice) {
      if (entry.type !== 'normal' || entry.data.length === 0) continue;
      let payload = decodeProposal(entry.data).payload;
      const cut = state.raftEnvelopeCutoverIndex;
      if (cut !== null && entry.index > cut) {
        payload = openRaft(sealer, keystore, entry.index, payload);
        opened++;
      }
      if (!isEncryptionRelevant(payload)) continue;
      const p = decodeEncryptionPayload(payload);
      if (p.kind === 'register') continue;
      if (p.kind === 'bootstrap') for (const k of p.keys) learned.set(k.keyId, k);
      if (p.kind === 'rotate-dek') learned.set(p.key.keyId, p.key);
      const changes = sidecarChangesFor(p, state, entry.index, ctx);
      state = applySidecarChanges(state, entry.index, changes);
      replayed++;
      for (const change of changes) await learnKey(change, state, kek, keystore);
    }
    i += slice.length;
  }
  return { state: upTo > state.raftAppliedIndex ? { ...state, raftAppliedIndex: upTo } : state, replayed, opened };
}

/** A DEK a replayed entry added or rewrapped goes into the keystore, when this KEK opens it (later raft envelopes may need it). */
async function learnKey(change: SidecarChange, state: SidecarState, kek: KekProvider, keystore: Keystore): Promise<void> {
  if (change.type !== 'add-key' && change.type !== 'rewrap-key') return;
  const key = state.keys.get(change.keyId);
  if (key !== undefined && keystore.get(key.keyId) === undefined) await unwrapInto(kek, keystore, key, false);
}

function openRaft(sealer: Sealer, keystore: Keystore, index: number, payload: Uint8Array): Uint8Array {
  try {
    const opened = sealer.openOne(payload, RAFT_AAD);
    if (keystore.get(opened.keyId)?.purpose !== 'raft') throw sealError('ErrEncryptedReadIntegrity', `key_id ${opened.keyId} is not a raft DEK`);
    return opened.plaintext;
  } catch (err) {
    throw sealError('ErrRaftUnwrapFailed', `raft entry ${index} could not be opened (${isSealError(err) ? err.code : 'open failed'}): its raft DEK is not in keys.json or the log under this KEK; nothing was written`, err);
  }
}
