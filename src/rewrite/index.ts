// The rewrite part's public door (SPEC §11): the MVCC-aware sweep that
// re-seals stored versions under the active storage DEK, its local cursor
// and done rows, and the offline run on a stopped node's data dir.

export { checkSweepable, countVersions, runSweep, type SweepOptions, type SweepProgress } from './sweep.js';
export { cursorKey, describeTarget, doneKey, listSweepStates, readSweepState, type SweepDone, type SweepState, type SweepTarget } from './state.js';
export { systemClock, type SweepClock } from './throttle.js';
export { OFFLINE_STORE_OPTIONS, rewriteOffline, type OfflineRewriteOptions, type OfflineRewriteResult } from './offline.js';
