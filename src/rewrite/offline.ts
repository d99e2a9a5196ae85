// `sealkv encryption rewrite --offline` (SPEC §11): a sweep on a STOPPED
// node's data dir, opened the way the node opens it at start:
//
//   1. the store first — RocksDB's LOCK: a node running on the data dir
//      refuses with ErrDataDirLocked before anything else is touched; then
//      the refusals the replicated rows decide (sealing not active, target
//      is the active DEK, this node not a registered writer under it —
//      offline there is no Raft to register through; the bumped epoch is
//      above the registered one, which the node's next start records), so
//      that a refused run leaves keys.json alone;
//   2. the sidecar and the KEK through openKeysAtStart, the node's own
//      start-up sequence: every DEK unwrapped, then every local_epoch bumped
//      and made durable before any seal (so this process's nonces never
//      repeat one an earlier or later process used);
//   3. EncryptionRuntime.open and checkAtStart, as the node: sealing follows
//      the replicated flag and active storage DEK, nonce factories use this
//      node's node_id16 and the freshly bumped epoch, and a sidecar behind
//      the store, a rolled-back epoch or a node_id16 collision refuse.
// Then the sweep runs (sealing on a CryptoPool of `workers` threads, or
// in-thread with 0) and everything is closed, also on failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CryptoPool, Keystore, createBackend, nodeId16, type BackendName } from '../crypto/index.js';
import { EncryptionRuntime, ROLLOUT_ROW_KEY, decodeRollout, decodeWriterRow } from '../encryption/index.js';
import { sealError } from '../errors/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { openKeysAtStart, Sidecar } from '../sidecar/index.js';
import { openStore, writerRegistryKey, type RocksOptions, type Store } from '../store/index.js';
import { checkTarget, describeTarget, readSweepState, type SweepTarget } from './state.js';
import { checkSweepable, countVersions, runSweep, type SweepProgress } from './sweep.js';

/**
 * How an offline sweep opens RocksDB: 16 MiB memtables (every version it
 * re-seals is a fresh write, and the default 64 MiB, two in memory, would
 * take half of the sweep's memory), and no block cache (one pass reads each
 * block once).
 */
export const OFFLINE_STORE_OPTIONS: RocksOptions = { writeBufferBytes: 16 * 1024 * 1024, blockCache: false };

export interface OfflineRewriteOptions {
  readonly dataDir: string;
  /** The node's --raft-id: its node_id16 goes into every nonce (SPEC §3.3). */
  readonly raftId: string;
  readonly kekUri?: string;
  readonly kekFile?: string;
  readonly target: SweepTarget;
  readonly rateMiBps?: number;
  /** Pool threads; 0 seals in-thread. Default min(2, cores). */
  readonly workers?: number;
  readonly cryptoBackend?: BackendName;
  readonly compression?: boolean;
  readonly batchBytes?: number;
  readonly signal?: AbortSignal;
  /** Count the versions first, for totalEstimate and the ETA (one extra read pass). */
  readonly estimate?: boolean;
  readonly onProgress?: (p: SweepProgress) => void;
  /** Told when the counting pass starts (it reads the whole version space). */
  readonly onCounting?: () => void;
  readonly logger?: Logger;
}

export interface OfflineRewriteResult extends SweepProgress {
  /** Where the sweep started: after the cursor of an interrupted run, or at the beginning. */
  readonly resumed: boolean;
  readonly workers: number;
}

export async function rewriteOffline(options: OfflineRewriteOptions): Promise<OfflineRewriteResult> {
  const storeDir = path.join(options.dataDir, 'store');
  if (!fs.existsSync(storeDir)) throw sealError('ErrBadRequest', `${options.dataDir} holds no node store (${storeDir} is missing): give the stopped node's --data-dir`);
  const workers = options.workers ?? Math.min(2, os.availableParallelism());
  if (!Number.isInteger(workers) || workers < 0) throw new RangeError(`workers must be a non-negative integer, got ${workers}`);
  const logger = options.logger ?? createLogger({ level: 'warn', base: { raft_id: options.raftId } });

  const store = await openStore(storeDir, undefined, OFFLINE_STORE_OPTIONS);
  const closers: (() => Promise<void> | void)[] = [() => store.close()];
  try {
    if (!(await Sidecar.exists(options.dataDir))) {
      throw sealError('ErrRewriteNotSealing', `${options.dataDir} has no encryption/keys.json: this node never had encryption keys, so there is nothing to seal under`);
    }
    await checkRows(store, options.target, options.raftId);
    const keystore = new Keystore();
    const keys = await openKeysAtStart({
      dataDir: options.dataDir,
      encryptionEnabled: true,
      kek: { ...(options.kekUri === undefined ? {} : { kekUri: options.kekUri }), ...(options.kekFile === undefined ? {} : { kekFile: options.kekFile }) },
      keystore,
      warn: (message) => logger.warn(message),
    });
    closers.push(() => keys.kek?.close());
    const pool = workers === 0 ? undefined : new CryptoPool({ keys: keystore, threads: workers, backend: options.cryptoBackend ?? 'auto' });
    if (pool !== undefined) closers.push(() => pool.close());
    const runtime = await EncryptionRuntime.open({
      raftId: options.raftId,
      store,
      keystore,
      backend: createBackend(options.cryptoBackend ?? 'auto'),
      ...(keys.sidecar === undefined ? {} : { sidecar: keys.sidecar }),
      ...(keys.kek === undefined ? {} : { kek: keys.kek }),
      compression: options.compression ?? true,
      logger,
      ...(pool === undefined ? {} : { pool }),
    });
    await runtime.checkAtStart(Number(await store.appliedIndex()));
    checkSweepable(store, options.target);
    return await sweep(store, options, workers);
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

/** The refusals the replicated rows decide, before the sidecar is touched. */
async function checkRows(store: Store, target: SweepTarget, raftId: string): Promise<void> {
  checkTarget(target);
  const rollout = decodeRollout(await store.getInternal(ROLLOUT_ROW_KEY));
  const active = rollout.active.storage;
  if (!rollout.storageEnvelopeActive || active === undefined) {
    throw sealError('ErrRewriteNotSealing', `cannot rewrite ${describeTarget(target)}: storage sealing is not active on this node (enable-storage-envelope first)`);
  }
  if ('keyId' in target && target.keyId === active) {
    throw sealError('ErrRewriteTargetActive', `key_id ${active} is the active storage DEK: rotate-dek --purpose=storage first, then rewrite the old key_id`);
  }
  const row = await store.getInternal(writerRegistryKey(active, nodeId16(raftId)));
  if (row === undefined || decodeWriterRow(row).fullNodeId !== raftId) {
    throw sealError('ErrWriterNotRegistered', `node ${raftId} is not a registered writer under the active storage DEK ${active}: start the node once (it registers at start), stop it, then rewrite offline`);
  }
}

async function sweep(store: Store, options: OfflineRewriteOptions, workers: number): Promise<OfflineRewriteResult> {
  const { cursor } = await readSweepState(store, options.target);
  let totalEstimate: number | undefined;
  if (options.estimate === true) {
    options.onCounting?.();
    totalEstimate = await countVersions(store, cursor);
  }
  const progress = await runSweep({
    store,
    target: options.target,
    ...(options.rateMiBps === undefined ? {} : { rateMiBps: options.rateMiBps }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
    ...(options.batchBytes === undefined ? {} : { batchBytes: options.batchBytes }),
    ...(totalEstimate === undefined ? {} : { totalEstimate }),
  });
  return { ...progress, resumed: cursor !== undefined, workers };
}

