// file:// and env:// KEK providers: local AES-256-GCM wrapping, and the
// refusals of SPEC §4.1 (ErrKEKFile, env variable deleted on read).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { localWrapAad, LOCAL_WRAPPED_BYTES, LocalKekProvider, openKekProvider } from '../../src/kek/index.js';
import { expectSealError, tempDir, writeKekFile } from '../support/kek-fixtures.js';

let dir: string;
beforeEach(() => {
  dir = tempDir('kek');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('local wrapping', () => {
  it('round-trips and binds the wrapping to key_id and purpose', async () => {
    const kek = new LocalKekProvider('file', crypto.randomBytes(32), 'file:///test');
    const dek = crypto.randomBytes(32);
    const wrapped = await kek.wrap(dek, { keyId: 0x12345678, purpose: 'storage' });
    expect(wrapped.length).toBe(LOCAL_WRAPPED_BYTES);
    expect(Buffer.from(await kek.unwrap(wrapped, { keyId: 0x12345678, purpose: 'storage' })).equals(dek)).toBe(true);
    await expectSealError(kek.unwrap(wrapped, { keyId: 0x12345679, purpose: 'storage' }), 'ErrKEKMismatch');
    await expectSealError(kek.unwrap(wrapped, { keyId: 0x12345678, purpose: 'raft' }), 'ErrKEKMismatch');
    await expectSealError(kek.unwrap(wrapped.subarray(1), { keyId: 0x12345678, purpose: 'storage' }), 'ErrKEKMismatch');
    const other = new LocalKekProvider('file', crypto.randomBytes(32), 'file:///other');
    await expectSealError(other.unwrap(wrapped, { keyId: 0x12345678, purpose: 'storage' }), 'ErrKEKMismatch');
  });

  it('uses a fresh nonce per wrap and the SPEC AAD', async () => {
    const kekBytes = crypto.randomBytes(32);
    const kek = new LocalKekProvider('env', kekBytes, 'env://K');
    const dek = crypto.randomBytes(32);
    const a = Buffer.from(await kek.wrap(dek, { keyId: 1, purpose: 'raft' }));
    const b = Buffer.from(await kek.wrap(dek, { keyId: 1, purpose: 'raft' }));
    expect(a.equals(b)).toBe(false);
    // Independent check: nonce ‖ ct ‖ tag under AAD "sealkv-dek" ‖ "raft" ‖ 00000001.
    expect(localWrapAad({ keyId: 1, purpose: 'raft' }).toString('hex')).toBe(Buffer.from('sealkv-dekraft\0\0\0\x01', 'latin1').toString('hex'));
    const d = crypto.createDecipheriv('aes-256-gcm', kekBytes, a.subarray(0, 12));
    d.setAAD(localWrapAad({ keyId: 1, purpose: 'raft' }));
    d.setAuthTag(a.subarray(44));
    expect(Buffer.concat([d.update(a.subarray(12, 44)), d.final()]).equals(dek)).toBe(true);
  });

  it('refuses to wrap or unwrap once closed', async () => {
    const kek = new LocalKekProvider('file', crypto.randomBytes(32), 'file:///t');
    const wrapped = await kek.wrap(crypto.randomBytes(32), { keyId: 1, purpose: 'raft' });
    kek.close();
    await expect(kek.wrap(crypto.randomBytes(32), { keyId: 1, purpose: 'raft' })).rejects.toThrow(/closed/);
    await expect(kek.unwrap(wrapped, { keyId: 1, purpose: 'raft' })).rejects.toThrow(/closed/);
  });

  it('refuses bad arguments as programmer errors', async () => {
    const kek = new LocalKekProvider('file', crypto.randomBytes(32), 'file:///t');
    await expect(kek.wrap(crypto.randomBytes(16), { keyId: 1, purpose: 'raft' })).rejects.toThrow(RangeError);
    await expect(kek.wrap(crypto.randomBytes(32), { keyId: 0, purpose: 'raft' })).rejects.toThrow(RangeError);
    await expect(kek.wrap(crypto.randomBytes(32), { keyId: 1, purpose: 'x' as 'raft' })).rejects.toThrow(RangeError);
  });
});

describe('file:// provider', () => {
  it('loads a 0600 32-byte file outside the data dir, by URI or --kek-file', async () => {
    const file = writeKekFile(dir);
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const byUri = openKekProvider({ kekUri: `file://${file}`, dataDir });
    const byFlag = openKekProvider({ kekFile: file, dataDir });
    expect(byUri.describe()).toBe(`file://${file}`);
    const wrapped = await byUri.wrap(crypto.randomBytes(32), { keyId: 2, purpose: 'storage' });
    expect((await byFlag.unwrap(wrapped, { keyId: 2, purpose: 'storage' })).length).toBe(32);
  });

  it.each([0o640, 0o604, 0o644, 0o660, 0o700 | 0o004])('refuses mode %s (readable or writable by group/others)', async (mode) => {
    const file = writeKekFile(dir);
    fs.chmodSync(file, mode);
    await expectSealError(() => openKekProvider({ kekFile: file }), 'ErrKEKFile');
  });

  it.each([0, 31, 33, 64])('refuses a %d-byte file', async (size) => {
    const file = path.join(dir, 'kek.bin');
    fs.writeFileSync(file, crypto.randomBytes(size), { mode: 0o600 });
    await expectSealError(() => openKekProvider({ kekFile: file }), 'ErrKEKFile');
  });

  it('refuses a file inside the data dir, also through a symlinked data dir', async () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(path.join(dataDir, 'encryption'), { recursive: true });
    const inside = writeKekFile(path.join(dataDir, 'encryption'));
    await expectSealError(() => openKekProvider({ kekFile: inside, dataDir }), 'ErrKEKFile');
    const link = path.join(dir, 'data-link');
    fs.symlinkSync(dataDir, link);
    await expectSealError(() => openKekProvider({ kekFile: path.join(link, 'encryption', 'kek.bin'), dataDir }), 'ErrKEKFile');
    await expectSealError(() => openKekProvider({ kekFile: inside, dataDir: link }), 'ErrKEKFile');
  });

  it('accepts a sibling whose name starts with the data dir name', () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    fs.mkdirSync(path.join(dir, 'data-keys'));
    expect(openKekProvider({ kekFile: writeKekFile(path.join(dir, 'data-keys')), dataDir }).kind).toBe('file');
  });

  it('refuses a missing file and a directory; follows a symlink to a safe file', async () => {
    await expectSealError(() => openKekProvider({ kekFile: path.join(dir, 'nope') }), 'ErrKEKFile');
    await expectSealError(() => openKekProvider({ kekFile: dir }), 'ErrKEKFile');
    const link = path.join(dir, 'link');
    fs.symlinkSync(writeKekFile(dir), link);
    expect(openKekProvider({ kekFile: link }).kind).toBe('file');
  });
});

describe('env:// provider', () => {
  it('reads the base64 KEK and deletes the variable at once', async () => {
    const env: NodeJS.ProcessEnv = { SEALKV_KEK_BASE64: crypto.randomBytes(32).toString('base64') };
    const kek = openKekProvider({ kekUri: 'env://SEALKV_KEK_BASE64', env });
    expect('SEALKV_KEK_BASE64' in env).toBe(false);
    expect(kek.describe()).toBe('env://SEALKV_KEK_BASE64');
    const wrapped = await kek.wrap(crypto.randomBytes(32), { keyId: 3, purpose: 'raft' });
    expect((await kek.unwrap(wrapped, { keyId: 3, purpose: 'raft' })).length).toBe(32);
  });

  it('deletes from process.env by default', () => {
    process.env.SEALKV_TEST_KEK = crypto.randomBytes(32).toString('base64');
    openKekProvider({ kekUri: 'env://SEALKV_TEST_KEK' }).close();
    expect(process.env.SEALKV_TEST_KEK).toBeUndefined();
  });

  it('refuses an unset variable and bad material, deleting it all the same', async () => {
    await expectSealError(() => openKekProvider({ kekUri: 'env://MISSING', env: {} }), 'ErrKEKRequired');
    for (const value of [crypto.randomBytes(16).toString('base64'), 'not base64 at all!', crypto.randomBytes(33).toString('base64')]) {
      const env: NodeJS.ProcessEnv = { K: value };
      await expectSealError(() => openKekProvider({ kekUri: 'env://K', env }), 'ErrKEKUri');
      expect('K' in env).toBe(false);
    }
  });
});
