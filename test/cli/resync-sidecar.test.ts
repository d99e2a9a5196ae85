// resync-sidecar's offline run (src/cli/resync-sidecar.ts) in process, over
// a real store, a real segment log and a file KEK in temp dirs: replay into
// an absent sidecar through a cutover (the later entries are Raft envelopes
// opened with the raft DEK), a second run that finds nothing to write, the
// KEK check before any write, the leader's state when an envelope does not
// open under the KEK given, a compacted log with and without a leader's
// answer (epoch rule), and the refusal while the store is open elsewhere.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AesniBackend, Keystore, NonceFactory, RAFT_AAD, Sealer } from '../../src/crypto/index.js';
import { resyncSidecar } from '../../src/cli/resync-sidecar.js';
import { encodeEncryptionPayload, type EncryptionPayload, type KeyRecord } from '../../src/encryption/index.js';
import { encodeCeilingPayload } from '../../src/fsm/index.js';
import { loadFileKek } from '../../src/kek/index.js';
import { SegmentLog, encodeProposal, type Entry } from '../../src/raft/index.js';
import { Sidecar, sidecarPath } from '../../src/sidecar/index.js';
import { openStore } from '../../src/store/index.js';
import { expectSealError, tempDir } from '../support/kek-fixtures.js';
import { MAIN_JS } from '../support/node-process.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function kekFile(root: string, name: string): string {
  const file = path.join(root, name);
  fs.writeFileSync(file, crypto.randomBytes(32), { mode: 0o600 });
  return file;
}

interface Fixture {
  dataDir: string;
  kek: string;
  otherKek: string;
  storage: KeyRecord;
  raft: KeyRecord;
  rotated: KeyRecord;
  /** The DEK bytes by key_id (to wrap them again under another KEK). */
  deks: Map<number, Buffer>;
}

/**
 * A stopped node's data dir: log entries 2..6 = bootstrap, enable-raft-envelope
 * (cutover at 3), then wrapped: rotate-dek storage, an HLC ceiling, enable-storage;
 * commit 6; the store applied 5. No sidecar.
 */
async function fixture(compactTo?: number): Promise<Fixture> {
  const root = tempDir('resync-cli');
  dirs.push(root);
  const dataDir = path.join(root, 'data');
  const kek = kekFile(root, 'kek.bin');
  const otherKek = kekFile(root, 'other-kek.bin');
  const provider = loadFileKek(kek);
  const deks = new Map<number, Buffer>();
  const key = async (keyId: number, purpose: 'storage' | 'raft'): Promise<KeyRecord> => {
    const dek = crypto.randomBytes(32);
    deks.set(keyId, dek);
    return { keyId, purpose, wrapped: await provider.wrap(dek, { keyId, purpose }), created: '2026-11-29T00:00:00Z', kek: provider.describe() };
  };
  const [storage, raft, rotated] = [await key(11, 'storage'), await key(12, 'raft'), await key(21, 'storage')];
  provider.close();
  const keystore = new Keystore();
  keystore.install(12, 'raft', deks.get(12)!);
  keystore.setActive('raft', 12);
  const sealer = new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId: 7, localEpoch: 1 }) });
  const writers = [{ nodeId16: 1, fullNodeId: 'n1', localEpoch: 0 }];
  const clear = (p: EncryptionPayload) => encodeEncryptionPayload(p);
  const wrapped = (payload: Uint8Array) => sealer.sealOne('raft', payload, 0, RAFT_AAD);
  const payloads = [
    clear({ kind: 'bootstrap', keys: [storage, raft], writers }),
    clear({ kind: 'enable-raft-envelope' }),
    wrapped(clear({ kind: 'rotate-dek', key: rotated, writers })),
    wrapped(encodeCeilingPayload(123n)),
    wrapped(clear({ kind: 'enable-storage-envelope' })),
  ];
  const entries: Entry[] = payloads.map((p, i) => ({ index: i + 2, term: 2, type: 'normal', data: encodeProposal(BigInt(i + 1), p) }));
  const log = await SegmentLog.open({ dir: path.join(dataDir, 'raft', 'log'), bootstrap: { voters: [1], learners: [] } });
  await log.save({ entries, hardState: { term: 2, vote: 1, commit: 6 } }, true);
  if (compactTo !== undefined) await log.compact(compactTo, { voters: [1], learners: [] });
  await log.close();
  const store = await openStore(path.join(dataDir, 'store'));
  await store.applyBatch([], { appliedIndex: 5n });
  await store.close();
  return { dataDir, kek, otherKek, storage, raft, rotated, deks };
}

describe('resync-sidecar (offline, in process)', () => {
  it('replays bootstrap, the cutover and the wrapped entries after it into an absent sidecar; a second run writes nothing', async () => {
    const f = await fixture();
    const report = await resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek });
    expect(report).toMatchObject({
      source: 'log-replay',
      written: true,
      entries_replayed: 4,
      raft_envelopes_opened: 3,
      keys_added: [11, 12, 21],
      raft_applied_index: { from: 0, to: 6 },
      raft_envelope_cutover_index: { from: null, to: 3 },
      storage_envelope_active: { from: false, to: true },
    });
    const state = (await Sidecar.load(f.dataDir)).state;
    expect(state.active).toEqual({ storage: 21, raft: 12 });
    expect(state.raftAppliedIndex).toBe(6);
    const again = await resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek });
    expect(again.written).toBe(false);
    expect(again.keys_added).toEqual([]);
  });

  it('the CLI prints what changed, one fact per line (compiled sealkv)', async () => {
    const f = await fixture();
    const out = execFileSync(process.execPath, [MAIN_JS, 'encryption', 'resync-sidecar', '--data-dir', f.dataDir, '--raft-id', 'n1', '--kek-file', f.kek], { encoding: 'utf8' });
    expect(out.split('\n').filter((l) => l.length > 0)).toEqual([
      'keys.json rewritten (log-replay; 4 encryption entries replayed, 3 raft envelopes opened)',
      'raft_applied_index: 0 -> 6',
      'keys added: 11, 12, 21',
      'active: {} -> {"storage":21,"raft":12}',
      'storage_envelope_active: false -> true',
      'raft_envelope_cutover_index: none -> 3',
    ]);
  });

  it('writes nothing when the DEKs do not unwrap under the KEK given (ErrRaftUnwrapFailed / ErrKEKMismatch)', async () => {
    const f = await fixture();
    // The cutover's envelopes cannot be opened without the raft DEK.
    await expectSealError(resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.otherKek }), 'ErrRaftUnwrapFailed');
    expect(fs.existsSync(sidecarPath(f.dataDir))).toBe(false);
    await resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek });
    const before = fs.readFileSync(sidecarPath(f.dataDir), 'utf8');
    await expectSealError(resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.otherKek }), 'ErrKEKMismatch');
    expect(fs.readFileSync(sidecarPath(f.dataDir), 'utf8')).toBe(before);
  });

  it('with --admin, a replay that meets an envelope the KEK cannot open (KEK rotated in the gap) takes the leader\'s state', async () => {
    const f = await fixture();
    // The cluster's DEKs rewrapped under the other KEK (rewrap-deks to a new KEK), as the leader reports them.
    const rewrap = loadFileKek(f.otherKek);
    const keys = [];
    for (const k of [f.storage, f.raft, f.rotated]) {
      const wrapped = await rewrap.wrap(f.deks.get(k.keyId)!, { keyId: k.keyId, purpose: k.purpose });
      keys.push({ key_id: k.keyId, purpose: k.purpose, wrapped: Buffer.from(wrapped).toString('base64'), created: k.created, kek: rewrap.describe() });
    }
    rewrap.close();
    const answer = { raft_applied_index: 6, storage_envelope_active: true, raft_envelope_cutover_index: 3, active: { storage: 21, raft: 12 }, keys, registry_for_node: {} };
    const report = await resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.otherKek, fetchLeaderState: async () => answer });
    expect(report.source).toBe('leader');
    expect(report.keys_added).toEqual([11, 12, 21]);
    expect((await Sidecar.load(f.dataDir)).state.keys.get(12)!.kek).toBe(keys[1]!.kek);
  });

  it('a log compacted past the gap: ErrLogCompactedPastSidecar, or the leader\'s answer with local_epoch = max(local, registered) + 1', async () => {
    const f = await fixture(4);
    await expectSealError(resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek }), 'ErrLogCompactedPastSidecar');
    const b64 = (k: KeyRecord) => Buffer.from(k.wrapped).toString('base64');
    const answer = {
      raft_applied_index: 40, // past this node's log (last index 6): capped
      storage_envelope_active: true,
      raft_envelope_cutover_index: 3,
      active: { storage: 21, raft: 12 },
      keys: [f.storage, f.raft, f.rotated].map((k) => ({ key_id: k.keyId, purpose: k.purpose, wrapped: b64(k), created: k.created, kek: k.kek })),
      registry_for_node: { '11': 4, '21': 0 },
    };
    const report = await resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek, fetchLeaderState: async () => answer });
    expect(report.source).toBe('leader');
    const state = (await Sidecar.load(f.dataDir)).state;
    expect(state.raftAppliedIndex).toBe(6);
    expect([...state.keys.values()].map((k) => [k.keyId, k.localEpoch])).toEqual([
      [11, 5],
      [12, 1],
      [21, 1],
    ]);
    // Not with a KEK that does not open them: nothing written.
    const before = fs.readFileSync(sidecarPath(f.dataDir), 'utf8');
    await expectSealError(resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.otherKek, fetchLeaderState: async () => answer }), 'ErrKEKMismatch');
    expect(fs.readFileSync(sidecarPath(f.dataDir), 'utf8')).toBe(before);
  });

  it('refuses while the store is open (a running node) with ErrDataDirLocked, and a dir without a store', async () => {
    const f = await fixture();
    const store = await openStore(path.join(f.dataDir, 'store'));
    try {
      const err = await expectSealError(resyncSidecar({ dataDir: f.dataDir, raftId: 'n1', kekFile: f.kek }), 'ErrDataDirLocked');
      expect(err.message).toMatch(/stop it/);
    } finally {
      await store.close();
    }
    await expectSealError(resyncSidecar({ dataDir: path.join(f.dataDir, 'nothing'), raftId: 'n1', kekFile: f.kek }), 'ErrBadRequest');
    expect(fs.existsSync(sidecarPath(f.dataDir))).toBe(false);
  });
});
