// The Sidecar object: durable writes in SPEC order, apply idempotent by Raft
// index, the per-start local_epoch bump, the filesystem probe.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKekProvider } from '../../src/kek/index.js';
import {
  LOCAL_EPOCH_WARN,
  PROBE_NAME,
  Sidecar,
  nodeDurableFs,
  probeDurableDir,
  serializeSidecar,
  sidecarPath,
  writeFileDurably,
  type DurableFs,
} from '../../src/sidecar/index.js';
import { bootstrapChanges, editSidecarOnDisk, expectSealError, tempDir } from '../support/kek-fixtures.js';

let dataDir: string;
const kek = new LocalKekProvider('file', crypto.randomBytes(32), 'file:///test/kek.bin');

beforeEach(() => {
  dataDir = tempDir('sidecar');
});
afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function bootstrapped(): Promise<Sidecar> {
  const sidecar = Sidecar.empty(dataDir);
  const { changes } = await bootstrapChanges(kek);
  expect(await sidecar.apply(10, changes)).toBe(true);
  return sidecar;
}

const fileText = () => fs.readFileSync(sidecarPath(dataDir), 'utf8');

const editOnDisk = (edit: (doc: any) => void) => editSidecarOnDisk(sidecarPath(dataDir), edit);

describe('Sidecar', () => {
  it('creates keys.json (0600, in a 0700 dir) on the first apply, and reloads the same state', async () => {
    const empty = Sidecar.empty(dataDir);
    expect(empty.present).toBe(false);
    expect(await Sidecar.exists(dataDir)).toBe(false);
    const sidecar = await bootstrapped();
    expect(sidecar.present).toBe(true);
    expect(fs.statSync(sidecarPath(dataDir)).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(sidecarPath(dataDir))).mode & 0o777).toBe(0o700);
    const loaded = await Sidecar.load(dataDir);
    expect(serializeSidecar(loaded.state)).toBe(serializeSidecar(sidecar.state));
    expect(loaded.state.keys.get(0x12345678)).toEqual(sidecar.state.keys.get(0x12345678));
    expect(loaded.state.raftAppliedIndex).toBe(10);
    expect(loaded.state.active).toEqual({ storage: 0x12345678, raft: 0x9abcdef0 });
    expect(fs.existsSync(sidecarPath(dataDir) + '.tmp')).toBe(false);
  });

  it('applies idempotently by Raft index: a replayed entry writes nothing', async () => {
    const sidecar = await bootstrapped();
    const before = fileText();
    expect(sidecar.isApplied(10)).toBe(true);
    expect(sidecar.isApplied(11)).toBe(false);
    const { changes } = await bootstrapChanges(kek);
    expect(await sidecar.apply(10, changes)).toBe(false);
    expect(await sidecar.apply(3, [{ type: 'enable-storage-envelope' }])).toBe(false);
    expect(fileText()).toBe(before);
  });

  it('rotates, rewraps, retires and records the rollout flags with their index', async () => {
    const sidecar = await bootstrapped();
    const fresh = crypto.randomBytes(32);
    const wrapped = await kek.wrap(fresh, { keyId: 77, purpose: 'storage' });
    await sidecar.apply(11, [{ type: 'enable-storage-envelope' }]);
    await sidecar.apply(12, [
      { type: 'add-key', keyId: 77, purpose: 'storage', wrapped, kek: kek.describe(), created: '2026-05-01T00:00:00Z' },
      { type: 'set-active', purpose: 'storage', keyId: 77 },
    ]);
    await sidecar.apply(15, [{ type: 'raft-envelope-cutover' }]);
    const rewrapped = await kek.wrap(fresh, { keyId: 77, purpose: 'storage' });
    await sidecar.apply(16, [{ type: 'rewrap-key', keyId: 77, wrapped: rewrapped, kek: 'file:///new/kek.bin' }]);
    await sidecar.apply(17, [{ type: 'retire-key', keyId: 0x12345678 }]);
    const state = (await Sidecar.load(dataDir)).state;
    expect(state.raftAppliedIndex).toBe(17);
    expect(state.storageEnvelopeActive).toBe(true);
    expect(state.raftEnvelopeCutoverIndex).toBe(15);
    expect(state.active.storage).toBe(77);
    expect([...state.keys.keys()].sort((a, b) => a - b)).toEqual([77, 0x9abcdef0]);
    expect(state.keys.get(77)).toMatchObject({ localEpoch: 0, kek: 'file:///new/kek.bin' });
    expect(Buffer.from(state.keys.get(77)!.wrapped).equals(Buffer.from(rewrapped))).toBe(true);
  });

  it.each([
    ['an existing key_id', [{ type: 'add-key', keyId: 0x12345678, purpose: 'storage', wrapped: new Uint8Array(60), kek: 'k', created: '2026-05-01T00:00:00Z' }]],
    ['key_id 0', [{ type: 'add-key', keyId: 0, purpose: 'storage', wrapped: new Uint8Array(60), kek: 'k', created: '2026-05-01T00:00:00Z' }]],
    ['a bad created time', [{ type: 'add-key', keyId: 5, purpose: 'storage', wrapped: new Uint8Array(60), kek: 'k', created: 'now' }]],
    ['an empty wrapped DEK', [{ type: 'add-key', keyId: 5, purpose: 'storage', wrapped: new Uint8Array(0), kek: 'k', created: '2026-05-01T00:00:00Z' }]],
    ['activating an unknown key', [{ type: 'set-active', purpose: 'raft', keyId: 5 }]],
    ['activating a key of the other purpose', [{ type: 'set-active', purpose: 'raft', keyId: 0x12345678 }]],
    ['retiring the active key', [{ type: 'retire-key', keyId: 0x9abcdef0 }]],
    ['rewrapping an unknown key', [{ type: 'rewrap-key', keyId: 5, wrapped: new Uint8Array(60), kek: 'k' }]],
  ] as const)('refuses %s with ErrEncryptionApply and changes nothing', async (_label, changes) => {
    const sidecar = await bootstrapped();
    const before = fileText();
    const state = sidecar.state;
    await expectSealError(sidecar.apply(11, changes as never), 'ErrEncryptionApply');
    expect(fileText()).toBe(before);
    expect(sidecar.state).toBe(state);
    expect(await sidecar.apply(11, [{ type: 'enable-storage-envelope' }])).toBe(true);
  });

  it('refuses a second raft envelope cutover', async () => {
    const sidecar = await bootstrapped();
    await sidecar.apply(11, [{ type: 'raft-envelope-cutover' }]);
    await expectSealError(sidecar.apply(12, [{ type: 'raft-envelope-cutover' }]), 'ErrEncryptionApply');
  });

  it('bumps local_epoch of every DEK durably, warning above 0xFF00', async () => {
    await bootstrapped();
    const first = await (await Sidecar.load(dataDir)).bumpLocalEpochs();
    expect([...first.epochs.values()]).toEqual([1, 1]);
    expect(first.warnings).toEqual([]);
    const second = await (await Sidecar.load(dataDir)).bumpLocalEpochs();
    expect([...second.epochs.values()]).toEqual([2, 2]);
    editOnDisk((doc) => (doc.keys[String(0x12345678)].local_epoch = LOCAL_EPOCH_WARN));
    const warned = await (await Sidecar.load(dataDir)).bumpLocalEpochs();
    expect(warned.epochs.get(0x12345678)).toBe(LOCAL_EPOCH_WARN + 1);
    expect(warned.warnings).toHaveLength(1);
    expect(warned.warnings[0]).toContain(String(0x12345678));
    expect((await Sidecar.load(dataDir)).state.keys.get(0x12345678)!.localEpoch).toBe(LOCAL_EPOCH_WARN + 1);
  });

  it('refuses to bump past 0xFFFF (ErrLocalEpochExhausted) and writes nothing', async () => {
    await bootstrapped();
    editOnDisk((doc) => (doc.keys[String(0x9abcdef0)].local_epoch = 0xfffe));
    const sidecar = await Sidecar.load(dataDir);
    expect((await sidecar.bumpLocalEpochs()).epochs.get(0x9abcdef0)).toBe(0xffff);
    const before = fileText();
    await expectSealError((await Sidecar.load(dataDir)).bumpLocalEpochs(), 'ErrLocalEpochExhausted');
    expect(fileText()).toBe(before);
  });

  it('an exhausted DEK that is no longer active keeps its epoch and does not refuse', async () => {
    const sidecar = await bootstrapped();
    // rotate-dek: a new storage DEK becomes active; the old one only opens from now on.
    const wrapped = await kek.wrap(crypto.randomBytes(32), { keyId: 0x0badcafe, purpose: 'storage' });
    await sidecar.apply(11, [
      { type: 'add-key', keyId: 0x0badcafe, purpose: 'storage', wrapped, kek: kek.describe(), created: '2026-11-29T00:00:00Z' },
      { type: 'set-active', purpose: 'storage', keyId: 0x0badcafe },
    ]);
    editOnDisk((doc) => (doc.keys[String(0x12345678)].local_epoch = 0xffff));
    const bump = await (await Sidecar.load(dataDir)).bumpLocalEpochs();
    expect(bump.epochs.get(0x12345678)).toBe(0xffff);
    expect(bump.epochs.get(0x0badcafe)).toBe(1);
    expect((await Sidecar.load(dataDir)).state.keys.get(0x12345678)!.localEpoch).toBe(0xffff);
  });

  it('refuses a corrupt file on load and never reads the tmp file', async () => {
    await bootstrapped();
    fs.writeFileSync(sidecarPath(dataDir) + '.tmp', '{"half": ');
    const loaded = await Sidecar.load(dataDir);
    expect(loaded.state.raftAppliedIndex).toBe(10);
    expect(fs.existsSync(sidecarPath(dataDir) + '.tmp')).toBe(false);
    fs.writeFileSync(sidecarPath(dataDir), fileText().slice(0, 100));
    await expectSealError(Sidecar.load(dataDir), 'ErrSidecarCorrupt');
    fs.writeFileSync(sidecarPath(dataDir), Buffer.alloc(2 << 20, 0x20));
    await expectSealError(Sidecar.load(dataDir), 'ErrSidecarCorrupt');
  });

  it('after a failed write refuses further changes until restarted', async () => {
    const failing: DurableFs = { fsyncDir: async () => Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' })) };
    const sidecar = Sidecar.empty(dataDir, failing);
    const { changes } = await bootstrapChanges(kek);
    await expect(sidecar.apply(1, changes)).rejects.toThrow('EIO');
    expect(sidecar.state.raftAppliedIndex).toBe(0);
    await expect(sidecar.apply(2, [])).rejects.toThrow(/earlier write failed/);
  });

  it('overwrites the whole state for a resync, refusing an inconsistent one', async () => {
    const sidecar = await bootstrapped();
    const resynced = { ...sidecar.state, raftAppliedIndex: 40, storageEnvelopeActive: true };
    await sidecar.overwrite(resynced);
    expect((await Sidecar.load(dataDir)).state.raftAppliedIndex).toBe(40);
    const before = fileText();
    await expectSealError(sidecar.overwrite({ ...resynced, active: { storage: 999 } }), 'ErrSidecarCorrupt');
    expect(fileText()).toBe(before);
  });

  it('serialises concurrent applies', async () => {
    const sidecar = await bootstrapped();
    const results = await Promise.all([11, 12, 12, 13].map((i) => sidecar.apply(i, [])));
    expect(results).toEqual([true, true, false, true]);
    expect((await Sidecar.load(dataDir)).state.raftAppliedIndex).toBe(13);
  });
});

describe('durable write and probe', () => {
  it('renames before the directory fsync, and the tmp file is gone by then', async () => {
    const file = path.join(dataDir, 'f.json');
    fs.writeFileSync(file, 'old');
    const seen: string[] = [];
    const spy: DurableFs = {
      async fsyncDir(dir) {
        seen.push(`${dir}:${fs.readFileSync(file, 'utf8')}:${fs.existsSync(file + '.tmp')}`);
        await nodeDurableFs.fsyncDir(dir);
      },
    };
    await writeFileDurably(file, 'new', spy);
    expect(seen).toEqual([`${dataDir}:new:false`]);
  });

  it('passes on this filesystem and leaves no sentinel behind', async () => {
    await probeDurableDir(dataDir);
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it('refuses a filesystem whose directory fsync fails (ErrUnsupportedFilesystem)', async () => {
    const einval: DurableFs = { fsyncDir: async () => Promise.reject(Object.assign(new Error('EINVAL'), { code: 'EINVAL' })) };
    await expectSealError(probeDurableDir(dataDir, einval), 'ErrUnsupportedFilesystem');
    expect(fs.existsSync(path.join(dataDir, PROBE_NAME))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, PROBE_NAME + '.tmp'))).toBe(false);
  });

  it('tells a full device (ErrNoSpace) from an unsupported filesystem', async () => {
    const enospc: DurableFs = { fsyncDir: async () => Promise.reject(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })) };
    await expectSealError(probeDurableDir(dataDir, enospc), 'ErrNoSpace');
    expect(fs.existsSync(path.join(dataDir, PROBE_NAME))).toBe(false);
  });

  it('creates a missing directory, and refuses one it cannot create', async () => {
    await probeDurableDir(path.join(dataDir, 'a', 'b'));
    expect(fs.statSync(path.join(dataDir, 'a', 'b')).isDirectory()).toBe(true);
    fs.writeFileSync(path.join(dataDir, 'file'), '');
    await expectSealError(probeDurableDir(path.join(dataDir, 'file', 'sub')), 'ErrUnsupportedFilesystem');
  });
});
