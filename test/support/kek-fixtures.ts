// Helpers shared by the KEK and sidecar tests.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { isSealError, type ErrorCode } from '../../src/errors/index.js';

/** Awaits `promise` (or calls `fn`) and asserts it fails with the given code. */
export async function expectSealError(promise: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<Error> {
  let error: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    error = err;
  }
  expect(error, `expected ${code}`).toBeDefined();
  if (!isSealError(error, code)) throw new Error(`expected ${code}, got ${String(error)}`, { cause: error });
  return error;
}

/** A fresh temp dir; remove it with `fs.rmSync(dir, { recursive: true, force: true })`. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sealkv-${prefix}-`));
}

/** Writes a 32-byte KEK file with mode 0600 and returns its path. */
export function writeKekFile(dir: string, name = 'kek.bin'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, crypto.randomBytes(32), { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return file;
}
