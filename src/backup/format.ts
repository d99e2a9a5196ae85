// The on-disk form of a backup (README.md of this folder): a directory of
//
//   store.snap    the store's rows at one point, as a snapshot stream (SPEC §5.4:
//                 header, raw rows — ciphertext stays ciphertext —, trailer with
//                 its own SHA-256)
//   keys.json     the node's sidecar as it stood at that same point (wrapped DEKs
//                 only); absent for a node that never had one
//   backup.json   the metadata, written last: a backup without it is incomplete
//
// backup.json names every other file with its size and SHA-256, and carries
// a SHA-256 of its own canonical text (`checksum`), so that a flipped byte
// anywhere in the backup is found and named before anything is opened. It
// never holds a KEK or an unwrapped key: key_ids, purposes and indexes only.

import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { sealError } from '../errors/index.js';

export const BACKUP_FORMAT = 'sealkv-backup';
export const BACKUP_VERSION = 1;
export const STORE_FILE = 'store.snap';
export const SIDECAR_FILE = 'keys.json';
export const META_FILE = 'backup.json';
const MAX_META_BYTES = 1 << 20;

export interface FileSum {
  readonly bytes: number;
  readonly sha256: string;
}

export interface BackupKey {
  readonly key_id: number;
  readonly purpose: 'storage' | 'raft';
}

/** backup.json, without its own checksum. */
export interface BackupMeta {
  readonly format: typeof BACKUP_FORMAT;
  readonly version: typeof BACKUP_VERSION;
  /** RFC 3339 UTC. */
  readonly created: string;
  /** `online` (admin API, a running node) or `offline` (a stopped data dir). */
  readonly mode: 'online' | 'offline';
  readonly node: {
    /** The node's --raft-id (null: an offline backup not told it). */
    readonly raft_id: string | null;
    readonly raft_node_id: number | null;
    readonly node_id16: number | null;
    /** Raft membership as the node had applied it (null offline). */
    readonly members: { readonly voters: number[]; readonly learners: number[] } | null;
  };
  /** The store's Raft applied index at the backup's point. */
  readonly applied_index: number;
  readonly store: {
    readonly rows: number;
    /** Snapshot header version of store.snap (1 or 2). */
    readonly header_version: 1 | 2;
  };
  /** Null when the node had no sidecar on disk. */
  readonly encryption: {
    readonly sidecar_raft_applied_index: number;
    readonly storage_envelope_active: boolean;
    readonly raft_envelope_cutover_index: number | null;
    readonly active: { readonly storage?: number; readonly raft?: number };
    readonly keys: readonly BackupKey[];
  } | null;
  readonly files: Readonly<Record<string, FileSum>>;
}

function corrupt(message: string, cause?: unknown): Error {
  return sealError('ErrBackupCorrupt', message, cause);
}

/** The text written to backup.json: the metadata and the SHA-256 of its own canonical JSON. */
export function metaText(meta: BackupMeta): string {
  return JSON.stringify({ ...meta, checksum: metaChecksum(meta) }, null, 2) + '\n';
}

function metaChecksum(meta: BackupMeta): string {
  return crypto.createHash('sha256').update(JSON.stringify(meta)).digest('hex');
}

/** Reads and checks backup.json (ErrBackupCorrupt naming what is wrong). */
export async function readMeta(dir: string): Promise<BackupMeta> {
  const file = path.join(dir, META_FILE);
  let text: string;
  try {
    const stat = await fs.stat(file);
    if (stat.size > MAX_META_BYTES) throw corrupt(`${file} is ${stat.size} bytes, more than any backup metadata`);
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw corrupt(`${dir} has no ${META_FILE}: not a backup, or one that did not finish`);
    throw err;
  }
  let doc: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    doc = parsed as Record<string, unknown>;
  } catch (err) {
    throw corrupt(`${META_FILE} is not a JSON object (${(err as Error).message})`);
  }
  const { checksum, ...rest } = doc;
  if (rest.format !== BACKUP_FORMAT) throw corrupt(`${META_FILE}: format ${JSON.stringify(rest.format)} is not ${BACKUP_FORMAT}`);
  if (rest.version !== BACKUP_VERSION) throw corrupt(`${META_FILE}: version ${JSON.stringify(rest.version)} is not ${BACKUP_VERSION}`);
  const meta = rest as unknown as BackupMeta;
  if (typeof checksum !== 'string' || checksum !== metaChecksum(meta)) throw corrupt(`${META_FILE}: its checksum does not match its contents (the file was changed or damaged)`);
  if (typeof meta.files !== 'object' || meta.files === null || meta.files[STORE_FILE] === undefined) throw corrupt(`${META_FILE} does not list ${STORE_FILE}`);
  return meta;
}

/** Size and SHA-256 of a file, streamed. */
export async function fileSum(file: string): Promise<FileSum> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  const handle = await fs.open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream({ autoClose: false })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } finally {
    await handle.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Checks every file backup.json lists; the sidecar's absence is the caller's to judge (ErrBackupMissingSidecar). */
export async function checkFiles(dir: string, meta: BackupMeta): Promise<{ sidecarPresent: boolean }> {
  let sidecarPresent = false;
  for (const [name, want] of Object.entries(meta.files)) {
    if (name !== path.basename(name) || name.startsWith('.')) throw corrupt(`${META_FILE} lists an unexpected file name ${JSON.stringify(name)}`);
    let got: FileSum;
    try {
      got = await fileSum(path.join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (name === SIDECAR_FILE) continue;
      throw corrupt(`${name} is missing from the backup`);
    }
    if (got.bytes !== want.bytes || got.sha256 !== want.sha256) {
      throw corrupt(`${name} does not match its checksum in ${META_FILE} (${got.bytes} bytes, expected ${want.bytes}): the file was changed or damaged`);
    }
    if (name === SIDECAR_FILE) sidecarPresent = true;
  }
  return { sidecarPresent };
}

/** RFC 3339 UTC to the second, as the sidecar writes timestamps. */
export function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * Test-only: SEALKV_TEST_FAULT=<point> SIGKILLs this process at a named
 * point (as a power cut would), for the crash tests of create and restore:
 * `backup-before-meta` (files written, backup.json not yet) and
 * `restore-before-rename` (the data dir built beside the target).
 */
export function testFault(point: 'backup-before-meta' | 'restore-before-rename'): void {
  if (process.env.SEALKV_TEST_FAULT === point) process.kill(process.pid, 'SIGKILL');
}
