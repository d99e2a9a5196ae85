// The Raft part's public door. The core (src/raft/core) is a pure state
// machine; drivers, storage and transport build on what is exported here.

export { RawNode, type Status } from './core/rawnode.js';
export { makeMessage, type RaftConfig, type RandInt } from './core/raft.js';
export { BOOTSTRAP_INDEX, MemoryStorage, type Storage } from './core/storage.js';
export { encodeProposal, decodeProposal, PROPOSAL_HEADER_BYTES } from './core/proposal.js';
export { encodeConfChange, decodeConfChange } from './core/confchange.js';
export { seededRandom, seededRandInt } from './core/rand.js';
export { describeEntry, describeMessage, type DescribeOptions } from './core/describe.js';
export type { ProgressState } from './core/progress.js';
export {
  type ConfChange,
  type ConfChangeType,
  type ConfState,
  type Entry,
  type EntryType,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type ReadState,
  type Ready,
  type SnapshotMeta,
  type SoftState,
  type StateRole,
} from './core/types.js';
// Driver side: durable log, peer transport, running node.
export { SegmentLog, type SegmentLogOptions } from './log/index.js';
export { Transport, type TransportHandler, type TransportOptions } from './transport/index.js';
export { RaftNode, type ApplyEntry, type ApplyHook, type LogEntryInfo, type RaftNodeOptions, type StateMachine } from './driver/index.js';
