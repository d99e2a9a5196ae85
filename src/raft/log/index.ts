// The Raft part's durable log: segment files holding entries, hard state and
// snapshot metadata, serving the core's Storage interface.

export { SegmentLog, type SegmentLogOptions } from './segment-log.js';
