// The data the Raft core consumes and produces: log entries, messages,
// persistent and volatile state, membership and the Ready batch.
//
// Everything here is plain data (numbers, strings, Uint8Array, arrays) so the
// driver can frame it with msgpackr unchanged. Indexes and terms are JS
// numbers: 2^53 entries outlive any deployment.

/** A node id. 0 (`NONE`) means "no node" (no leader, no vote). */
export type NodeId = number;
export const NONE: NodeId = 0;

export type EntryType = 'normal' | 'confChange';

/**
 * One log entry. Normal entries carry `encodeProposal(id, payload)` (SPEC §6)
 * or are empty (the no-op a new leader appends); confChange entries carry
 * `encodeConfChange(cc)`. The core keeps a reference to `data` and never
 * mutates it; whoever hands it in (proposer, transport, storage) must not
 * mutate it afterwards either.
 */
export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** Membership: voters count for elections and commit; learners only replicate. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

/**
 * Snapshot metadata. The core only tracks where a snapshot ends and the
 * membership at that point; the state-machine bytes are streamed by the
 * driver, never held by the core.
 */
export interface SnapshotMeta {
  index: number;
  term: number;
  confState: ConfState;
}

/** State that must be on stable storage before the messages of the same Ready are sent. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

export type StateRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state, reported for information (leader hints, metrics). */
export interface SoftState {
  lead: NodeId;
  role: StateRole;
}

/**
 * Message types, as in etcd's raftpb. Local messages (never sent on the
 * wire) are MsgHup, MsgBeat, MsgProp (when stepped locally), MsgCheckQuorum,
 * MsgUnreachable and MsgSnapStatus.
 */
export type MessageType =
  | 'MsgHup'
  | 'MsgBeat'
  | 'MsgProp'
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgUnreachable'
  | 'MsgSnapStatus'
  | 'MsgCheckQuorum'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp';

export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: number;
  /** MsgApp: term of the entry at `index`; MsgVote: candidate's last term; MsgAppResp reject: hint term. */
  logTerm: number;
  /** MsgApp: index preceding `entries`; MsgAppResp: last matched (or rejected) index; MsgReadIndexResp: read index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  /** MsgSnap only. */
  snapshot?: SnapshotMeta;
  /** ReadIndex request context (heartbeats echo it) or the campaign-transfer marker on votes. */
  context?: Uint8Array;
}

/** A confirmed ReadIndex: once `applied >= index`, the read identified by `requestCtx` may be served. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

/**
 * Membership change, applied ONE AT A TIME (no joint consensus): a leader
 * refuses a new change while an earlier one is not yet applied, so any two
 * consecutive configurations differ by one node and every majority of the
 * old one overlaps every majority of the new one. Promotion is `addNode` on
 * an existing learner.
 */
export type ConfChangeType = 'addNode' | 'addLearnerNode' | 'removeNode';

export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to the core (the driver may put a proposal id here). */
  context?: Uint8Array;
}

/**
 * What the driver must do, in this order: persist `snapshot` (metadata plus
 * the streamed data), `entries` and `hardState` (fsync when `mustSync`);
 * send `messages`; apply `committedEntries` (calling `applyConfChange` for
 * confChange entries); serve `readStates` once applied reaches their index;
 * then call `advance(ready)`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  /** Entries to append to stable storage (may overwrite a conflicting suffix). */
  entries: Entry[];
  snapshot?: SnapshotMeta;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  mustSync: boolean;
}
