// What the Raft driver needs from the application: a state machine, an
// optional apply hook, and the node's configuration.

import type { SealError } from '../../errors/index.js';
import type { ConfState, NodeId } from '../core/types.js';

/** A committed normal entry, as the state machine sees it. */
export interface ApplyEntry {
  index: number;
  term: number;
  /** The proposal's payload (after the apply hook). Owned by the state machine. */
  payload: Uint8Array;
  /** The proposal id of the entry's framing (SPEC §6); the state machine dedupes on it. */
  proposalId: bigint;
}

/**
 * The replicated state machine. The driver calls it from one async loop, never
 * concurrently with itself.
 */
export interface StateMachine {
  /**
   * Index of the last entry whose effects this state machine holds. It must
   * be persisted atomically with those effects (SPEC §6: the store records it
   * in the same batch), because on restart the driver replays the log and
   * skips entries at or below it.
   */
  appliedIndex(): number;
  /**
   * Applies entries in log order and records the last one's index as
   * applied; returns one result per entry (handed to the proposer). A throw
   * halts the node (SPEC §6: nothing is silently skipped). Apply must be
   * idempotent under replay of entries above appliedIndex().
   */
  apply(entries: ApplyEntry[]): Promise<unknown[]> | unknown[];
  /**
   * A consistent snapshot of the whole state (at appliedIndex() or later),
   * streamed; sent to followers that fell behind the compacted log.
   */
  snapshot(): AsyncIterable<Uint8Array>;
  /** Replaces the whole state with a snapshot stream (including its applied index). */
  restore(data: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Index up to which the state survives a power loss. The log is never
   * compacted past it. Defaults to appliedIndex().
   */
  durableIndex?(): number;
  /**
   * Makes the state applied so far survive a power loss. When present, the
   * driver calls it before each log compaction and compacts no further than
   * the applied index seen before the call.
   */
  persist?(): Promise<void>;
}

/**
 * Called for each committed normal entry before it is applied (SPEC §6: the
 * encryption issue inserts the index-gated unwrap here). Returns the payload
 * to apply. Entries committed together are applied in batches: when the
 * hook throws while earlier entries of the batch wait, they are applied
 * first and the hook runs once more (an earlier entry may bring the DEK this
 * one is sealed under). A throw then halts the apply loop: the entry and
 * everything after it stay unapplied, the applied index does not move, the
 * node stops, and a restart replays the same entry.
 */
export type ApplyHook = (entry: { index: number; term: number }, payload: Uint8Array) => Uint8Array | Promise<Uint8Array>;

/** An entry as onLogEntries reports it: a normal entry's decoded payload, or null for a conf change. */
export interface LogEntryInfo {
  index: number;
  payload: Uint8Array | null;
}

export interface RaftNodeOptions {
  id: NodeId;
  /** Data directory: the log goes to <dir>/log, incoming snapshots to <dir>/snap, peer addresses to <dir>/peers.json. */
  dir: string;
  /** Shared cluster secret (at least 16 bytes). */
  secret: Uint8Array;
  host?: string;
  /** 0 picks a free port (see RaftNode.port). */
  port?: number;
  /** Addresses ("host:port") of known peers; merged with the ones learned from membership changes. */
  peers?: Record<number, string>;
  /** Membership of a founding member; used only when the log is new. A node that joins later starts empty. */
  bootstrap?: ConfState;
  stateMachine: StateMachine;
  applyHook?: ApplyHook;
  /**
   * Called once at start with the recovered log's bounds, before anything
   * else runs (no apply, no peer traffic); a throw aborts the start (the
   * encryption part refuses a sidecar ahead of the log, SPEC §10).
   */
  checkLog?: (log: { firstIndex: number; lastIndex: number }) => void | Promise<void>;
  /**
   * Turns a payload into what goes in the log (the raft envelope after the
   * cutover). Called synchronously in propose() on the proposing node, before
   * framing; a throw rejects that propose with the error. Conf changes are
   * never wrapped.
   */
  wrapProposal?: (payload: Uint8Array) => Uint8Array;
  /**
   * On the leader, for every normal proposal about to enter its log — its own
   * (from propose()) and ones forwarded by followers (MsgProp) — with the
   * payload after decodeProposal. undefined admits; a SealError refuses: an
   * own propose rejects with it, a forwarded entry is dropped and the
   * follower is sent a notice (RPC `raft.ProposalsRefused`, best effort) so
   * its propose rejects with the same code; if the notice is lost the
   * attempt times out. Evaluated
   * synchronously right before the entry is stepped into the core, so the
   * decision and the append are atomic. A forwarded normal entry that is not
   * a framed proposal is dropped without asking. Conf changes are not asked.
   */
  admitProposal?: (payload: Uint8Array) => SealError | undefined;
  /**
   * Entries as they enter this node's log, in index order (the leader's own
   * appends and a follower's received entries: each Ready's entries, right
   * after they are persisted and before any message that depends on them is
   * sent): normal entries with their decoded payload (an empty Uint8Array
   * for empty entries), conf changes with payload null. An entry at index i
   * replaces anything seen before at index >= i. At start, called once
   * (possibly with no entries) with every entry in the log above the state
   * machine's applied index (committed or not), before the node takes part
   * in elections. A snapshot install is not reported (the restored state
   * stands for the entries it covers). A throw halts the node.
   */
  onLogEntries?: (entries: LogEntryInfo[]) => void;
  /** Called once if the node halts on an apply error (the node is stopped by then). */
  onHalt?: (err: Error) => void;
  tickMs?: number;
  electionTick?: number;
  heartbeatTick?: number;
  /** Default time a proposal or read waits for its outcome. */
  proposalTimeoutMs?: number;
  /** Compact once this many entries were applied since the last snapshot (default 10,000)… */
  snapshotEntries?: number;
  /** …keeping this many applied entries for slow followers (default 1,000). */
  compactionRetain?: number;
  segmentBytes?: number;
  cacheBytes?: number;
  queueMessages?: number;
  queueBytes?: number;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  /** Seed of the election-timeout generator (default: random). */
  seed?: number;
  /** RPC methods served from the moment the transport listens (more can be added with serveRpc); `raft.ProposalsRefused` is the driver's own. */
  rpcHandlers?: Record<string, (body: unknown, from: NodeId) => Promise<unknown>>;
}
