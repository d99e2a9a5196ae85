// The Raft part's driver: a running node (durable log, transport, apply loop).

export { RaftNode } from './node.js';
export type { ApplyEntry, ApplyHook, RaftNodeOptions, StateMachine } from './types.js';
