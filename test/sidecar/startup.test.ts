// The start-up sequence: the refusals of SPEC §9 that need only flags, KEK
// and sidecar, the per-start local_epoch bump, and the keystore filled by
// unwrapping every DEK — with file and KMS KEKs. A refused start changes
// nothing: the sidecar keeps its bytes and the keystore stays empty.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Keystore } from '../../src/crypto/index.js';
import type { ErrorCode } from '../../src/errors/index.js';
import { openKekProvider, type KekProvider } from '../../src/kek/index.js';
import { openKeysAtStart, Sidecar, sidecarPath, type KeysAtStart, type KeysAtStartOptions } from '../../src/sidecar/index.js';
import { bootstrapChanges, editSidecarOnDisk, expectSealError, tempDir, writeKekFile, type TestDek } from '../support/kek-fixtures.js';
import { KmsTestServer } from '../support/kms-server.js';

const CREDENTIALS = { accessKeyId: 'AKIDSEALKVSTART', secretAccessKey: 'sealkv-start-test-secret' };

let root: string;
let dataDir: string;
let kekFile: string;
const started: KeysAtStart[] = [];

beforeEach(() => {
  root = tempDir('start');
  dataDir = path.join(root, 'data');
  fs.mkdirSync(dataDir);
  kekFile = writeKekFile(root);
});
afterEach(() => {
  for (const s of started.splice(0)) s.kek?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function start(options: Partial<KeysAtStartOptions> = {}): Promise<KeysAtStart> {
  const result = await openKeysAtStart({ dataDir, encryptionEnabled: true, kek: { kekFile }, keystore: new Keystore(), ...options });
  started.push(result);
  return result;
}

/** Writes a bootstrapped sidecar wrapped by `kek` and returns its DEKs. */
async function bootstrap(kek: KekProvider): Promise<TestDek[]> {
  const { changes, deks } = await bootstrapChanges(kek);
  await Sidecar.empty(dataDir).apply(5, changes);
  return deks;
}

async function bootstrapWithFile(): Promise<TestDek[]> {
  const kek = openKekProvider({ kekFile, dataDir });
  try {
    return await bootstrap(kek);
  } finally {
    kek.close();
  }
}

function setEpochOnDisk(keyId: number, localEpoch: number): void {
  editSidecarOnDisk(sidecarPath(dataDir), (doc) => (doc.keys[String(keyId)].local_epoch = localEpoch));
}

/** Asserts a start fails with `code` and leaves sidecar bytes and keystore untouched. */
async function expectRefusedCleanly(code: ErrorCode, options: Partial<KeysAtStartOptions> = {}): Promise<void> {
  const file = sidecarPath(dataDir);
  const before = fs.existsSync(file) ? fs.readFileSync(file) : undefined;
  const keystore = new Keystore();
  await expectSealError(start({ keystore, ...options }), code);
  expect(keystore.keyIds()).toEqual([]);
  expect(fs.existsSync(file) ? fs.readFileSync(file) : undefined).toEqual(before);
}

describe('start-up without encryption', () => {
  it('does nothing when neither flag nor sidecar is there', async () => {
    const result = await start({ encryptionEnabled: false, kek: {} });
    expect(result.sidecar).toBeUndefined();
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it('refuses a sidecar without --encryption-enabled (ErrSidecarPresentWithoutFlag)', async () => {
    await bootstrapWithFile();
    await expectRefusedCleanly('ErrSidecarPresentWithoutFlag', { encryptionEnabled: false, kek: {} });
    await expectRefusedCleanly('ErrSidecarPresentWithoutFlag', { encryptionEnabled: false });
  });
});

describe('start-up with a file KEK', () => {
  it('refuses --encryption-enabled without a KEK (ErrKEKRequired)', async () => {
    await expectRefusedCleanly('ErrKEKRequired', { kek: {} });
    await bootstrapWithFile();
    await expectRefusedCleanly('ErrKEKRequired', { kek: {} });
  });

  it('starts fresh with an empty, not yet written sidecar', async () => {
    const result = await start();
    expect(result.sidecar?.present).toBe(false);
    expect(result.kek?.describe()).toBe(`file://${kekFile}`);
    expect(fs.readdirSync(path.join(dataDir, 'encryption'))).toEqual([]);
    expect(fs.statSync(path.join(dataDir, 'encryption')).mode & 0o777).toBe(0o700);
  });

  it('unwraps every DEK into the keystore, sets actives and bumps local_epoch at each start', async () => {
    const deks = await bootstrapWithFile();
    for (const expected of [1, 2, 3]) {
      const keystore = new Keystore();
      const unwraps: number[] = [];
      const result = await start({ keystore, onUnwrap: (_s, keyId) => unwraps.push(keyId) });
      expect([...result.epochs.values()]).toEqual([expected, expected]);
      expect(unwraps.sort()).toEqual(deks.map((d) => d.keyId).sort());
      expect([...result.unwrapSeconds.values()].every((s) => s >= 0)).toBe(true);
      for (const d of deks) expect(Buffer.from(keystore.get(d.keyId)!.key).equals(d.dek)).toBe(true);
      expect(keystore.active('storage')?.keyId).toBe(0x12345678);
      expect(keystore.active('raft')?.keyId).toBe(0x9abcdef0);
      expect((await Sidecar.load(dataDir)).state.keys.get(0x12345678)!.localEpoch).toBe(expected);
      result.kek?.close();
    }
  });

  it('refuses a different KEK (ErrKEKMismatch)', async () => {
    await bootstrapWithFile();
    await expectRefusedCleanly('ErrKEKMismatch', { kek: { kekFile: writeKekFile(root, 'other.bin') } });
  });

  it('refuses a corrupt sidecar (ErrSidecarCorrupt) instead of starting fresh', async () => {
    await bootstrapWithFile();
    const file = sidecarPath(dataDir);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"storage"', '"backup"'));
    await expectRefusedCleanly('ErrSidecarCorrupt');
    fs.writeFileSync(file, '');
    await expectRefusedCleanly('ErrSidecarCorrupt');
  });

  it('refuses a filesystem that cannot make the sidecar durable (ErrUnsupportedFilesystem)', async () => {
    await bootstrapWithFile();
    await expectRefusedCleanly('ErrUnsupportedFilesystem', { durable: { fsyncDir: async () => Promise.reject(new Error('EINVAL')) } });
  });

  it('refuses a KEK file inside the data dir (ErrKEKFile) and a bad URI (ErrKEKUri)', async () => {
    await bootstrapWithFile();
    fs.copyFileSync(kekFile, path.join(dataDir, 'kek.bin'));
    fs.chmodSync(path.join(dataDir, 'kek.bin'), 0o600);
    await expectRefusedCleanly('ErrKEKFile', { kek: { kekFile: path.join(dataDir, 'kek.bin') } });
    fs.chmodSync(kekFile, 0o644);
    await expectRefusedCleanly('ErrKEKFile');
    await expectRefusedCleanly('ErrKEKUri', { kek: { kekUri: 'file:/kek' } });
  });

  it('refuses a DEK at local_epoch 0xFFFF (ErrLocalEpochExhausted) and warns above 0xFF00', async () => {
    await bootstrapWithFile();
    setEpochOnDisk(0x9abcdef0, 0xff00);
    const warnings: string[] = [];
    const result = await start({ warn: (m) => warnings.push(m) });
    expect(result.epochs.get(0x9abcdef0)).toBe(0xff01);
    expect(warnings).toHaveLength(1);
    setEpochOnDisk(0x9abcdef0, 0xffff);
    await expectRefusedCleanly('ErrLocalEpochExhausted');
  });
});

describe('start-up with a KMS KEK', () => {
  let server: KmsTestServer;
  let keyId: string;

  beforeAll(async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', CREDENTIALS.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', CREDENTIALS.secretAccessKey);
    vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/sealkv-test/config');
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/sealkv-test/credentials');
    server = await KmsTestServer.start({ credentials: CREDENTIALS });
    keyId = server.createKey().keyId;
  });
  afterEach(() => {
    server.delay(0);
  });
  afterAll(async () => {
    await server.stop();
    vi.unstubAllEnvs();
  });

  async function bootstrapWithKms(): Promise<TestDek[]> {
    const kek = openKekProvider({ kekUri: server.uri(keyId) });
    try {
      return await bootstrap(kek);
    } finally {
      kek.close();
    }
  }

  it('unwraps through KMS with the encryption context and fills the keystore', async () => {
    const deks = await bootstrapWithKms();
    const keystore = new Keystore();
    const before = server.callCount('Decrypt');
    const result = await start({ keystore, kek: { kekUri: server.uri(keyId) } });
    expect(server.callCount('Decrypt') - before).toBe(2);
    expect(result.sidecar?.state.keys.get(0x12345678)?.kek).toBe(result.kek?.describe());
    for (const d of deks) expect(Buffer.from(keystore.get(d.keyId)!.key).equals(d.dek)).toBe(true);
  });

  it('refuses without touching anything when KMS is down (ErrKEKUnavailable)', async () => {
    await bootstrapWithKms();
    const down = await KmsTestServer.start({ credentials: CREDENTIALS });
    const uri = down.uri(keyId, { max_attempts: 2, timeout_ms: 2000 });
    await down.stop();
    await expectRefusedCleanly('ErrKEKUnavailable', { kek: { kekUri: uri } });
  });

  it('refuses when KMS is slower than timeout_ms (ErrKEKUnavailable), before KMS answers', async () => {
    await bootstrapWithKms();
    server.delay(30_000);
    const answered = server.answered;
    await expectRefusedCleanly('ErrKEKUnavailable', { kek: { kekUri: server.uri(keyId, { timeout_ms: 200, max_attempts: 1 }) } });
    expect(server.answered).toBe(answered);
  });

  it('refuses DEKs wrapped under another KMS key (ErrKEKMismatch)', async () => {
    await bootstrapWithKms();
    await expectRefusedCleanly('ErrKEKMismatch', { kek: { kekUri: server.uri(server.createKey().keyId) } });
  });

  it('refuses an exhausted DEK before calling KMS', async () => {
    await bootstrapWithKms();
    setEpochOnDisk(0x12345678, 0xffff);
    const before = server.callCount('Decrypt');
    await expectRefusedCleanly('ErrLocalEpochExhausted', { kek: { kekUri: server.uri(keyId) } });
    expect(server.callCount('Decrypt')).toBe(before);
  });

  it('keeps the data path off KMS: a started keystore needs no KMS', async () => {
    await bootstrapWithKms();
    const keystore = new Keystore();
    await start({ keystore, kek: { kekUri: server.uri(keyId) } });
    server.fail('internal');
    try {
      expect(keystore.active('storage')?.key.length).toBe(32);
    } finally {
      server.fail('none');
    }
  });

  it('does not call KMS at all before bootstrap', async () => {
    const before = [...server.calls.values()].reduce((a, b) => a + b, 0);
    const result = await start({ kek: { kekUri: server.uri(keyId) } });
    expect(result.sidecar?.present).toBe(false);
    expect([...server.calls.values()].reduce((a, b) => a + b, 0)).toBe(before);
  });
});
