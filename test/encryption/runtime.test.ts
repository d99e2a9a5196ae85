// The rollout's apply side over the real state machine and store (memory
// engine), a real sidecar in a temp dir and a file-kind KEK: bootstrap,
// Phase 1 sealing from the flag entry on, the writer registry's four apply
// cases, the unregistered-writer halt, replay idempotence, the raft
// envelope's index-gated unwrap, proposal admission, and snapshots.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AesniBackend, Keystore, nodeId16 } from '../../src/crypto/index.js';
import { EncryptionRuntime, encodeEncryptionPayload, isRaftEnvelope, type KeyRecord } from '../../src/encryption/index.js';
import { isSealError } from '../../src/errors/index.js';
import { EXTENSION_TAGS, StateMachine, encodeCeilingPayload, encodeRequestPayload, fsmStoreOver, packHlc, type EntryToApply } from '../../src/fsm/index.js';
import { LocalKekProvider } from '../../src/kek/index.js';
import { kvExecutor } from '../../src/kv/index.js';
import { silentLogger } from '../../src/log/index.js';
import { Sidecar } from '../../src/sidecar/index.js';
import { MemoryEngine, Store, decodeValue } from '../../src/store/index.js';
import { tempDir } from '../support/kek-fixtures.js';

const T0 = 1_800_000_000_000;
const KEK = crypto.randomBytes(32);
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface TestNode {
  raftId: string;
  store: Store;
  sidecar: Sidecar;
  runtime: EncryptionRuntime;
  machine: StateMachine;
  dir: string;
}

async function openNode(raftId: string, reuse?: { store?: Store; sidecar?: Sidecar; keystore?: Keystore; dir?: string }): Promise<TestNode> {
  const dir = reuse?.dir ?? tempDir('enc-runtime');
  if (reuse?.dir === undefined) dirs.push(dir);
  const store = reuse?.store ?? new Store(new MemoryEngine());
  const sidecar = reuse?.sidecar ?? Sidecar.empty(dir);
  const runtime = await EncryptionRuntime.open({
    raftId,
    store,
    keystore: reuse?.keystore ?? new Keystore(),
    backend: new AesniBackend(),
    sidecar,
    kek: new LocalKekProvider('file', KEK, 'file://test-kek'),
    compression: false,
    logger: silentLogger(),
  });
  const machine = await StateMachine.open(fsmStoreOver(store), kvExecutor, {
    writeGate: (n) => runtime.writeGate(n),
    snapshotCutover: () => runtime.snapshotCutover(),
    afterRestore: (info) => runtime.afterRestore(info),
  });
  for (const tag of EXTENSION_TAGS) machine.handlers.register(tag, (p, tx) => runtime.handle(p, tx));
  return { raftId, store, sidecar, runtime, machine, dir };
}

async function newKeys(): Promise<KeyRecord[]> {
  const kek = new LocalKekProvider('file', KEK, 'file://test-kek');
  const keys: KeyRecord[] = [];
  for (const [keyId, purpose] of [
    [1001, 'storage'],
    [2002, 'raft'],
  ] as const) {
    keys.push({ keyId, purpose, wrapped: await kek.wrap(crypto.randomBytes(32), { keyId, purpose }), created: '2026-11-29T00:00:00Z', kek: 'file://test-kek' });
  }
  return keys;
}

/** Another raft id whose node_id16 equals that of `raftId`. */
function collidingId(raftId: string): string {
  const target = nodeId16(raftId);
  for (let i = 0; ; i++) if (nodeId16(`c${i}`) === target && `c${i}` !== raftId) return `c${i}`;
}

function writer(raftId: string, localEpoch = 0) {
  return { nodeId16: nodeId16(raftId), fullNodeId: raftId, localEpoch };
}

const setReq = (key: string, value: string) => ({ op: 'set', key: Buffer.from(key), value: Buffer.from(value) });

/** Entry factory with increasing indexes and proposal ids. */
function log() {
  let index = 0;
  return (payload: Uint8Array, proposalId = BigInt(index + 1)): EntryToApply => ({ index: ++index, proposalId, payload });
}

async function applyOne(node: TestNode, entry: EntryToApply): Promise<unknown> {
  const [result] = await node.machine.applyEntries([entry]);
  return result?.outcome.kind === 'extension' ? result.outcome.result : result?.outcome;
}

async function storedKeyIds(store: Store): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const v of store.versions()) out.set(v.key.toString(), v.keyId);
  return out;
}

describe('encryption entries at apply', () => {
  it('bootstrap installs the DEKs on every replica, rows in the store, sidecar durable; a second bootstrap is refused', async () => {
    const keys = await newKeys();
    const a = await openNode('n1');
    const b = await openNode('n2');
    const entry = log();
    const boot = entry(encodeEncryptionPayload({ kind: 'bootstrap', keys, writers: [writer('n1'), writer('n2')] }));
    for (const node of [a, b]) {
      expect(await applyOne(node, boot)).toEqual({ ok: true });
      expect(node.runtime.keystore.keyIds()).toEqual([1001, 2002]);
      expect(node.runtime.rollout.active).toEqual({ storage: 1001, raft: 2002 });
      expect(node.sidecar.state.raftAppliedIndex).toBe(1);
      expect((await Sidecar.load(node.dir)).state.keys.size).toBe(2);
      expect(node.runtime.isRegisteredThisLifetime(1001)).toBe(true);
    }
    const again = await newKeys();
    const second = entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: again.map((k) => ({ ...k, keyId: k.keyId + 1 })), writers: [writer('n1')] }));
    expect(await applyOne(a, second)).toMatchObject({ ok: false });
    expect(a.runtime.keystore.keyIds()).toEqual([1001, 2002]);
    // The refused entry still moves the sidecar's index.
    expect(a.sidecar.state.raftAppliedIndex).toBe(2);
  });

  it('Phase 1 seals every write from the flag entry on, even inside one apply call', async () => {
    const n = await openNode('n1');
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1')] })));
    await n.machine.applyEntries([
      entry(encodeRequestPayload(setReq('before', 'clear'), packHlc(T0))),
      entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })),
      entry(encodeRequestPayload(setReq('after', 'sealed'), packHlc(T0 + 1))),
    ]);
    const ids = await storedKeyIds(n.store);
    expect(ids.get('before')).toBe(0);
    expect(ids.get('after')).toBe(1001);
    expect((await n.store.get(Buffer.from('after'), (1n << 64n) - 1n))?.value.toString()).toBe('sealed');
    expect(n.sidecar.state.storageEnvelopeActive).toBe(true);
  });

  it('a replica that must seal without a registry row halts apply and does not advance', async () => {
    const n = await openNode('n3');
    n.runtime.isMember = () => true;
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1')] })));
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })));
    const err = await n.machine.applyEntries([entry(encodeRequestPayload(setReq('k', 'v'), packHlc(T0)))]).catch((e: unknown) => e);
    expect(isSealError(err, 'ErrEncryptionApply')).toBe(true);
    expect(n.machine.appliedIndex).toBe(2);
    expect(await storedKeyIds(n.store)).toEqual(new Map());
  });

  it('a node replaying entries from before it joined seals them without a row of its own', async () => {
    const n = await openNode('n4');
    n.runtime.isMember = () => false;
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1')] })));
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })));
    await n.machine.applyEntries([entry(encodeRequestPayload(setReq('k', 'v'), packHlc(T0)))]);
    expect((await storedKeyIds(n.store)).get('k')).toBe(1001);
  });

  it('writer registry: insert, higher epoch, rollback, collision', async () => {
    const n = await openNode('n1');
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1')] })));
    const reg = (raftId: string, localEpoch: number, node16 = nodeId16(raftId)) =>
      entry(encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 1001, nodeId16: node16, fullNodeId: raftId, localEpoch }], reason: 'start' }));
    expect(await applyOne(n, reg('n9', 3))).toEqual({ ok: true });
    expect(await applyOne(n, reg('n9', 4))).toEqual({ ok: true });
    expect(await applyOne(n, reg('n9', 4))).toMatchObject({ ok: false, code: 'ErrLocalEpochRollback' });
    expect(await applyOne(n, reg('n9', 2))).toMatchObject({ ok: false, code: 'ErrLocalEpochRollback' });
    expect(await applyOne(n, reg('intruder', 9, nodeId16('n9')))).toMatchObject({ ok: false, code: 'ErrNodeIDCollision' });
    // Under a key that does not exist.
    const unknown = entry(encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 77, ...writer('n9', 5) }], reason: 'start' }));
    expect(await applyOne(n, unknown)).toMatchObject({ ok: false, code: 'ErrUnknownKeyId' });
  });

  it('a row loaded at start never counts as this process registering, even at the same epoch (a restored copy)', async () => {
    const keys = await newKeys();
    const first = await openNode('n1');
    await applyOne(first, { index: 1, proposalId: 1n, payload: encodeEncryptionPayload({ kind: 'bootstrap', keys, writers: [writer('n1')] }) });
    expect(first.runtime.isRegisteredThisLifetime(1001)).toBe(true);
    // The same store and sidecar opened again: epoch 0 is recorded, and the sidecar still says 0.
    const again = await openNode('n1', { store: first.store, sidecar: await Sidecar.load(first.dir), keystore: first.runtime.keystore, dir: first.dir });
    expect(again.runtime.myRows().get(1001)?.lastSeenLocalEpoch).toBe(0);
    expect(again.runtime.isRegisteredThisLifetime(1001)).toBe(false);
    expect(again.runtime.unregisteredKeys()).toEqual([1001, 2002]);
  });

  it('a twice-committed registration applies once (proposal-id dedupe)', async () => {
    const n = await openNode('n1');
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1')] })));
    const payload = encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 1001, ...writer('n5', 1) }], reason: 'join' });
    expect(await applyOne(n, entry(payload, 4242n))).toEqual({ ok: true });
    expect(await applyOne(n, entry(payload, 4242n))).toEqual({ ok: true });
  });

  it('replay of an entry the sidecar already holds re-stages its rows and leaves the sidecar alone', async () => {
    const keys = await newKeys();
    const first = await openNode('n1');
    const boot: EntryToApply = { index: 1, proposalId: 1n, payload: encodeEncryptionPayload({ kind: 'bootstrap', keys, writers: [writer('n1')] }) };
    await applyOne(first, boot);
    const before = fs.readFileSync(first.sidecar.file, 'utf8');
    // A crash after the sidecar write but before the store batch: the store lost the entry.
    const second = await openNode('n1', { sidecar: await Sidecar.load(first.dir), keystore: first.runtime.keystore, dir: first.dir });
    expect(await applyOne(second, boot)).toEqual({ ok: true });
    expect(fs.readFileSync(first.sidecar.file, 'utf8')).toBe(before);
    expect(second.runtime.rollout.active).toEqual({ storage: 1001, raft: 2002 });
  });
});

describe('key changes and start-up checks', () => {
  async function bootstrapped(raftId = 'n1') {
    const n = await openNode(raftId);
    const entry = log();
    const keys = await newKeys();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys, writers: [writer(raftId), writer('n2')] })));
    return { n, entry, keys };
  }

  async function wrapped(keyId: number, purpose: 'storage' | 'raft'): Promise<KeyRecord> {
    const kek = new LocalKekProvider('file', KEK, 'file://test-kek');
    return { keyId, purpose, wrapped: await kek.wrap(crypto.randomBytes(32), { keyId, purpose }), created: '2026-11-29T00:00:00Z', kek: 'file://test-kek' };
  }

  it('rotate-dek makes the new DEK active and registers the writers under it', async () => {
    const { n, entry } = await bootstrapped();
    const key = await wrapped(3003, 'storage');
    expect(await applyOne(n, entry(encodeEncryptionPayload({ kind: 'rotate-dek', key, writers: [writer('n1'), writer('n2')] })))).toEqual({ ok: true });
    expect(n.runtime.rollout.active.storage).toBe(3003);
    expect(n.runtime.keystore.active('storage')?.keyId).toBe(3003);
    expect(n.sidecar.state.active.storage).toBe(3003);
    expect((await n.runtime.writersUnder(3003)).map((w) => w.fullNodeId).sort()).toEqual(['n1', 'n2']);
    expect(n.runtime.isRegisteredThisLifetime(3003)).toBe(true);
    // Retiring the active one is refused; retiring the old one drops it and its rows.
    expect(await applyOne(n, entry(encodeEncryptionPayload({ kind: 'retire-dek', keyId: 3003 })))).toMatchObject({ ok: false });
    expect(await applyOne(n, entry(encodeEncryptionPayload({ kind: 'retire-dek', keyId: 1001 })))).toEqual({ ok: true });
    expect(n.runtime.keystore.get(1001)).toBeUndefined();
    expect(await n.runtime.writersUnder(1001)).toEqual([]);
  });

  it('rotate-dek records when the old DEK stopped being active; retire-dek drops the DEK, its writer rows, that record and its sidecar entry, and a version under it is ErrUnknownKeyId', async () => {
    const { n, entry } = await bootstrapped();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })));
    await n.machine.applyEntries([entry(encodeRequestPayload(setReq('old', 'sealed-under-1001'), packHlc(T0)))]);
    expect((await storedKeyIds(n.store)).get('old')).toBe(1001);
    const rotation = entry(encodeEncryptionPayload({ kind: 'rotate-dek', key: await wrapped(3003, 'storage'), writers: [writer('n1'), writer('n2')] }));
    expect(await applyOne(n, rotation)).toEqual({ ok: true });
    // Every version sealed under 1001 has a commit timestamp below belowTs.
    expect(await n.runtime.supersededOf(1001)).toEqual({ index: rotation.index, belowTs: packHlc(T0 + 1) });
    expect(await n.runtime.supersededOf(3003)).toBeUndefined();
    expect(await applyOne(n, entry(encodeEncryptionPayload({ kind: 'retire-dek', keyId: 1001 })))).toEqual({ ok: true });
    expect(await n.runtime.supersededOf(1001)).toBeUndefined();
    expect(await n.runtime.writersUnder(1001)).toEqual([]);
    expect((await n.runtime.storeKeys()).map((k) => k.keyId).sort()).toEqual([2002, 3003]);
    expect([...(await Sidecar.load(n.dir)).state.keys.keys()].sort()).toEqual([2002, 3003]);
    const read = await n.store.get(Buffer.from('old'), (1n << 64n) - 1n).catch((e: unknown) => e);
    expect(isSealError(read, 'ErrUnknownKeyId')).toBe(true);
    // A registration under the retired DEK is refused.
    const late = entry(encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 1001, ...writer('n1', 9) }], reason: 'start' }));
    expect(await applyOne(n, late)).toMatchObject({ ok: false, code: 'ErrUnknownKeyId' });
  });

  it('the leader admits only payloads wrapped under its active raft DEK (a proposer behind a rotation retries)', async () => {
    const { n, entry } = await bootstrapped();
    const cut = entry(encodeEncryptionPayload({ kind: 'enable-raft-envelope' }));
    n.runtime.applyHook(cut, cut.payload!);
    await applyOne(n, cut);
    const plain = encodeCeilingPayload(packHlc(T0));
    const underOld = n.runtime.wrapProposal(plain);
    expect(n.runtime.admitProposal(underOld)).toBeUndefined();
    expect(await applyOne(n, entry(encodeEncryptionPayload({ kind: 'rotate-dek', key: await wrapped(4004, 'raft'), writers: [writer('n1')] })))).toEqual({ ok: true });
    expect(n.runtime.admitProposal(underOld)?.code).toBe('ErrProposalDropped');
    const underNew = n.runtime.wrapProposal(plain);
    expect(Buffer.from(underNew).readUInt32BE(2)).toBe(4004);
    expect(n.runtime.admitProposal(underNew)).toBeUndefined();
  });

  it('rewrap-deks rewraps what the sidecar has and adds what it lacks, above the registered epoch', async () => {
    const { n, entry } = await bootstrapped();
    // A registration at epoch 4 for this node under the raft DEK, then the sidecar loses that DEK.
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 2002, ...writer('n1', 4) }], reason: 'start' })));
    const kek = new LocalKekProvider('file', KEK, 'file://test-kek');
    const storageBytes = n.runtime.keystore.get(1001)!.key;
    const raftBytes = Uint8Array.from(n.runtime.keystore.get(2002)!.key);
    const lost = new Map(n.sidecar.state.keys);
    lost.delete(2002);
    await n.sidecar.overwrite({ ...n.sidecar.state, keys: lost, active: { storage: 1001 } });
    const keystore = new Keystore();
    keystore.install(1001, 'storage', storageBytes);
    keystore.setActive('storage', 1001);
    const stuck = await openNode('n1', { store: n.store, sidecar: n.sidecar, keystore, dir: n.dir });
    const rewrap = {
      kind: 'rewrap-deks' as const,
      keys: [
        { keyId: 1001, wrapped: await kek.wrap(storageBytes, { keyId: 1001, purpose: 'storage' }), kek: 'file://test-kek' },
        { keyId: 2002, wrapped: await kek.wrap(raftBytes, { keyId: 2002, purpose: 'raft' }), kek: 'file://test-kek' },
      ],
    };
    expect(await applyOne(stuck, entry(encodeEncryptionPayload(rewrap)))).toEqual({ ok: true });
    expect(stuck.sidecar.state.keys.get(2002)?.localEpoch).toBe(5);
    expect(Buffer.from(stuck.sidecar.state.keys.get(1001)!.wrapped)).toEqual(Buffer.from(rewrap.keys[0]!.wrapped));
    expect(keystore.get(2002)?.key).toEqual(raftBytes);
    expect(keystore.active('raft')?.keyId).toBe(2002);
  });

  it('start checks refuse a sidecar behind the store, past the log, colliding or rolled back', async () => {
    const { n, entry } = await bootstrapped();
    const reopen = async (raftId = 'n1') => {
      // What a start does first: load keys.json and bump every local_epoch.
      const sidecar = await Sidecar.load(n.dir);
      await sidecar.bumpLocalEpochs();
      return openNode(raftId, { store: n.store, sidecar, keystore: n.runtime.keystore, dir: n.dir });
    };
    const before = fs.readFileSync(n.sidecar.file, 'utf8');
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })));
    const current = fs.readFileSync(n.sidecar.file, 'utf8');
    // keys.json from before the flag entry, the store past it.
    fs.writeFileSync(n.sidecar.file, before);
    await expect((await reopen()).runtime.checkAtStart(2)).rejects.toThrow(/^ErrSidecarBehindRaftLog/);
    fs.writeFileSync(n.sidecar.file, current);
    const ok = await reopen();
    await ok.runtime.checkAtStart(2);
    expect(() => ok.runtime.checkLogBounds(1)).toThrow(/^ErrSidecarCorrupt/);
    ok.runtime.checkLogBounds(2);
    // This lifetime (epoch 1 now in keys.json) registers; a copy of keys.json from before is rolled back.
    const older = fs.readFileSync(n.sidecar.file, 'utf8');
    await applyOne(ok, { index: 3, proposalId: 3n, payload: encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 1001, ...writer('n1', 1) }], reason: 'start' }) });
    await (await reopen()).runtime.checkAtStart(3);
    fs.writeFileSync(n.sidecar.file, older.replace(/"local_epoch": ?1/g, '"local_epoch":0'));
    await expect((await reopen()).runtime.checkAtStart(3)).rejects.toThrow(/^ErrLocalEpochRollback/);
    // A cutover index the store does not have.
    await ok.sidecar.overwrite({ ...ok.sidecar.state, raftAppliedIndex: 3, raftEnvelopeCutoverIndex: 2 });
    await expect(ok.runtime.checkAtStart(3)).rejects.toThrow(/^ErrEnvelopeCutoverDivergence/);
    await ok.sidecar.overwrite({ ...ok.sidecar.state, raftEnvelopeCutoverIndex: null });
    // Another id with the same node_id16 over this store.
    const impostor = collidingId('n1');
    await expect((await reopen(impostor)).runtime.checkAtStart(3)).rejects.toThrow(/^ErrNodeIDCollision/);
  });

  it('a store with DEKs and a node without encryption refuses to start', async () => {
    const { n } = await bootstrapped();
    const plain = await EncryptionRuntime.open({ raftId: 'n1', store: n.store, keystore: new Keystore(), backend: new AesniBackend(), compression: false, logger: silentLogger() });
    await expect(plain.checkAtStart(1)).rejects.toThrow(/^ErrKEKRequired/);
  });
});

describe('raft envelope around the cutover', () => {
  async function phase2(raftId = 'n1') {
    const n = await openNode(raftId);
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer(raftId)] })));
    return { n, entry };
  }

  it('opens entries strictly after the cutover index, never the cutover entry, and halts on a tampered one', async () => {
    const { n, entry } = await phase2();
    const cut = entry(encodeEncryptionPayload({ kind: 'enable-raft-envelope' }));
    expect(n.runtime.applyHook(cut, cut.payload!)).toBe(cut.payload);
    await applyOne(n, cut);
    expect(n.runtime.cutoverIndex).toBe(cut.index);
    expect(n.sidecar.state.raftEnvelopeCutoverIndex).toBe(cut.index);
    const plain = encodeCeilingPayload(packHlc(T0));
    const wrapped = n.runtime.wrapProposal(plain);
    expect(isRaftEnvelope(wrapped)).toBe(true);
    expect(Buffer.from(n.runtime.applyHook({ index: cut.index + 1 }, wrapped))).toEqual(plain);
    const tampered = Uint8Array.from(wrapped);
    tampered[tampered.length - 1]! ^= 1;
    const err = (() => {
      try {
        n.runtime.applyHook({ index: cut.index + 2 }, tampered);
      } catch (e) {
        return e;
      }
    })();
    expect(isSealError(err, 'ErrRaftUnwrapFailed')).toBe(true);
    // A cleartext payload after the cutover is not data either.
    expect(() => n.runtime.applyHook({ index: cut.index + 3 }, plain)).toThrow(/ErrRaftUnwrapFailed/);
  });

  it('a cutover met in apply order gates the entries after it in the same batch', async () => {
    const { n, entry } = await phase2();
    const cut = entry(encodeEncryptionPayload({ kind: 'enable-raft-envelope' }));
    n.runtime.applyHook(cut, cut.payload!);
    const plain = encodeCeilingPayload(packHlc(T0));
    expect(() => n.runtime.applyHook({ index: cut.index + 1 }, plain)).toThrow(/ErrRaftUnwrapFailed/);
  });

  it('admission on the leader: cleartext before the cutover, wrapped after, barrier blocks clients only', async () => {
    const { n, entry } = await phase2();
    const client = encodeRequestPayload(setReq('k', 'v'), packHlc(T0));
    expect(n.runtime.admitProposal(client)).toBeUndefined();
    n.runtime.beginBarrier();
    expect(n.runtime.admitProposal(client)?.code).toBe('ErrEnvelopeCutoverInProgress');
    expect(n.runtime.admitProposal(encodeCeilingPayload(packHlc(T0)))).toBeUndefined();
    const cutPayload = encodeEncryptionPayload({ kind: 'enable-raft-envelope' });
    expect(n.runtime.admitProposal(cutPayload)).toBeUndefined();
    // Once a cutover is admitted: a second one, and any cleartext, are dropped.
    expect(n.runtime.admitProposal(cutPayload)?.code).toBe('ErrProposalDropped');
    n.runtime.endBarrier();
    expect(n.runtime.admitProposal(client)?.code).toBe('ErrProposalDropped');
    const wrapped = n.runtime.wrapProposal(encodeCeilingPayload(packHlc(T0)));
    expect(n.runtime.admitProposal(wrapped)).toBeUndefined();
    n.runtime.forgetAdmittedCutover();
    expect(n.runtime.admitProposal(wrapped)?.code).toBe('ErrProposalDropped');
    void entry;
  });

  it('a cutover in the log makes proposals wrapped; an entry replacing it turns that off', async () => {
    const { n } = await phase2();
    const plain = encodeCeilingPayload(packHlc(T0));
    expect(n.runtime.wrapProposal(plain)).toBe(plain);
    n.runtime.onLogEntries([{ index: 7, payload: encodeEncryptionPayload({ kind: 'enable-raft-envelope' }) }]);
    expect(isRaftEnvelope(n.runtime.wrapProposal(plain))).toBe(true);
    n.runtime.onLogEntries([{ index: 6, payload: plain }]);
    expect(n.runtime.wrapProposal(plain)).toBe(plain);
  });

  it('a node that sees the cutover in its log before it has the raft DEK refuses to propose with a retryable error', async () => {
    const n = await openNode('n1');
    n.runtime.onLogEntries([{ index: 9, payload: encodeEncryptionPayload({ kind: 'enable-raft-envelope' }) }]);
    let error: unknown;
    try {
      n.runtime.wrapProposal(encodeCeilingPayload(packHlc(T0)));
    } catch (err) {
      error = err;
    }
    expect(isSealError(error, 'ErrWriterNotRegistered')).toBe(true);
    expect((error as { retryable?: boolean }).retryable).toBe(true);
  });

  it('a process not registered under the raft DEK wraps nothing but its own registration', async () => {
    const n = await openNode('n1');
    const entry = log();
    await applyOne(n, entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('other')] })));
    n.runtime.onLogEntries([{ index: 9, payload: encodeEncryptionPayload({ kind: 'enable-raft-envelope' }) }]);
    expect(() => n.runtime.wrapProposal(encodeCeilingPayload(packHlc(T0)))).toThrow(/ErrWriterNotRegistered/);
    const registration = encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 2002, ...writer('n1', 0) }], reason: 'start' });
    expect(isRaftEnvelope(n.runtime.wrapProposal(registration))).toBe(true);
  });
});

describe('snapshots', () => {
  async function drain(stream: AsyncIterable<Uint8Array>): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(Buffer.from(c));
    return chunks;
  }

  it('v2 after the cutover; installing it on a new node teaches the keys with a fresh epoch; a diverging sidecar is refused', async () => {
    const src = await openNode('n1');
    const entry = log();
    const boot = entry(encodeEncryptionPayload({ kind: 'bootstrap', keys: await newKeys(), writers: [writer('n1'), writer('n2')] }));
    await applyOne(src, boot);
    await applyOne(src, entry(encodeEncryptionPayload({ kind: 'enable-storage-envelope' })));
    await src.machine.applyEntries([entry(encodeRequestPayload(setReq('k', 'secret'), packHlc(T0)))]);
    const cut = entry(encodeEncryptionPayload({ kind: 'enable-raft-envelope' }));
    await applyOne(src, cut);
    const chunks = await drain((await src.machine.snapshot()).stream);
    expect(chunks[0]!.subarray(0, 8).toString()).toBe('EKVTHLC2');

    const fresh = await openNode('n2');
    await fresh.machine.restoreSnapshot((async function* () {
      yield* chunks;
    })());
    expect(fresh.runtime.keystore.keyIds()).toEqual([1001, 2002]);
    expect(fresh.sidecar.state.raftEnvelopeCutoverIndex).toBe(cut.index);
    // max(0, registered epoch 0) + 1
    expect(fresh.sidecar.state.keys.get(1001)?.localEpoch).toBe(1);
    expect((await fresh.store.get(Buffer.from('k'), (1n << 64n) - 1n))?.value.toString()).toBe('secret');
    const rows = await storedKeyIds(fresh.store);
    expect(rows.get('k')).toBe(1001);

    const diverged = await openNode('n2');
    await applyOne(diverged, boot);
    await diverged.sidecar.overwrite({ ...diverged.sidecar.state, raftAppliedIndex: cut.index + 5, raftEnvelopeCutoverIndex: cut.index + 5 });
    const err = await diverged.machine
      .restoreSnapshot((async function* () {
        yield* chunks;
      })())
      .catch((e: unknown) => e);
    expect(isSealError(err, 'ErrEnvelopeCutoverDivergence')).toBe(true);
  });

  it('v1 before the cutover', async () => {
    const n = await openNode('n1');
    const chunks = await drain((await n.machine.snapshot()).stream);
    expect(chunks[0]!.subarray(0, 8).toString()).toBe('EKVTHLC1');
    void decodeValue;
  });
});
