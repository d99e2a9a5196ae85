// The encryption part's public door (SPEC §3.3, §6, §7, §8): payload codecs
// of tags 0x03..0x05, the replicated rows, the node-local runtime (apply
// handlers, raft envelope hooks, proposal admission), the leader's rollout
// controller, the capability poll, and retire-dek's criteria.

export {
  SUB_ENABLE_RAFT_ENVELOPE,
  SUB_ENABLE_STORAGE_ENVELOPE,
  SUB_RETIRE_DEK,
  SUB_REWRAP_DEKS,
  SUB_ROTATE_DEK,
  decodeEncryptionPayload,
  encodeEncryptionPayload,
  isCutoverPayload,
  isEncryptionTag,
  type EncryptionPayload,
  type KeyRecord,
  type WriterIdentity,
  type WriterRegistration,
} from './payload.js';
export {
  INITIAL_ROLLOUT,
  KEY_ROW_PREFIX,
  ROLLOUT_ROW_KEY,
  SUPERSEDED_ROW_PREFIX,
  WRITER_ROW_PREFIX,
  decodeKeyRow,
  decodeRollout,
  decodeWriterRow,
  keyIdOfKeyRow,
  supersededRowKey,
  type Rollout,
  type Superseded,
  type WriterRow,
} from './rows.js';
export { encodeKeyRow, encodeRollout, encodeWriterRow, keyRowKey, writerRegistryKey, writerRowPrefix } from './rows.js';
export { BUILD, EncryptionRuntime, isInternalPayload, isRaftEnvelope, newKeyId, type ApplyAnswer, type RuntimeOptions } from './runtime.js';
export {
  ADMIN_METHOD,
  ENCRYPTION_OPS,
  RolloutController,
  SIDECAR_STATE_METHOD,
  type ControllerOptions,
  type EncryptionOp,
  type EncryptionOpParams,
  type MemberAnswer,
  type RolloutRaft,
} from './controller.js';
export { RETIRE_FACTS_METHOD, memberReasons, parseRetireFacts, retireRefusal, type MemberFacts, type RetireFacts } from './retire.js';
export { CAPABILITY_METHOD, decodeCapability, pollCapabilities, type Capability, type CapabilityFailure, type CapabilityMember } from './capability.js';
export {
  parseLeaderSidecarState,
  raiseEpochs,
  recoveredEpoch,
  sidecarChangesFor,
  sidecarDiff,
  stateFromLeader,
  type KeyChangePayload,
  type LeaderSidecarState,
  type ReplayContext,
  type SidecarDiff,
} from './resync.js';
