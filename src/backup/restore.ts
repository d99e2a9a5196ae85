// `backup restore`: a backup into an empty data dir, from which `sealkv
// start` runs a NEW single-node cluster that serves the backup's data.
//
// Why a new cluster, and why new DEKs (README.md of this folder):
//   - the backup holds no Raft log, so the restored node starts a fresh one:
//     the store's applied index is reset to 0 (else the new log's first
//     entries would be skipped as already applied), the sidecar's
//     raft_applied_index to the founding index, and a Phase 2 cutover moves
//     to the founding index 1 (every entry of the new log is a Raft envelope);
//   - nonces are (node_id16, local_epoch, counter) per DEK (SPEC §3.3). The
//     original node, or copies of its later data, may have used every epoch
//     above the backup's under the backup's DEKs; no start-up check can know
//     those epochs from the backup alone. So the restore generates a fresh
//     storage DEK and a fresh raft DEK (new random key_ids, wrapped by the
//     KEK) and makes them active before the node ever starts: every seal of
//     the restored node is under a key nobody else ever held. The backup's
//     DEKs stay, for opening its data only (never active again).
//   - the restored node is registered as the only writer under the new DEKs
//     (at epoch 0; its first start bumps to 1). Under the old DEKs its
//     local_epoch is raised to at least what the registry recorded for its
//     --raft-id, so ErrLocalEpochRollback stays for real rollbacks; a
//     --raft-id whose node_id16 belongs to another registered writer is
//     refused here (ErrNodeIDCollision), as the start would refuse it.
//
// Steps: refuse a non-empty target (ErrDataDirNotEmpty); verify the backup
// whole with the KEK; build the data dir in a hidden sibling directory
// (store rows, then the key/rollout/registry rows and applied index in one
// batch, flushed; keys.json durably); rename it into place. A failure
// leaves the target as it was; a restore killed part way leaves only the
// hidden sibling, which the next restore into the same target removes.

import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DEK_BYTES, nodeId16, type BackendName, type Purpose } from '../crypto/index.js';
import { fsyncDirectory, writeFileDurably } from '../durable/index.js';
import {
  KEY_ROW_PREFIX,
  ROLLOUT_ROW_KEY,
  decodeRollout,
  decodeWriterRow,
  encodeKeyRow,
  encodeRollout,
  encodeWriterRow,
  keyIdOfKeyRow,
  keyRowKey,
  newKeyId,
  writerRegistryKey,
  writerRowPrefix,
  type KeyRecord,
} from '../encryption/index.js';
import { sealError } from '../errors/index.js';
import type { KekProvider } from '../kek/index.js';
import { BOOTSTRAP_INDEX } from '../raft/index.js';
import { SIDECAR_DIR, SIDECAR_FILE as SIDECAR_NAME, parseSidecar, serializeSidecar, sidecarTextProblem, type SidecarKey, type SidecarState } from '../sidecar/index.js';
import { RocksEngine, Store, type WriteOp } from '../store/index.js';
import { SIDECAR_FILE, STORE_FILE, nowRfc3339, readMeta, testFault } from './format.js';
import { firstFailure, verifyBackup, type VerifyReport } from './verify.js';

export interface RestoreOptions {
  readonly in: string;
  /** Absent or empty. */
  readonly dataDir: string;
  /** Needed when the backup holds DEKs: it unwraps them (verify) and wraps the new ones. */
  readonly kek?: KekProvider;
  /** The --raft-id the restored node will start with; default the backup's. */
  readonly raftId?: string;
  readonly backend?: BackendName;
}

export interface RestoreReport {
  readonly data_dir: string;
  readonly raft_id: string;
  readonly node_id16: number;
  readonly verify: VerifyReport;
  /** The fresh DEKs made active, by purpose (none when the backup had no DEKs). */
  readonly new_active: { storage?: number; raft?: number };
  readonly old_key_ids: number[];
  readonly storage_envelope_active: boolean;
  readonly raft_envelope_cutover_index: number | null;
}

interface Plan {
  readonly rows: WriteOp[];
  readonly sidecar: SidecarState | undefined;
  readonly newActive: { storage?: number; raft?: number };
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreReport> {
  const target = path.resolve(options.dataDir);
  await checkEmpty(target);
  const source = path.resolve(options.in);
  const meta = await readMeta(source);
  const raftId = options.raftId ?? meta.node.raft_id;
  if (raftId === null || raftId.length === 0) throw sealError('ErrBadRequest', 'the backup does not name its node: give the --raft-id the restored node will start with');
  const verify = await verifyBackup(source, { ...(options.kek === undefined ? {} : { kek: options.kek }), ...(options.backend === undefined ? {} : { backend: options.backend }) });
  const failed = firstFailure(verify);
  if (failed !== undefined) throw failed;
  const sidecar = verify.sidecar ? parseSidecar(await fs.readFile(path.join(source, SIDECAR_FILE), 'utf8'), `${SIDECAR_FILE} of the backup`) : undefined;

  await fs.mkdir(path.dirname(target), { recursive: true });
  await removeInterrupted(target);
  const staging = path.join(path.dirname(target), `${stagingPrefix(target)}${crypto.randomBytes(4).toString('hex')}`);
  await fs.mkdir(staging, { mode: 0o700 });
  let plan: Plan;
  try {
    const store = new Store(await RocksEngine.open(path.join(staging, 'store')));
    try {
      await store.restoreSnapshot(createReadStream(path.join(source, STORE_FILE)));
      plan = await planRestore(store, sidecar, raftId, options.kek);
      // Applied index 0: the new Raft log starts at its founding index.
      await store.applyBatch(plan.rows, { appliedIndex: 0n });
      await store.persist();
    } finally {
      await store.close();
    }
    if (plan.sidecar !== undefined) {
      const dir = path.join(staging, SIDECAR_DIR);
      await fs.mkdir(dir, { mode: 0o700 });
      await writeFileDurably(path.join(dir, SIDECAR_NAME), serializeSidecar(plan.sidecar));
      await fsyncDirectory(staging);
    }
    testFault('restore-before-rename');
    await fs.rename(staging, target);
    await fsyncDirectory(path.dirname(target));
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    throw err;
  }
  return {
    data_dir: target,
    raft_id: raftId,
    node_id16: nodeId16(raftId),
    verify,
    new_active: plan.newActive,
    old_key_ids: [...(sidecar?.keys.keys() ?? [])].sort((a, b) => a - b),
    storage_envelope_active: plan.sidecar?.storageEnvelopeActive ?? false,
    raft_envelope_cutover_index: plan.sidecar?.raftEnvelopeCutoverIndex ?? null,
  };
}

/** The hidden sibling a restore into `target` builds in: `.<name>.restoring-<random>`. */
function stagingPrefix(target: string): string {
  return `.${path.basename(target)}.restoring-`;
}

/** What a restore into `target` that was killed part way left beside it (never read: it was not renamed into place). */
async function removeInterrupted(target: string): Promise<void> {
  const prefix = stagingPrefix(target);
  for (const name of await fs.readdir(path.dirname(target))) {
    if (name.startsWith(prefix)) await fs.rm(path.join(path.dirname(target), name), { recursive: true, force: true });
  }
}

async function checkEmpty(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (entries.length > 0) {
    throw sealError('ErrDataDirNotEmpty', `${dir} is not empty (${entries.length} entries): restore only into a new or empty data dir, never over a node's data`);
  }
}

/** The rows and the sidecar that make the restored store a new cluster's, with fresh active DEKs. */
async function planRestore(store: Store, side: SidecarState | undefined, raftId: string, kek: KekProvider | undefined): Promise<Plan> {
  if (side === undefined) return { rows: [], sidecar: undefined, newActive: {} };
  const rollout = decodeRollout(await store.getInternal(ROLLOUT_ROW_KEY));
  const storageEnvelopeActive = side.storageEnvelopeActive || rollout.storageEnvelopeActive;
  const hadCutover = (side.raftEnvelopeCutoverIndex ?? rollout.raftEnvelopeCutoverIndex) !== null;
  if (side.keys.size === 0) {
    return { rows: [], sidecar: { ...side, raftAppliedIndex: 0, raftEnvelopeCutoverIndex: null }, newActive: {} };
  }
  if (kek === undefined) throw sealError('ErrKEKRequired', 'the backup holds DEKs: restore needs the KEK to wrap the fresh ones');
  const me16 = nodeId16(raftId);
  const rows: WriteOp[] = [];
  const keys = new Map<number, SidecarKey>();
  const taken = new Set<number>(side.keys.keys());
  for (const { key } of await store.scanInternal(KEY_ROW_PREFIX)) {
    const keyId = keyIdOfKeyRow(key);
    taken.add(keyId);
    // A DEK the sidecar already retired (it was one entry ahead): its rows go too, as the entry's batch would have done.
    if (!side.keys.has(keyId)) {
      rows.push({ type: 'deleteInternal', key: keyRowKey(keyId) });
      for (const writer of await store.scanInternal(writerRowPrefix(keyId))) rows.push({ type: 'deleteInternal', key: writer.key });
    }
  }
  for (const key of side.keys.values()) {
    const raw = await store.getInternal(writerRegistryKey(key.keyId, me16));
    const row = raw === undefined ? undefined : decodeWriterRow(raw);
    if (row !== undefined && row.fullNodeId !== raftId) {
      throw sealError('ErrNodeIDCollision', `--raft-id ${raftId} has node_id16 ${me16}, which writer ${row.fullNodeId} holds under DEK ${key.keyId} in this backup; restore under another --raft-id`);
    }
    keys.set(key.keyId, { ...key, localEpoch: Math.max(key.localEpoch, row?.lastSeenLocalEpoch ?? 0) });
    // The sidecar may be one entry ahead of the store (a stopped node's crash point): the rows follow it.
    rows.push({ type: 'putInternal', key: keyRowKey(key.keyId), value: encodeKeyRow({ keyId: key.keyId, purpose: key.purpose, wrapped: key.wrapped, created: key.created, kek: key.kek }) });
  }
  const newActive: { storage?: number; raft?: number } = {};
  for (const purpose of ['storage', 'raft'] as const) {
    if (side.active[purpose] === undefined) continue;
    const record = await freshKey(kek, purpose, taken);
    newActive[purpose] = record.keyId;
    keys.set(record.keyId, { ...record, localEpoch: 0 });
    rows.push({ type: 'putInternal', key: keyRowKey(record.keyId), value: encodeKeyRow(record) });
    rows.push({ type: 'putInternal', key: writerRegistryKey(record.keyId, me16), value: encodeWriterRow({ fullNodeId: raftId, firstSeenLocalEpoch: 0, lastSeenLocalEpoch: 0 }) });
  }
  const cutover = hadCutover ? BOOTSTRAP_INDEX : null;
  rows.push({ type: 'putInternal', key: ROLLOUT_ROW_KEY, value: encodeRollout({ storageEnvelopeActive, raftEnvelopeCutoverIndex: cutover, active: newActive }) });
  const sidecar: SidecarState = { raftAppliedIndex: cutover ?? 0, storageEnvelopeActive, raftEnvelopeCutoverIndex: cutover, active: newActive, keys };
  const problem = sidecarTextProblem(serializeSidecar(sidecar));
  if (problem !== undefined) throw sealError('ErrBackupCorrupt', `the restored keys.json would not be valid: ${problem}`);
  return { rows, sidecar, newActive };
}

/** A fresh DEK wrapped by the KEK at once; the key bytes are zeroed before returning. */
async function freshKey(kek: KekProvider, purpose: Purpose, taken: Set<number>): Promise<KeyRecord> {
  const keyId = newKeyId(taken);
  taken.add(keyId);
  const dek = crypto.randomBytes(DEK_BYTES);
  try {
    return { keyId, purpose, wrapped: await kek.wrap(dek, { keyId, purpose }), created: nowRfc3339(), kek: kek.describe() };
  } finally {
    dek.fill(0);
  }
}
