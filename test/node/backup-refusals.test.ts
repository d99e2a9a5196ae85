// What `sealkv backup` refuses, with real processes: one single-voter node
// whose KEK lives in the loopback KMS-protocol server, taken to Phase 2.
// An offline backup is refused while the node holds its data dir's lock and
// works once it is stopped; then copies of a good backup are damaged one
// way each, and verify must fail with exit 1, one line, and the code that
// names what failed: no sidecar (ErrBackupMissingSidecar, also when
// backup.json was rewritten to hide it), a flipped byte in store.snap,
// keys.json or backup.json (ErrBackupCorrupt), a flipped ciphertext byte
// with every checksum recomputed (ErrEncryptedReadIntegrity), another KEK
// (ErrKEKMismatch) or none (ErrKEKRequired), a keys.json from an earlier
// backup (ErrBackupCorrupt: two points). A refused restore leaves the target
// empty; a backup or a restore SIGKILLed part way (SEALKV_TEST_FAULT) leaves
// nothing that passes for a backup or a data dir, and the next restore works.
// Last, a node without encryption: backup, verify and restore need no KEK.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminArgs,
  expectCliFailure,
  expectCliOk,
  firstCiphertextOffset,
  flipByte,
  needle,
  nodeArgs,
  nodePorts,
  resealBackup,
  retrying,
  runCli,
  startedNode,
  writeSecrets,
  type CliResult,
} from '../support/backup-fixtures.js';
import { KMS_CREDENTIALS, KMS_ENV } from '../support/encrypted-cluster.js';
import { KmsTestServer } from '../support/kms-server.js';
import type { NodeProcess } from '../support/node-process.js';

let dir: string;
let kms: KmsTestServer;
let kekUri: string;
let node: NodeProcess | undefined;
let dataDir: string;
let good: string;
let early: string;
let written = 0;
const values = new Map<string, string>();

function cli(args: string[]): Promise<CliResult> {
  return runCli(dir, args, KMS_ENV);
}

/** A fresh copy of the good (offline) backup. */
function copyOfGood(name: string): string {
  const copy = path.join(dir, `case-${name}`);
  fs.cpSync(good, copy, { recursive: true });
  return copy;
}

function verify(backup: string, kek: string[] = ['--kek-uri', kekUri]): Promise<CliResult> {
  return cli(['backup', 'verify', '--in', backup, ...kek]);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-backup-refusals-'));
  writeSecrets(dir);
  kms = await KmsTestServer.start({ credentials: KMS_CREDENTIALS });
  kekUri = kms.uri(kms.createKey('sealkv-backup').keyId);
  const ports = await nodePorts();
  dataDir = path.join(dir, 'n1');
  node = await startedNode(nodeArgs({ id: 'n1', dataDir, ports, dir, kek: ['--kek-uri', kekUri] }), dir, ports, KMS_ENV);
  for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) expectCliOk(await cli(['encryption', verb, ...adminArgs(dir, ports), '--json']), verb);
  const put = async (i: number): Promise<void> => {
    const value = needle('v');
    await retrying(ports.resp, (c) => c.set(`k-${i}`, value));
    values.set(`k-${i}`, value);
    written++;
  };
  for (let i = 0; i < 10; i++) await put(i);
  early = path.join(dir, 'early');
  expectCliOk(await cli(['backup', 'create', ...adminArgs(dir, ports), '--out', early, '--json']), 'online backup before the rotation');
  expectCliOk(await cli(['encryption', 'rotate-dek', '--purpose', 'storage', ...adminArgs(dir, ports), '--json']), 'rotate-dek');
  for (let i = 10; i < 20; i++) await put(i);

  const locked = await cli(['backup', 'create', '--data-dir', dataDir, '--out', path.join(dir, 'locked'), '--raft-id', 'n1']);
  expectCliFailure(locked, 'ErrDataDirLocked');
  expect(await node.stop('SIGTERM')).toBe(0);
  node = undefined;
  good = path.join(dir, 'good');
  const created = expectCliOk(await cli(['backup', 'create', '--data-dir', dataDir, '--out', good, '--raft-id', 'n1', '--json']), 'offline backup create');
  expect(created.mode).toBe('offline');
  expect(created.node.raft_id).toBe('n1');
}, 60_000);

afterAll(async () => {
  await node?.stop('SIGKILL');
  await kms?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('backup create and verify, refusals', () => {
  it('an offline backup of the stopped data dir verifies with the KMS KEK', async () => {
    const report = expectCliOk(await cli(['backup', 'verify', '--in', good, '--kek-uri', kekUri, '--json']), 'verify');
    expect(report.failures).toBe(0);
    expect(report.encrypted_versions).toBe(written);
    expect(report.cleartext_versions).toBe(0);
    const plain = await verify(good);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/^encrypted_versions: 20$/m);
  });

  it('refuses a backup directory that is not empty or lies inside the data dir', async () => {
    expectCliFailure(await cli(['backup', 'create', '--data-dir', dataDir, '--out', good]), 'ErrBadRequest');
    expectCliFailure(await cli(['backup', 'create', '--data-dir', dataDir, '--out', path.join(dataDir, 'inside')]), 'ErrBadRequest');
    expect(fs.existsSync(path.join(dataDir, 'inside'))).toBe(false);
  });

  it('ErrBackupMissingSidecar: keys.json removed, and removed with backup.json rewritten to hide it', async () => {
    const removed = copyOfGood('nosidecar');
    fs.rmSync(path.join(removed, 'keys.json'));
    expectCliFailure(await verify(removed), 'ErrBackupMissingSidecar');
    const hidden = copyOfGood('hiddensidecar');
    fs.rmSync(path.join(hidden, 'keys.json'));
    resealBackup(hidden);
    expect(JSON.parse(fs.readFileSync(path.join(hidden, 'backup.json'), 'utf8')).files['keys.json']).toBeUndefined();
    expectCliFailure(await verify(hidden), 'ErrBackupMissingSidecar');
  });

  it('ErrBackupCorrupt: one flipped byte in store.snap, keys.json or backup.json, named', async () => {
    for (const file of ['store.snap', 'keys.json', 'backup.json']) {
      const copy = copyOfGood(`flip-${file}`);
      flipByte(path.join(copy, file));
      const line = expectCliFailure(await verify(copy), 'ErrBackupCorrupt');
      expect(line).toContain(file);
    }
  });

  it('ErrEncryptedReadIntegrity: a flipped ciphertext byte with every checksum recomputed', async () => {
    const copy = copyOfGood('ciphertext');
    const file = path.join(copy, 'store.snap');
    flipByte(file, firstCiphertextOffset(fs.readFileSync(file)));
    resealBackup(copy);
    const r = await cli(['backup', 'verify', '--in', copy, '--kek-uri', kekUri, '--json']);
    expectCliFailure(r, 'ErrEncryptedReadIntegrity');
    const report = JSON.parse(r.stdout) as { failures: number; encrypted_versions: number; failure_samples: { code: string }[] };
    expect(report.failures).toBe(1);
    expect(report.encrypted_versions).toBe(written - 1);
    expect(report.failure_samples[0]!.code).toBe('ErrEncryptedReadIntegrity');
  });

  it('ErrBackupCorrupt: keys.json from an earlier point, with backup.json made to agree', async () => {
    expectCliOk(await cli(['backup', 'verify', '--in', early, '--kek-uri', kekUri, '--json']), 'the earlier backup verifies');
    const copy = copyOfGood('mixed');
    fs.copyFileSync(path.join(early, 'keys.json'), path.join(copy, 'keys.json'));
    const meta = JSON.parse(fs.readFileSync(path.join(copy, 'backup.json'), 'utf8'));
    meta.encryption.keys = JSON.parse(fs.readFileSync(path.join(early, 'backup.json'), 'utf8')).encryption.keys;
    fs.writeFileSync(path.join(copy, 'backup.json'), JSON.stringify(meta));
    resealBackup(copy);
    const line = expectCliFailure(await verify(copy), 'ErrBackupCorrupt');
    expect(line).toMatch(/not from the same point/);
  });

  it('ErrKEKMismatch under another KMS key or a file KEK; ErrKEKRequired without one', async () => {
    const otherUri = kms.uri(kms.createKey('sealkv-other').keyId);
    expectCliFailure(await verify(good, ['--kek-uri', otherUri]), 'ErrKEKMismatch');
    const fileKek = path.join(dir, 'other-kek.bin');
    fs.writeFileSync(fileKek, crypto.randomBytes(32), { mode: 0o600 });
    expectCliFailure(await verify(good, ['--kek-file', fileKek]), 'ErrKEKMismatch');
    expectCliFailure(await verify(good, []), 'ErrKEKRequired');
  });

  it('a restore that fails verification leaves the target empty', async () => {
    const copy = copyOfGood('restore-flip');
    flipByte(path.join(copy, 'store.snap'));
    const target = path.join(dir, 'restore-target');
    fs.mkdirSync(target);
    expectCliFailure(await cli(['backup', 'restore', '--in', copy, '--data-dir', target, '--kek-uri', kekUri]), 'ErrBackupCorrupt');
    expect(fs.readdirSync(target)).toEqual([]);
    expect(fs.readdirSync(dir).filter((n) => n.includes('restoring'))).toEqual([]);
  });
});

describe('SIGKILL part way', () => {
  it('a backup killed before backup.json is refused; a killed restore leaves the target empty and the next one succeeds', async () => {
    const killed = path.join(dir, 'killed-backup');
    const create = await runCli(dir, ['backup', 'create', '--data-dir', dataDir, '--out', killed, '--raft-id', 'n1'], { ...KMS_ENV, SEALKV_TEST_FAULT: 'backup-before-meta' });
    expect(create.code, create.stderr).toBeNull();
    expect(fs.readdirSync(killed).sort()).toEqual(['keys.json', 'store.snap']);
    expect(expectCliFailure(await verify(killed), 'ErrBackupCorrupt')).toMatch(/did not finish/);

    const target = path.join(dir, 'killed-restore');
    const args = ['backup', 'restore', '--in', good, '--data-dir', target, '--kek-uri', kekUri, '--json'];
    const interrupted = await runCli(dir, args, { ...KMS_ENV, SEALKV_TEST_FAULT: 'restore-before-rename' });
    expect(interrupted.code, interrupted.stderr).toBeNull();
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.killed-restore.restoring-'))).toHaveLength(1);
    expectCliOk(await cli(args), 'restore after the killed one');
    expect(fs.readdirSync(dir).filter((n) => n.includes('.restoring-'))).toEqual([]);

    const ports = await nodePorts();
    node = await startedNode(nodeArgs({ id: 'n1', dataDir: target, ports, dir, kek: ['--kek-uri', kekUri] }), dir, ports, KMS_ENV);
    const keys = [...values.keys()];
    expect(await retrying(ports.resp, (c) => c.mget(...keys))).toEqual(keys.map((k) => values.get(k)));
    expect(await node.stop('SIGTERM')).toBe(0);
    node = undefined;
  }, 60_000);
});

describe('a node without encryption', () => {
  it('backs up without a sidecar, verifies and restores without a KEK', async () => {
    const ports = await nodePorts();
    const clearDir = path.join(dir, 'clear');
    node = await startedNode(nodeArgs({ id: 'c1', dataDir: clearDir, ports, dir, kek: null }), dir, ports);
    const values = Array.from({ length: 5 }, () => needle('clear'));
    for (const [i, v] of values.entries()) await retrying(ports.resp, (c) => c.set(`c-${i}`, v));
    const backup = path.join(dir, 'clear-backup');
    expectCliOk(await cli(['backup', 'create', ...adminArgs(dir, ports), '--out', backup, '--json']), 'backup create');
    expect(await node.stop('SIGTERM')).toBe(0);
    node = undefined;
    expect(fs.readdirSync(backup).sort()).toEqual(['backup.json', 'store.snap']);
    const report = expectCliOk(await cli(['backup', 'verify', '--in', backup, '--json']), 'verify without a KEK');
    expect(report).toMatchObject({ sidecar: false, cleartext_versions: 5, encrypted_versions: 0, failures: 0 });
    const target = path.join(dir, 'clear-restored');
    expectCliOk(await cli(['backup', 'restore', '--in', backup, '--data-dir', target, '--json']), 'restore without a KEK');
    const restoredPorts = await nodePorts();
    node = await startedNode(nodeArgs({ id: 'c1', dataDir: target, ports: restoredPorts, dir, kek: null }), dir, restoredPorts);
    expect(await retrying(restoredPorts.resp, (c) => c.mget(...values.map((_, i) => `c-${i}`)))).toEqual(values);
  }, 60_000);
});
