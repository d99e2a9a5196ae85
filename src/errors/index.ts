// Typed errors with the stable codes of SPEC.
//
// Every failure the project reports to a caller, an operator or a peer is a
// SealError whose `code` is one of the names below. Tests assert on `code`,
// never on message text. Programmer mistakes (wrong argument types, out of
// range integers) stay TypeError/RangeError.
//
// Messages never carry key bytes: they name key_ids, paths and indexes only.

/** Every stable error code of SPEC, with whether a retry can succeed. */
export const ERROR_CODES = {
  // Envelopes and reads (SPEC §3)
  ErrEnvelopeShort: { retryable: false },
  ErrEnvelopeVersion: { retryable: false },
  ErrEnvelopeFlag: { retryable: false },
  ErrEncryptedReadIntegrity: { retryable: false },
  ErrUnknownKeyId: { retryable: false },
  ErrWriteCeilingReached: { retryable: false },
  ErrReservedEncryptionState: { retryable: false },
  ErrReservedKey: { retryable: false },
  ErrCryptoBackend: { retryable: false },
  ErrWorkerFailed: { retryable: true },
  ErrCryptoPoolClosed: { retryable: false },
  // KEK and sidecar (SPEC §4, §9)
  ErrKEKRequired: { retryable: false },
  ErrKEKMismatch: { retryable: false },
  ErrKEKUnavailable: { retryable: true },
  ErrKEKUri: { retryable: false },
  ErrKEKFile: { retryable: false },
  ErrSidecarPresentWithoutFlag: { retryable: false },
  ErrSidecarBehindRaftLog: { retryable: false },
  ErrSidecarCorrupt: { retryable: false },
  ErrUnsupportedFilesystem: { retryable: false },
  /** The data dir's device is full (ENOSPC, EDQUOT): nothing is wrong with the filesystem; free space and retry. */
  ErrNoSpace: { retryable: true },
  ErrLocalEpochExhausted: { retryable: false },
  ErrLocalEpochRollback: { retryable: false },
  ErrLocalEpochOutOfRange: { retryable: false },
  ErrNodeIDCollision: { retryable: false },
  ErrLogCompactedPastSidecar: { retryable: false },
  // Store and snapshots (SPEC §5)
  ErrSnapshotHeaderVersion: { retryable: false },
  ErrSnapshotCorrupt: { retryable: false },
  ErrEnvelopeCutoverDivergence: { retryable: false },
  ErrWriterNotRegistered: { retryable: true },
  ErrStoreClosed: { retryable: false },
  ErrStoreCorrupt: { retryable: false },
  // Raft and apply (SPEC §6, §7)
  ErrRaftUnwrapFailed: { retryable: false },
  ErrEncryptionApply: { retryable: false },
  ErrApplyPayload: { retryable: false },
  ErrNotLeader: { retryable: true },
  ErrProposalDropped: { retryable: true },
  ErrRaftLogCorrupt: { retryable: false },
  ErrRaftStopped: { retryable: false },
  ErrTimeout: { retryable: true },
  // Rollout and membership (SPEC §8)
  ErrCapabilityCheckFailed: { retryable: true },
  ErrEncryptionNotBootstrapped: { retryable: false },
  ErrEnvelopeCutoverInProgress: { retryable: true },
  ErrPeerNotEncryptionCapable: { retryable: false },
  ErrPeerNotEncryptionRegistered: { retryable: false },
  ErrEncryptionDisableUnsupported: { retryable: false },
  // Rewrite sweeps (SPEC §11)
  ErrRewriteNotSealing: { retryable: false },
  ErrRewriteTargetActive: { retryable: false },
  // Retirement and backups (SPEC §4.2, §12)
  ErrRaftDEKWALStillReferences: { retryable: false },
  ErrDEKStillReferenced: { retryable: false },
  ErrBackupMissingSidecar: { retryable: false },
  ErrBackupCorrupt: { retryable: false },
  ErrDataDirNotEmpty: { retryable: false },
  ErrDataDirLocked: { retryable: false },
  // Requests (SPEC §12)
  ErrRequestTooLarge: { retryable: false },
  ErrBadRequest: { retryable: false },
  ErrAdminRequest: { retryable: false },
} as const satisfies Record<string, { retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Base class of every typed sealkv error. */
export class SealError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'SealError';
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
  }
}

/** True when `err` is a SealError, optionally of the given code. */
export function isSealError(err: unknown, code?: ErrorCode): err is SealError {
  return err instanceof SealError && (code === undefined || err.code === code);
}

/** Shorthand used at throw sites: `throw sealError('ErrEnvelopeShort', ...)`. */
export function sealError(code: ErrorCode, message: string, cause?: unknown): SealError {
  return new SealError(code, message, cause === undefined ? undefined : { cause });
}
