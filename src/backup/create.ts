// `backup create`: writes one node's store rows and sidecar, taken at one
// point, and the metadata (format.ts) into a new directory.
//
// The point: the store's read view and the sidecar state must agree. The
// sidecar changes only when an encryption entry applies, in the same apply
// step as the store batch, so a running node takes both between two applies
// (StateMachine.atApplyPoint, see src/node/replication.ts); a stopped data
// dir is still, and the store's LOCK keeps a node from starting on it while
// the backup reads. Nothing here unwraps a key or needs the KEK: the sidecar
// is copied as the node holds it (wrapped DEKs), the rows as they are on disk.
//
// Files are written, fsynced, and backup.json last (durably); a failure
// leaves no backup.json, and verify refuses such a directory.

import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { nodeId16 } from '../crypto/index.js';
import { writeFileDurably, fsyncDirectory } from '../durable/index.js';
import { ROLLOUT_ROW_KEY, decodeRollout } from '../encryption/index.js';
import { sealError } from '../errors/index.js';
import { CLOCK_ROW_KEY } from '../fsm/index.js';
import { parseSidecar, serializeSidecar, sidecarPath, type SidecarState } from '../sidecar/index.js';
import { RocksEngine, Store, type SnapshotHeader } from '../store/index.js';
import { BACKUP_FORMAT, BACKUP_VERSION, META_FILE, SIDECAR_FILE, STORE_FILE, metaText, nowRfc3339, testFault, type BackupMeta, type FileSum } from './format.js';

/** record_count(8 BE) ‖ SHA-256(32): the end of every snapshot stream. */
const TRAILER_TAIL = 40;

/** The rows and the sidecar at one point. */
export interface BackupPoint {
  readonly appliedIndex: number;
  readonly header: SnapshotHeader;
  /** The store's snapshot stream, its read view already taken (first chunk pulled). */
  readonly rows: AsyncGenerator<Buffer>;
  readonly first: IteratorResult<Buffer>;
  /** The sidecar state at the point; undefined when the node has none on disk. */
  readonly sidecar: SidecarState | undefined;
}

export interface BackupSource {
  readonly mode: 'online' | 'offline';
  /** The node's data dir: the backup may not go inside it. */
  readonly dataDir: string;
  readonly raftId: string | null;
  readonly raftNodeId: number | null;
  readonly members: { voters: number[]; learners: number[] } | null;
  /** Takes the point; called once, after the output directory is ready. */
  capture(): Promise<BackupPoint>;
}

/** What `backup create` answers: the metadata without the file list. */
export type BackupSummary = Omit<BackupMeta, 'files'> & { readonly out: string; readonly bytes: number };

/**
 * Starts the store's snapshot stream (taking its read view now) and records
 * the sidecar state beside it. Call it where nothing applies meanwhile.
 */
export async function capturePoint(store: Store, at: { appliedIndex: number; ceiling: bigint; cutover: bigint | undefined; sidecar: SidecarState | undefined }): Promise<BackupPoint> {
  const header: SnapshotHeader = at.cutover === undefined ? { version: 1, ceiling: at.ceiling } : { version: 2, ceiling: at.ceiling, cutover: at.cutover };
  const rows = store.snapshotStream(header);
  const first = await rows.next();
  return { appliedIndex: at.appliedIndex, header, rows, first, sidecar: at.sidecar };
}

/** Writes a backup of `source` into `out`, which must be absent or empty. */
export async function createBackup(out: string, source: BackupSource): Promise<BackupSummary> {
  const dir = path.resolve(out);
  const root = path.resolve(source.dataDir);
  if (isInside(dir, root)) throw sealError('ErrBadRequest', `the backup directory ${dir} is inside the data dir ${root}`);
  await prepareOutDir(dir);
  const point = await source.capture();
  let store: FileSum & { rows: number };
  try {
    store = await writeRows(path.join(dir, STORE_FILE), point);
  } finally {
    await point.rows.return(undefined);
  }
  const files: Record<string, FileSum> = { [STORE_FILE]: { bytes: store.bytes, sha256: store.sha256 } };
  const side = point.sidecar;
  if (side !== undefined) {
    const text = serializeSidecar(side);
    await writeFileDurably(path.join(dir, SIDECAR_FILE), text);
    files[SIDECAR_FILE] = { bytes: Buffer.byteLength(text), sha256: sha256Hex(text) };
  }
  const meta: BackupMeta = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    created: nowRfc3339(),
    mode: source.mode,
    node: {
      raft_id: source.raftId,
      raft_node_id: source.raftNodeId,
      node_id16: source.raftId === null ? null : nodeId16(source.raftId),
      members: source.members,
    },
    applied_index: point.appliedIndex,
    store: { rows: store.rows, header_version: point.header.version },
    encryption:
      side === undefined
        ? null
        : {
            sidecar_raft_applied_index: side.raftAppliedIndex,
            storage_envelope_active: side.storageEnvelopeActive,
            raft_envelope_cutover_index: side.raftEnvelopeCutoverIndex,
            active: { ...side.active },
            keys: [...side.keys.values()].sort((a, b) => a.keyId - b.keyId).map((k) => ({ key_id: k.keyId, purpose: k.purpose })),
          },
    files,
  };
  testFault('backup-before-meta');
  await writeFileDurably(path.join(dir, META_FILE), metaText(meta));
  const { files: _files, ...summary } = meta;
  return { ...summary, out: dir, bytes: Object.values(files).reduce((n, f) => n + f.bytes, 0) };
}

/**
 * `backup create --data-dir`: a stopped node's data dir. Opening its store
 * takes RocksDB's LOCK (a running node → ErrDataDirLocked) and holds it until
 * the backup is written; nothing in the data dir is changed.
 */
export async function createOfflineBackup(dataDir: string, out: string, raftId: string | null): Promise<BackupSummary> {
  const root = path.resolve(dataDir);
  const store = new Store(await RocksEngine.open(path.join(root, 'store')));
  try {
    return await createBackup(out, {
      mode: 'offline',
      dataDir: root,
      raftId,
      raftNodeId: null,
      members: null,
      capture: async () => {
        const clock = await store.getInternal(CLOCK_ROW_KEY);
        const cutover = decodeRollout(await store.getInternal(ROLLOUT_ROW_KEY)).raftEnvelopeCutoverIndex;
        return capturePoint(store, {
          appliedIndex: Number(await store.appliedIndex()),
          ceiling: clock === undefined || clock.length < 8 ? 0n : clock.readBigUInt64BE(0),
          cutover: cutover === null ? undefined : BigInt(cutover),
          sidecar: await readSidecarIfAny(root),
        });
      },
    });
  } finally {
    await store.close();
  }
}

/** True when `dir` is `root` or below it. */
function isInside(dir: string, root: string): boolean {
  const rel = path.relative(root, dir);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

// Read only: Sidecar.load would also discard a leftover keys.json.tmp.
async function readSidecarIfAny(dataDir: string): Promise<SidecarState | undefined> {
  const file = sidecarPath(dataDir);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseSidecar(text, file);
}

async function prepareOutDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const entries = await fs.readdir(dir);
  if (entries.length > 0) throw sealError('ErrBadRequest', `the backup directory ${dir} is not empty (${entries.length} entries): give a new or empty one`);
}

async function writeRows(file: string, point: BackupPoint): Promise<FileSum & { rows: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  // The trailer's record count sits TRAILER_TAIL bytes before the end (snapshot.ts).
  let tail = Buffer.alloc(0);
  const handle = await fs.open(file, 'wx', 0o600);
  try {
    const write = async (chunk: Buffer): Promise<void> => {
      hash.update(chunk);
      bytes += chunk.length;
      tail = Buffer.concat([tail, chunk]).subarray(-TRAILER_TAIL);
      await handle.write(chunk);
    };
    if (point.first.done !== true) await write(point.first.value);
    for (let next = await point.rows.next(); next.done !== true; next = await point.rows.next()) await write(next.value);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDirectory(path.dirname(file));
  return { bytes, sha256: hash.digest('hex'), rows: Number(tail.readBigUInt64BE(0)) };
}

function sha256Hex(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}
