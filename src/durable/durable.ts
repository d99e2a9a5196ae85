// Crash-durable file replacement (SPEC §4.3) and the start-up probe that
// the filesystem really provides it; used by the sidecar (keys.json) and the
// Raft part (its log directory, peers.json).
//
// Protocol: write `<file>.tmp` → fsync it → rename over `<file>` → fsync
// the directory → only then return. A crash at any point leaves either the
// old file or the new one at `<file>`, never a mix; a leftover `.tmp` is
// never read. Filesystems where a directory fsync fails (some NFS and FUSE
// mounts) cannot promise the rename survives a power loss: the probe runs
// the same sequence on a sentinel file and refuses them.

import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { sealError } from '../errors/index.js';

/** The fsync hooks, injectable so tests can stand in a failing filesystem. */
export interface DurableFs {
  fsyncDir(dir: string): Promise<void>;
}

export const nodeDurableFs: DurableFs = { fsyncDir: fsyncDirectory };

export const TMP_SUFFIX = '.tmp';
export const PROBE_NAME = '.sealkv-fsync-probe';

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncDirectory for callers that must stay synchronous. */
export function fsyncDirectorySync(dir: string): void {
  const fd = fsSync.openSync(dir, 'r');
  try {
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Replaces `file` with `data` durably (mode 0600). */
export async function writeFileDurably(file: string, data: string | Uint8Array, durable: DurableFs = nodeDurableFs): Promise<void> {
  const tmp = file + TMP_SUFFIX;
  const handle = await fs.open(tmp, 'w', 0o600);
  try {
    await handle.chmod(0o600); // a leftover tmp keeps its old mode otherwise
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
  await durable.fsyncDir(path.dirname(file));
}

/** writeFileDurably for callers that must stay synchronous. */
export function writeFileDurablySync(file: string, data: string | Uint8Array): void {
  const tmp = file + TMP_SUFFIX;
  const fd = fsSync.openSync(tmp, 'w', 0o600);
  try {
    fsSync.fchmodSync(fd, 0o600); // a leftover tmp keeps its old mode otherwise
    fsSync.writeFileSync(fd, data);
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
  fsSync.renameSync(tmp, file);
  fsyncDirectorySync(path.dirname(file));
}

/** Creates `dir` (mode 0700) if needed, making its entry durable in the parent. */
export async function ensureDirDurably(dir: string, durable: DurableFs = nodeDurableFs): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      await ensureDirDurably(path.dirname(dir), durable);
      await fs.mkdir(dir, { mode: 0o700 });
    } else if (code !== 'EEXIST') {
      throw err;
    }
  }
  // Also when it existed: a crash may have come between its mkdir and this fsync.
  await durable.fsyncDir(path.dirname(dir));
}

/**
 * Creates `dir` durably if needed, then runs the durable-write sequence on a
 * sentinel in it; ErrUnsupportedFilesystem if any step fails (ErrNoSpace when
 * it fails for want of space).
 */
export async function probeDurableDir(dir: string, durable: DurableFs = nodeDurableFs): Promise<void> {
  const sentinel = path.join(dir, PROBE_NAME);
  // Test-only: SEALKV_TEST_FAULT=probe-fsync-dir makes the probe's directory
  // fsync fail, as on a filesystem without one (the ErrUnsupportedFilesystem start test).
  if (process.env.SEALKV_TEST_FAULT === 'probe-fsync-dir') durable = { fsyncDir: () => Promise.reject(Object.assign(new Error('test fault'), { code: 'EINVAL' })) };
  try {
    await ensureDirDurably(dir, durable);
    await writeFileDurably(sentinel, `sealkv fsync probe ${process.pid}\n`, durable);
    await fs.unlink(sentinel);
    await durable.fsyncDir(dir);
  } catch (err) {
    await fs.rm(sentinel, { force: true }).catch(() => undefined);
    await fs.rm(sentinel + TMP_SUFFIX, { force: true }).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    // A full device says nothing about the filesystem: do not send the operator to another one.
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw sealError('ErrNoSpace', `${dir}: no space left on its device (${code}) for a durable write; free space, then start again`, err);
    }
    throw sealError(
      'ErrUnsupportedFilesystem',
      `${dir} cannot make a file replacement durable (tmp, fsync, rename, directory fsync failed: ${code}); put the data dir on a local filesystem such as ext4 or xfs`,
      err,
    );
  }
}
