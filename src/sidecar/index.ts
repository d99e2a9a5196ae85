// The sidecar part's public door (SPEC §4.3, §9, §10): keys.json schema and
// validation, crash-durable writes and the filesystem probe, the Sidecar
// object (apply by Raft index, per-start local_epoch bump), and the start-up
// sequence that fills the keystore.

export {
  EMPTY_SIDECAR_STATE,
  MAX_SIDECAR_BYTES,
  SIDECAR_VERSION,
  checkConsistency,
  parseSidecar,
  serializeSidecar,
  sidecarTextProblem,
  type SidecarKey,
  type SidecarState,
} from './schema.js';
export { PROBE_NAME, TMP_SUFFIX, ensureDirDurably, fsyncDirectory, nodeDurableFs, probeDurableDir, writeFileDurably, type DurableFs } from '../durable/index.js';
export { LOCAL_EPOCH_WARN, applySidecarChanges, checkEpochsLeft, SIDECAR_DIR, SIDECAR_FILE, Sidecar, sidecarPath, type EpochBump, type SidecarChange } from './sidecar.js';
export { openKeysAtStart, type KeysAtStart, type KeysAtStartOptions } from './startup.js';
