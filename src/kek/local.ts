// Local KEK providers (SPEC §4.1): `file://` and `env://`.
//
// Both hold 32 raw KEK bytes in memory and wrap a DEK with AES-256-GCM under
// a random 96-bit nonce and the AAD "sealkv-dek" ‖ purpose ‖ key_id, so a
// wrapped DEK moved to another key_id or purpose fails to unwrap.
// Wrapped layout: nonce (12) ‖ ciphertext (32) ‖ tag (16).
//
// The file provider refuses a KEK that is readable by group or others, that
// lives inside the data directory (it would be copied with the data it
// protects), or that is not exactly 32 bytes. The env provider deletes the
// variable from process.env as soon as it has read it.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DEK_BYTES } from '../crypto/index.js';
import { sealError } from '../errors/index.js';
import { checkContext, checkWrapArgs, localWrapAad, type KekKind, type KekProvider, type WrapContext } from './provider.js';

export const KEK_BYTES = 32;
const NONCE = 12;
const TAG = 16;
export const LOCAL_WRAPPED_BYTES = NONCE + DEK_BYTES + TAG;

export class LocalKekProvider implements KekProvider {
  readonly kind: KekKind;
  readonly #kek: Buffer;
  readonly #description: string;
  #closed = false;

  /** Takes a copy of `kek`; callers should zero theirs. */
  constructor(kind: 'file' | 'env', kek: Uint8Array, description: string) {
    if (kek.length !== KEK_BYTES) throw new RangeError(`KEK must be ${KEK_BYTES} bytes`);
    this.kind = kind;
    this.#kek = Buffer.from(kek);
    this.#description = description;
  }

  async wrap(dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    checkWrapArgs(dek, context);
    this.#checkOpen();
    const nonce = crypto.randomBytes(NONCE);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#kek, nonce, { authTagLength: TAG });
    cipher.setAAD(localWrapAad(context));
    const body = Buffer.concat([cipher.update(dek), cipher.final()]);
    return Buffer.concat([nonce, body, cipher.getAuthTag()]);
  }

  async unwrap(wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    checkContext(context);
    this.#checkOpen();
    if (wrapped.length !== LOCAL_WRAPPED_BYTES) {
      throw sealError('ErrKEKMismatch', `wrapped DEK ${context.keyId} is ${wrapped.length} bytes, not a ${this.kind} KEK wrapping (${LOCAL_WRAPPED_BYTES})`);
    }
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#kek, wrapped.subarray(0, NONCE), { authTagLength: TAG });
    decipher.setAAD(localWrapAad(context));
    decipher.setAuthTag(wrapped.subarray(NONCE + DEK_BYTES));
    const dek = decipher.update(wrapped.subarray(NONCE, NONCE + DEK_BYTES));
    try {
      decipher.final();
    } catch {
      dek.fill(0);
      throw sealError('ErrKEKMismatch', `DEK ${context.keyId} (${context.purpose}) does not unwrap under ${this.#description}`);
    }
    return dek;
  }

  describe(): string {
    return this.#description;
  }

  close(): void {
    this.#closed = true;
    this.#kek.fill(0);
  }

  #checkOpen(): void {
    // After close() the KEK bytes are zeroes: using them would wrap under a known key.
    if (this.#closed) throw new Error(`${this.#description} KEK provider is closed`);
  }
}

/** Loads a `file://` KEK, refusing unsafe files (ErrKEKFile). */
export function loadFileKek(kekPath: string, dataDir?: string): LocalKekProvider {
  const absolute = path.resolve(kekPath);
  let fd: number;
  try {
    fd = fs.openSync(absolute, 'r');
  } catch (err) {
    throw sealError('ErrKEKFile', `cannot open KEK file ${absolute}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, err);
  }
  try {
    // fstat on the opened descriptor: the checks apply to the file read, not
    // to whatever the path names a moment later.
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw sealError('ErrKEKFile', `KEK file ${absolute} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw sealError('ErrKEKFile', `KEK file ${absolute} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    if (dataDir !== undefined && isInside(fs.realpathSync(absolute), realDir(dataDir))) {
      throw sealError('ErrKEKFile', `KEK file ${absolute} is inside the data dir ${dataDir}; keep it where backups of the data do not reach`);
    }
    if (stat.size !== KEK_BYTES) throw sealError('ErrKEKFile', `KEK file ${absolute} is ${stat.size} bytes, expected exactly ${KEK_BYTES}`);
    const kek = Buffer.alloc(KEK_BYTES + 1);
    const n = fs.readSync(fd, kek, 0, kek.length, 0);
    if (n !== KEK_BYTES) {
      kek.fill(0);
      throw sealError('ErrKEKFile', `KEK file ${absolute} changed size while being read`);
    }
    const provider = new LocalKekProvider('file', kek.subarray(0, KEK_BYTES), `file://${absolute}`);
    kek.fill(0);
    return provider;
  } finally {
    fs.closeSync(fd);
  }
}

/** Loads an `env://` KEK (base64 of 32 bytes) and deletes the variable at once. */
export function loadEnvKek(variable: string, env: NodeJS.ProcessEnv = process.env): LocalKekProvider {
  const value = env[variable];
  delete env[variable];
  if (value === undefined || value === '') throw sealError('ErrKEKRequired', `KEK variable ${variable} is not set`);
  const kek = Buffer.from(value, 'base64');
  try {
    if (kek.length !== KEK_BYTES || kek.toString('base64') !== value.trim()) {
      throw sealError('ErrKEKUri', `KEK variable ${variable} must hold the base64 of exactly ${KEK_BYTES} bytes`);
    }
    return new LocalKekProvider('env', kek, `env://${variable}`);
  } finally {
    kek.fill(0);
  }
}

function realDir(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    // A data dir that does not exist yet holds nothing: compare the path as given.
    return path.resolve(dir);
  }
}

function isInside(file: string, dir: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
