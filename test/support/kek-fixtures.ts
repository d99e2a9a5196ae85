// Helpers shared by the KEK and sidecar tests.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import type { Purpose } from '../../src/crypto/index.js';
import { isSealError, type ErrorCode } from '../../src/errors/index.js';
import type { KekProvider } from '../../src/kek/index.js';
import type { SidecarChange } from '../../src/sidecar/index.js';

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

/** A DEK of the bootstrap entry, with its plaintext for checks. */
export interface TestDek {
  readonly keyId: number;
  readonly purpose: Purpose;
  readonly dek: Buffer;
}

/** The sidecar changes of a bootstrap entry: one storage and one raft DEK, wrapped by `kek`, made active. */
export async function bootstrapChanges(kek: KekProvider, keyIds: { storage: number; raft: number } = { storage: 0x12345678, raft: 0x9abcdef0 }): Promise<{ changes: SidecarChange[]; deks: TestDek[] }> {
  const changes: SidecarChange[] = [];
  const deks: TestDek[] = [];
  for (const purpose of ['storage', 'raft'] as const) {
    const keyId = keyIds[purpose];
    const dek = crypto.randomBytes(32);
    const wrapped = await kek.wrap(dek, { keyId, purpose });
    changes.push({ type: 'add-key', keyId, purpose, wrapped, kek: kek.describe(), created: '2026-04-29T10:00:00Z' });
    changes.push({ type: 'set-active', purpose, keyId });
    deks.push({ keyId, purpose, dek });
  }
  return { changes, deks };
}

/** Edits keys.json on disk directly, as a damaged, old or hand-edited file would be. */
export function editSidecarOnDisk(file: string, edit: (doc: any) => void): void {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(doc);
  fs.writeFileSync(file, JSON.stringify(doc));
}
