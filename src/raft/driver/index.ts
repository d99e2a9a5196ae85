// The Raft part's driver: a running node (durable log, transport, apply loop).

export { RaftNode } from './node.js';
export type { ApplyEntry, ApplyHook, LogEntryInfo, RaftNodeOptions, StateMachine } from './types.js';
