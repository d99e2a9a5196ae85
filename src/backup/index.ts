// The backup part's public door (SPEC §1, §12; README.md of this folder):
// `backup create` of a running node (through its apply point) or a stopped
// data dir, `backup verify` with the KEK, and `backup restore` into an empty
// data dir as a new single-node cluster under fresh DEKs.

export { BACKUP_FORMAT, BACKUP_VERSION, META_FILE, SIDECAR_FILE, STORE_FILE, metaText, readMeta, type BackupKey, type BackupMeta, type FileSum } from './format.js';
export { capturePoint, createBackup, createOfflineBackup, type BackupPoint, type BackupSource, type BackupSummary } from './create.js';
export { firstFailure, verifyBackup, type VerifyFailure, type VerifyOptions, type VerifyReport } from './verify.js';
export { restoreBackup, type RestoreOptions, type RestoreReport } from './restore.js';
