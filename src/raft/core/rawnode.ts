// The interface a driver uses (after etcd's RawNode): feed ticks, messages
// and proposals in, collect a Ready, do its I/O, then advance().

import { sealError } from '../../errors/index.js';
import { encodeConfChange } from './confchange.js';
import { Raft, makeMessage, type RaftConfig } from './raft.js';
import {
  NONE,
  type ConfChange,
  type ConfState,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type Ready,
  type SoftState,
  type StateRole,
} from './types.js';
import type { ProgressState } from './progress.js';

const LOCAL_MESSAGES: ReadonlySet<MessageType> = new Set<MessageType>([
  'MsgHup',
  'MsgBeat',
  'MsgUnreachable',
  'MsgSnapStatus',
  'MsgCheckQuorum',
]);

export interface Status {
  id: NodeId;
  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  lead: NodeId;
  role: StateRole;
  leadTransferee: NodeId;
  /** Leader only: each peer's replication progress. */
  progress: Map<NodeId, { match: number; next: number; state: ProgressState; isLearner: boolean }>;
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export class RawNode {
  /** The protocol state machine; exposed for tests and the simulator's checks, not for drivers. */
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.raft.step(makeMessage({ type: 'MsgHup', from: this.raft.id }));
  }

  /**
   * Proposes `data` (normally `encodeProposal(id, payload)`). Throws
   * ErrProposalDropped when no leader is known, leadership is being
   * transferred, or this node was removed; a proposal accepted here can still
   * be lost (forwarding is best effort), so callers time out and retry with
   * the same proposal id.
   */
  propose(data: Uint8Array): void {
    const m = makeMessage({
      type: 'MsgProp',
      from: this.raft.id,
      entries: [{ term: 0, index: 0, type: 'normal', data }],
    });
    if (!this.raft.step(m)) throw sealError('ErrProposalDropped', `node ${this.raft.id}: proposal dropped`);
  }

  /**
   * Proposes a membership change. Dropped (ErrProposalDropped) while an
   * earlier change is not applied, or when it makes no sense (adding a
   * member twice, demoting a voter, removing the last voter).
   */
  proposeConfChange(cc: ConfChange): void {
    const m = makeMessage({
      type: 'MsgProp',
      from: this.raft.id,
      entries: [{ term: 0, index: 0, type: 'confChange', data: encodeConfChange(cc) }],
    });
    if (!this.raft.step(m)) throw sealError('ErrProposalDropped', `node ${this.raft.id}: conf change dropped`);
  }

  /** Applies a committed conf change entry; call while applying it, in log order. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** Steps a message received from a peer. Messages of local types are ignored (false). */
  step(m: Message): boolean {
    if (LOCAL_MESSAGES.has(m.type)) return false;
    // Responses from nodes no longer in the configuration are meaningless.
    if (!this.raft.tracker.progress.has(m.from) && m.type.endsWith('Resp')) return false;
    this.raft.step(m);
    return true;
  }

  /**
   * Requests a linearizable read. `ctx` must be unique per request (a retry
   * uses a new one): the answer is a ReadState carrying it, once this node
   * knows the read index. Throws ErrProposalDropped when no leader is known.
   */
  readIndex(ctx: Uint8Array): void {
    if (ctx.length === 0) throw new RangeError('readIndex: empty context');
    const m = makeMessage({ type: 'MsgReadIndex', context: ctx });
    if (!this.raft.step(m)) throw sealError('ErrProposalDropped', `node ${this.raft.id}: read index dropped`);
  }

  /** Asks the leader to hand leadership to `to` (a voter); best effort. */
  transferLeader(to: NodeId): void {
    this.raft.step(makeMessage({ type: 'MsgTransferLeader', from: to }));
  }

  /** The transport could not reach `id`: replication to it falls back to probing. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(makeMessage({ type: 'MsgUnreachable', from: id }));
  }

  /** A snapshot stream to `id` finished (`ok`) or failed. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(makeMessage({ type: 'MsgSnapStatus', from: id, reject: !ok }));
  }

  hasReady(): boolean {
    const r = this.raft;
    const ss = r.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) return true;
    if (!hardStateEqual(r.hardState(), this.prevHardState)) return true;
    if (r.log.unstable.snapshot !== undefined) return true;
    if (r.msgs.length > 0 || r.log.unstableEntries().length > 0 || r.readStates.length > 0) return true;
    return r.log.hasNextEnts();
  }

  /** Collects what the driver must do now. Call advance(ready) after doing it. */
  ready(): Ready {
    const r = this.raft;
    const entries = r.log.unstableEntries();
    const rd: Ready = {
      entries,
      committedEntries: r.log.nextEnts(),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: false,
    };
    const ss = r.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) {
      rd.softState = ss;
      this.prevSoftState = ss;
    }
    const hs = r.hardState();
    // Term and vote must be durable before any message that depends on
    // them; a commit index alone can be recovered from peers.
    rd.mustSync = entries.length > 0 || hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote;
    if (!hardStateEqual(hs, this.prevHardState)) {
      rd.hardState = hs;
      this.prevHardState = hs;
    }
    if (r.log.unstable.snapshot !== undefined) rd.snapshot = r.log.unstable.snapshot;
    if (rd.snapshot !== undefined) rd.mustSync = true;
    r.msgs = [];
    r.readStates = [];
    return rd;
  }

  /** Reports that `rd` was persisted, sent and applied. */
  advance(rd: Ready): void {
    const log = this.raft.log;
    const n = rd.committedEntries.length;
    if (n > 0) {
      log.appliedTo(rd.committedEntries[n - 1]!.index);
      this.raft.reduceUncommittedSize(rd.committedEntries);
    }
    else if (rd.snapshot !== undefined) log.appliedTo(rd.snapshot.index);
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      log.stableTo(last.index, last.term);
    }
    if (rd.snapshot !== undefined) log.stableSnapTo(rd.snapshot.index);
    this.raft.onPersisted();
  }

  /** The node's state; `withProgress` false skips copying each peer's progress (cheap enough to poll). */
  status(withProgress = true): Status {
    const r = this.raft;
    const progress: Status['progress'] = new Map();
    if (withProgress && r.state === 'leader') {
      for (const [id, pr] of r.tracker.progress) {
        progress.set(id, { match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner });
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lead: r.lead,
      role: r.state,
      leadTransferee: r.leadTransferee,
      progress,
    };
  }

  confState(): ConfState {
    return this.raft.tracker.confState();
  }

  /** True when this node currently believes it leads. */
  isLeader(): boolean {
    return this.raft.state === 'leader' && this.raft.lead === this.raft.id && this.raft.id !== NONE;
  }
}
