// The kv part's door: the request model and the deterministic apply that the
// replicated state machine and the read path run.

export {
  isWriteRequest,
  type Expiry,
  type KvOp,
  type KvRangeReader,
  type KvReader,
  type KvReply,
  type KvRequest,
  type KvWrite,
  type VisibleValue,
} from './types.js';
export { applyRequests, MAX_EXPIRE_AT_MS, MAX_SCAN_COUNT, RESERVED_KEY_PREFIX, type ApplyOutcome } from './apply.js';
export { INT64_MAX, INT64_MIN, NOT_AN_INTEGER, parseInt64 } from './int64.js';
export { CURSOR_START, decodeCursor, encodeCursor } from './cursor.js';
export { globMatcher } from './match.js';
export { validateRequest } from './validate.js';
export { kvExecutor } from './executor.js';
