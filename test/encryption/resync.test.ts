// The pure half of resync-sidecar (src/encryption/resync.ts): the sidecar
// changes of each encryption entry — checked against what the node's own
// apply (EncryptionRuntime over a real state machine and sidecar) writes for
// the same sequence, refused entries included — the GetSidecarState answer's
// parsing, the local_epoch rule of SPEC §10, and the diff shown to operators.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AesniBackend, Keystore, nodeId16 } from '../../src/crypto/index.js';
import {
  EncryptionRuntime,
  decodeEncryptionPayload,
  encodeEncryptionPayload,
  parseLeaderSidecarState,
  raiseEpochs,
  sidecarChangesFor,
  sidecarDiff,
  stateFromLeader,
  type EncryptionPayload,
  type KeyChangePayload,
  type KeyRecord,
  type ReplayContext,
} from '../../src/encryption/index.js';
import { isSealError } from '../../src/errors/index.js';
import { EXTENSION_TAGS, StateMachine, fsmStoreOver } from '../../src/fsm/index.js';
import { LocalKekProvider } from '../../src/kek/index.js';
import { kvExecutor } from '../../src/kv/index.js';
import { silentLogger } from '../../src/log/index.js';
import { EMPTY_SIDECAR_STATE, Sidecar, applySidecarChanges, serializeSidecar, type SidecarState } from '../../src/sidecar/index.js';
import { MemoryEngine, Store } from '../../src/store/index.js';
import { tempDir } from '../support/kek-fixtures.js';

const KEK = crypto.randomBytes(32);
const kek = new LocalKekProvider('file', KEK, 'file://test-kek');
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function key(keyId: number, purpose: 'storage' | 'raft'): Promise<KeyRecord> {
  return { keyId, purpose, wrapped: await kek.wrap(crypto.randomBytes(32), { keyId, purpose }), created: '2026-11-29T00:00:00Z', kek: 'file://test-kek' };
}

const writer = (raftId: string, localEpoch = 0) => ({ nodeId16: nodeId16(raftId), fullNodeId: raftId, localEpoch });
const NO_CONTEXT: ReplayContext = { keyRecord: () => undefined, registeredEpoch: () => undefined };

/** Folds the pure mapping over payloads at indexes 1..n. */
function fold(payloads: readonly EncryptionPayload[], ctx: ReplayContext = NO_CONTEXT, start: SidecarState = EMPTY_SIDECAR_STATE): SidecarState {
  let state = start;
  payloads.forEach((p, i) => {
    const index = start.raftAppliedIndex + i + 1;
    // Through the codec, as the log holds them.
    const decoded = decodeEncryptionPayload(encodeEncryptionPayload(p)) as KeyChangePayload;
    state = applySidecarChanges(state, index, sidecarChangesFor(decoded, state, index, ctx));
  });
  return state;
}

/** What the node's own apply writes to keys.json for the same entries (indexes 1..n). */
async function runtimeSidecar(payloads: readonly EncryptionPayload[]): Promise<SidecarState> {
  const dir = tempDir('resync-runtime');
  dirs.push(dir);
  const store = new Store(new MemoryEngine());
  const sidecar = Sidecar.empty(dir);
  const runtime = await EncryptionRuntime.open({ raftId: 'n1', store, keystore: new Keystore(), backend: new AesniBackend(), sidecar, kek, compression: false, logger: silentLogger() });
  const machine = await StateMachine.open(fsmStoreOver(store), kvExecutor, { writeGate: (n) => runtime.writeGate(n) });
  for (const tag of EXTENSION_TAGS) machine.handlers.register(tag, (p, tx) => runtime.handle(p, tx));
  let index = 0;
  for (const p of payloads) await machine.applyEntries([{ index: ++index, proposalId: BigInt(index), payload: encodeEncryptionPayload(p) }]);
  return (await Sidecar.load(dir)).state;
}

describe('sidecarChangesFor', () => {
  it('makes the same keys.json as the node\'s apply for a rollout with rotations, a rewrap, a retirement and refused entries', async () => {
    const [s1, r1, s2, r2, s3] = await Promise.all([key(11, 'storage'), key(12, 'raft'), key(21, 'storage'), key(22, 'raft'), key(31, 'storage')]);
    const writers = [writer('n1'), writer('n2')];
    const rewrapped = [s1, r1, s2, r2].map((k) => ({ keyId: k.keyId, wrapped: crypto.randomBytes(60), kek: 'file://other-kek' }));
    const payloads: EncryptionPayload[] = [
      { kind: 'enable-storage-envelope' }, // before bootstrap: refused
      { kind: 'bootstrap', keys: [s1, r1], writers },
      { kind: 'bootstrap', keys: [s2, r2], writers }, // already bootstrapped: refused
      { kind: 'enable-storage-envelope' },
      { kind: 'enable-storage-envelope' }, // again: no change
      { kind: 'rotate-dek', key: s2, writers },
      { kind: 'rotate-dek', key: s2, writers }, // key_id exists: refused
      { kind: 'enable-raft-envelope' },
      { kind: 'rotate-dek', key: r2, writers },
      { kind: 'retire-dek', keyId: s2.keyId }, // active: refused
      { kind: 'retire-dek', keyId: 999 }, // unknown: refused
      { kind: 'rewrap-deks', keys: rewrapped },
      { kind: 'retire-dek', keyId: s1.keyId },
      { kind: 'rotate-dek', key: s3, writers },
    ];
    const pure = fold(payloads);
    expect(serializeSidecar(pure)).toBe(serializeSidecar(await runtimeSidecar(payloads)));
    expect(pure.raftEnvelopeCutoverIndex).toBe(8);
    expect(pure.active).toEqual({ storage: 31, raft: 22 });
    expect([...pure.keys.keys()].sort()).toEqual([12, 21, 22, 31]);
    expect(pure.keys.get(12)!.kek).toBe('file://other-kek');
    expect(pure.storageEnvelopeActive).toBe(true);
  });

  it('a rewrap adds a DEK the sidecar lacks, above the epoch this node registered', async () => {
    const [s1, r1, s2] = await Promise.all([key(11, 'storage'), key(12, 'raft'), key(21, 'storage')]);
    const start = fold([{ kind: 'bootstrap', keys: [s1, r1], writers: [writer('n1')] }]);
    const ctx: ReplayContext = { keyRecord: (id) => (id === 21 ? s2 : undefined), registeredEpoch: (id) => (id === 21 ? 4 : undefined) };
    const wrapped = crypto.randomBytes(60);
    const changes = sidecarChangesFor({ kind: 'rewrap-deks', keys: [{ keyId: 11, wrapped, kek: 'k2' }, { keyId: 21, wrapped, kek: 'k2' }] }, start, 2, ctx);
    expect(changes).toEqual([
      { type: 'rewrap-key', keyId: 11, wrapped, kek: 'k2' },
      { type: 'add-key', keyId: 21, purpose: 'storage', wrapped, kek: 'k2', created: s2.created, localEpoch: 5 },
    ]);
    // A key nobody knows: the node's apply refuses the whole entry.
    expect(sidecarChangesFor({ kind: 'rewrap-deks', keys: [{ keyId: 11, wrapped, kek: 'k2' }, { keyId: 77, wrapped, kek: 'k2' }] }, start, 2, ctx)).toEqual([]);
  });

  it('a cutover at another index than the sidecar records is ErrEnvelopeCutoverDivergence; before bootstrap, ErrEncryptionApply', async () => {
    const [s1, r1] = await Promise.all([key(11, 'storage'), key(12, 'raft')]);
    expect(() => sidecarChangesFor({ kind: 'enable-raft-envelope' }, EMPTY_SIDECAR_STATE, 3, NO_CONTEXT)).toThrow(expect.objectContaining({ code: 'ErrEncryptionApply' }));
    const cut = fold([{ kind: 'bootstrap', keys: [s1, r1], writers: [writer('n1')] }, { kind: 'enable-raft-envelope' }]);
    expect(sidecarChangesFor({ kind: 'enable-raft-envelope' }, cut, 2, NO_CONTEXT)).toEqual([]);
    let err: unknown;
    try {
      sidecarChangesFor({ kind: 'enable-raft-envelope' }, cut, 9, NO_CONTEXT);
    } catch (e) {
      err = e;
    }
    expect(isSealError(err, 'ErrEnvelopeCutoverDivergence')).toBe(true);
  });
});

describe('GetSidecarState → keys.json', () => {
  const answer = (wrapped: Uint8Array) => ({
    raft_applied_index: 120,
    storage_envelope_active: true,
    raft_envelope_cutover_index: 40,
    active: { storage: 21, raft: 12 },
    keys: [
      { key_id: 12, purpose: 'raft', wrapped: Buffer.from(wrapped).toString('base64'), created: '2026-11-29T00:00:00Z', kek: 'file://test-kek' },
      { key_id: 21, purpose: 'storage', wrapped: Buffer.from(wrapped).toString('base64'), created: '2026-11-29T01:00:00Z', kek: 'file://test-kek' },
    ],
    registry_for_node: { '12': 7, '21': 0 },
  });

  it('writes the leader\'s state with local_epoch = max(local, registered) + 1 and the index capped by the caller', async () => {
    const [s1, r1] = await Promise.all([key(11, 'storage'), key(12, 'raft')]);
    let old = fold([{ kind: 'bootstrap', keys: [s1, r1], writers: [writer('n1')] }]);
    old = raiseEpochs(old, () => 9, 0); // the old sidecar: both at 9
    const leader = parseLeaderSidecarState(answer(r1.wrapped));
    const next = stateFromLeader(leader, old, 100);
    expect(next.raftAppliedIndex).toBe(100);
    expect(next.raftEnvelopeCutoverIndex).toBe(40);
    expect(next.active).toEqual({ storage: 21, raft: 12 });
    expect(next.keys.get(12)!.localEpoch).toBe(10); // max(9, 7) + 1
    expect(next.keys.get(21)!.localEpoch).toBe(1); // new here: max(0, 0) + 1
    expect(Buffer.from(next.keys.get(21)!.wrapped).equals(Buffer.from(r1.wrapped))).toBe(true);
    const diff = sidecarDiff(old, next);
    expect(diff.keys_added).toEqual([21]);
    expect(diff.keys_retired).toEqual([11]);
    expect(diff.epochs_raised).toEqual([
      { key_id: 12, from: 9, to: 10 },
      { key_id: 21, from: null, to: 1 },
    ]);
    expect(diff.raft_applied_index).toEqual({ from: 1, to: 100 });
    expect(diff.raft_envelope_cutover_index).toEqual({ from: null, to: 40 });
    expect(serializeSidecar(next)).toContain('"local_epoch": 10');
  });

  it('refuses a malformed answer with ErrAdminRequest', () => {
    const good = answer(crypto.randomBytes(60));
    for (const bad of [null, [], { ...good, keys: 'x' }, { ...good, raft_applied_index: -1 }, { ...good, registry_for_node: { zero: 1 } }, { ...good, active: { storage: 0 } }]) {
      expect(() => parseLeaderSidecarState(bad)).toThrow(expect.objectContaining({ code: 'ErrAdminRequest' }));
    }
  });

  it('raiseEpochs: bump 1 goes above both sides (rollback recovery), bump 0 only up to the floor, never down; 0xFFFF is exhausted', async () => {
    const [s1, r1] = await Promise.all([key(11, 'storage'), key(12, 'raft')]);
    const start = raiseEpochs(fold([{ kind: 'bootstrap', keys: [s1, r1], writers: [writer('n1')] }]), (id) => (id === 11 ? 5 : 2), 0);
    expect([start.keys.get(11)!.localEpoch, start.keys.get(12)!.localEpoch]).toEqual([5, 2]);
    const up = raiseEpochs(start, (id) => (id === 11 ? 3 : 8), 1);
    expect([up.keys.get(11)!.localEpoch, up.keys.get(12)!.localEpoch]).toEqual([6, 9]);
    const same = raiseEpochs(up, () => 1, 0);
    expect([same.keys.get(11)!.localEpoch, same.keys.get(12)!.localEpoch]).toEqual([6, 9]);
    expect(() => raiseEpochs(up, () => 0xffff, 1)).toThrow(expect.objectContaining({ code: 'ErrLocalEpochExhausted' }));
  });
});
