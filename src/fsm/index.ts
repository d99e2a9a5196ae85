// The fsm part's public door: the hybrid logical clock, payload codecs and
// dispatch table, and the replicated state machine over the store.

export {
  CEILING_LEAD_MS,
  CEILING_RENEW_MARGIN_MS,
  HLC_LOGICAL_BITS,
  HLC_MAX_PHYSICAL_MS,
  HybridClock,
  checkTimestamp,
  commitTimestamp,
  hlcLogical,
  hlcPhysicalMs,
  packHlc,
  type HybridClockOptions,
} from './hlc.js';
export {
  EXTENSION_TAGS,
  PAYLOAD_WIRE_VERSION,
  PayloadHandlers,
  TAG_BATCH,
  TAG_BOOTSTRAP_ENCRYPTION,
  TAG_HLC_CEILING,
  TAG_KEY_CHANGE,
  TAG_REQUEST,
  TAG_WRITER_REGISTRATION,
  decodeCorePayload,
  encodeBatchPayload,
  encodeCeilingPayload,
  encodeRequestPayload,
  isEncryptionRelevant,
  packValue,
  payloadTag,
  unpackValue,
  type CorePayload,
  type PayloadHandler,
} from './payload.js';
export type { FsmStore, FsmStoreOp, KvReader, KvWrite, RequestExecutor, VisibleValue } from './ports.js';
export {
  CLOCK_ROW_KEY,
  DEDUPE_ROW_PREFIX,
  DEDUPE_WINDOW_MS,
  StateMachine,
  type ApplyTx,
  type EntryOutcome,
  type EntryResult,
  type EntryToApply,
  type StateMachineOptions,
} from './state-machine.js';
export { LeaderClock, type ProposeApplied } from './leader-clock.js';
export { LATEST_TS, fsmStoreOver } from './store-adapter.js';
