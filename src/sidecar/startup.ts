// The start-up sequence for encryption keys (SPEC §4.3, §9), up to the
// point where the keystore is filled: the refusals that need only flags,
// the KEK and the sidecar, in this order:
//
//   1. sidecar present but --encryption-enabled not given → ErrSidecarPresentWithoutFlag
//   2. encryption enabled, no KEK configured                → ErrKEKRequired
//   3. the encryption dir cannot make writes durable        → ErrUnsupportedFilesystem
//   4. bad KEK URI or KEK file                              → ErrKEKUri / ErrKEKFile
//   5. keys.json unparseable or inconsistent                → ErrSidecarCorrupt
//   6. a DEK at local_epoch 0xFFFF                          → ErrLocalEpochExhausted
//   7. a DEK does not unwrap under this KEK                 → ErrKEKMismatch
//      (KMS unreachable or too slow                         → ErrKEKUnavailable)
//   8. local_epoch += 1 for every DEK, durable; then the DEKs go into the keystore.
//
// Nothing is changed before every DEK has unwrapped: a failure at any step
// leaves the sidecar file as it was and the keystore empty.

import fs from 'node:fs/promises';
import path from 'node:path';
import type { Keystore } from '../crypto/index.js';
import { isSealError, sealError } from '../errors/index.js';
import { kekConfigured, openKekProvider, timedUnwrap, type KekOptions, type KekProvider } from '../kek/index.js';
import { nodeDurableFs, probeDurableDir, TMP_SUFFIX, type DurableFs } from './durable.js';
import { checkEpochsLeft, Sidecar, SIDECAR_DIR, sidecarPath, type EpochBump } from './sidecar.js';

export interface KeysAtStartOptions {
  readonly dataDir: string;
  /** `--encryption-enabled` */
  readonly encryptionEnabled: boolean;
  /** `--kek-uri` / `--kek-file` (dataDir is filled in). */
  readonly kek: Omit<KekOptions, 'dataDir'>;
  /** Filled with every DEK of the sidecar, actives set. Must be empty. */
  readonly keystore: Keystore;
  readonly durable?: DurableFs;
  /** Called once per DEK with the unwrap time (the unwrap-seconds metric). */
  readonly onUnwrap?: (seconds: number, keyId: number) => void;
  /** Receives the local_epoch warnings (SPEC §4.3: above 0xFF00). */
  readonly warn?: (message: string) => void;
}

export interface KeysAtStart {
  /** Undefined when encryption is not enabled. */
  readonly sidecar?: Sidecar;
  readonly kek?: KekProvider;
  /** This lifetime's local_epoch per key_id (empty before bootstrap). */
  readonly epochs: ReadonlyMap<number, number>;
  readonly warnings: readonly string[];
  /** Unwrap time per key_id, seconds. */
  readonly unwrapSeconds: ReadonlyMap<number, number>;
}

export async function openKeysAtStart(options: KeysAtStartOptions): Promise<KeysAtStart> {
  const present = await Sidecar.exists(options.dataDir);
  if (!options.encryptionEnabled) {
    if (present) {
      throw sealError('ErrSidecarPresentWithoutFlag', `${path.join(options.dataDir, SIDECAR_DIR)} holds encryption keys but --encryption-enabled is not set; start with --encryption-enabled and the KEK (encryption cannot be turned off)`);
    }
    return { epochs: new Map(), warnings: [], unwrapSeconds: new Map() };
  }
  if (!kekConfigured(options.kek)) {
    throw sealError('ErrKEKRequired', '--encryption-enabled needs a KEK: pass --kek-uri aws-kms://..., file://... or env://..., or --kek-file');
  }
  if (options.keystore.keyIds().length !== 0) throw new RangeError('the keystore must be empty at start');
  const durable = options.durable ?? nodeDurableFs;
  const dir = path.join(options.dataDir, SIDECAR_DIR);
  await probeDurableDir(dir, durable);

  const kek = openKekProvider({ ...options.kek, dataDir: options.dataDir });
  try {
    if (!present) {
      // Stale tmp from a crash before the first sidecar write: never a sidecar.
      await fs.rm(sidecarPath(options.dataDir) + TMP_SUFFIX, { force: true });
      return { sidecar: Sidecar.empty(options.dataDir, durable), kek, epochs: new Map(), warnings: [], unwrapSeconds: new Map() };
    }
    const sidecar = await Sidecar.load(options.dataDir, durable);
    // Before any KMS call: an exhausted epoch refuses whatever the KEK says.
    checkEpochsLeft(sidecar.state);
    const deks = new Map<number, Uint8Array>();
    const unwrapSeconds = new Map<number, number>();
    let bump: EpochBump;
    try {
      for (const key of sidecar.state.keys.values()) {
        let unwrapped;
        try {
          unwrapped = await timedUnwrap(kek, key.wrapped, { keyId: key.keyId, purpose: key.purpose });
        } catch (err) {
          if (!isSealError(err, 'ErrKEKMismatch')) throw err;
          throw sealError('ErrKEKMismatch', `${err.message.replace(/^ErrKEKMismatch: /, '')}; keys.json records DEK ${key.keyId} as wrapped under ${key.kek}: start with that KEK (--kek-uri/--kek-file)`, err);
        }
        const { dek, seconds } = unwrapped;
        deks.set(key.keyId, dek);
        unwrapSeconds.set(key.keyId, seconds);
        options.onUnwrap?.(seconds, key.keyId);
      }
      bump = await sidecar.bumpLocalEpochs();
      for (const key of sidecar.state.keys.values()) options.keystore.install(key.keyId, key.purpose, deks.get(key.keyId)!);
      for (const [purpose, keyId] of Object.entries(sidecar.state.active)) options.keystore.setActive(purpose as 'storage' | 'raft', keyId);
    } finally {
      for (const dek of deks.values()) dek.fill(0);
    }
    for (const warning of bump.warnings) options.warn?.(warning);
    return { sidecar, kek, epochs: bump.epochs, warnings: bump.warnings, unwrapSeconds };
  } catch (err) {
    kek.close();
    throw err;
  }
}
