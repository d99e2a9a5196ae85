// The Raft protocol as a pure state machine (after etcd's raft): messages and
// ticks in, messages and log changes out through `msgs` and the RawNode's
// Ready. No I/O, no clock, no ambient randomness.
//
// Roles are step/tick functions swapped only in become*(); an impossible
// transition throws. Membership changes are applied one at a time (see
// ConfChangeType): the leader refuses a change while an earlier one is
// unapplied, so consecutive configurations always share a majority.

import { RaftLog } from './log.js';
import { Progress, ProgressTracker } from './progress.js';
import { ReadOnly } from './readonly.js';
import type { Storage } from './storage.js';
import {
  NONE,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type ReadState,
  type SnapshotMeta,
  type SoftState,
  type StateRole,
} from './types.js';
import { decodeConfChange } from './confchange.js';

/** Integer in [0, n) from a seeded generator owned by the caller. */
export type RandInt = (n: number) => number;

export interface RaftConfig {
  id: NodeId;
  storage: Storage;
  /** Ticks without hearing from a leader before campaigning (randomised in [t, 2t)). */
  electionTick: number;
  /** Ticks between leader heartbeats; must be < electionTick. */
  heartbeatTick: number;
  /**
   * Index the state machine has durably applied (entries after it come back
   * as committed). Defaults to the snapshot's index. It may be ahead of the
   * hard state's commit index (which is not always fsynced): applied entries
   * were committed. It may not be behind the snapshot: restore the state
   * machine from the snapshot first.
   */
  applied?: number;
  /** Byte limit of entries in one MsgApp (at least one entry is always sent). */
  maxSizePerMsg?: number;
  /** Appends in flight per follower in replicate state. */
  maxInflightMsgs?: number;
  /** Byte limit of committed entries per Ready. */
  maxCommittedSizePerReady?: number;
  /** Leader steps down when a quorum was not heard from within an election timeout; followers in lease ignore votes. */
  checkQuorum?: boolean;
  /** Campaign with a pre-vote round first, so a partitioned node cannot inflate terms. */
  preVote?: boolean;
  /**
   * Payload bytes a leader accepts in proposed-but-uncommitted entries before
   * dropping new proposals (ErrProposalDropped); bounds memory while a
   * quorum is unreachable. Unlimited by default.
   */
  maxUncommittedEntriesSize?: number;
  rand: RandInt;
}

const CAMPAIGN_TRANSFER = new TextEncoder().encode('CampaignTransfer');

type CampaignType = 'preElection' | 'election' | 'transfer';

/** Message with every field defaulted. */
export function makeMessage(m: Partial<Message> & { type: MessageType }): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...m,
  };
}

function voteRespType(t: MessageType): MessageType {
  if (t === 'MsgVote') return 'MsgVoteResp';
  if (t === 'MsgPreVote') return 'MsgPreVoteResp';
  throw new Error(`not a vote message: ${t}`);
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Raft {
  readonly id: NodeId;
  // Invariant: term never decreases; vote is reset whenever term changes.
  term = 0;
  vote: NodeId = NONE;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  state: StateRole = 'follower';
  lead: NodeId = NONE;
  /** Outgoing messages, drained by the RawNode into each Ready. */
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** Node the leadership is being handed to (leader only), NONE otherwise. */
  leadTransferee: NodeId = NONE;
  /** Index of the last conf change appended by this leader; a new one waits until applied >= it. */
  pendingConfIndex = 0;
  private readOnly = new ReadOnly();
  /** ReadIndex requests received before this leader committed an entry of its term. */
  private pendingReadIndexMessages: Message[] = [];

  // Invariant (leader): electionElapsed counts ticks since the last check-quorum round.
  electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly checkQuorum: boolean;
  private readonly preVote: boolean;
  private readonly maxMsgSize: number;
  private readonly maxUncommittedSize: number;
  // Invariant (leader): payload bytes of entries appended in this term and not yet applied here.
  private uncommittedSize = 0;
  private readonly rand: RandInt;

  private tickFn: () => void = () => this.tickElection();
  private stepFn: (m: Message) => boolean = (m) => this.stepFollower(m);

  constructor(c: RaftConfig) {
    if (!Number.isSafeInteger(c.id) || c.id <= 0) throw new RangeError('raft: id must be a positive integer');
    if (c.heartbeatTick <= 0) throw new RangeError('raft: heartbeatTick must be > 0');
    if (c.electionTick <= c.heartbeatTick) throw new RangeError('raft: electionTick must be > heartbeatTick');
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum ?? true;
    this.preVote = c.preVote ?? true;
    this.maxMsgSize = c.maxSizePerMsg ?? 1024 * 1024;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize ?? Number.MAX_SAFE_INTEGER;
    this.rand = c.rand;
    this.log = new RaftLog(c.storage, c.maxCommittedSizePerReady ?? Number.MAX_SAFE_INTEGER);
    this.tracker = new ProgressTracker(c.maxInflightMsgs ?? 256);

    const { hardState, confState } = c.storage.initialState();
    this.loadConfState(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadHardState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.restoreApplied(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.state };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** A voter in the current configuration (learners and removed nodes never campaign). */
  promotable(): boolean {
    return this.tracker.voters.has(this.id);
  }

  private loadHardState(hs: HardState): void {
    if (hs.commit > this.log.lastIndex()) {
      throw new Error(`raft ${this.id}: hard state commit ${hs.commit} past the last index ${this.log.lastIndex()}`);
    }
    // An unsynced commit index may trail the snapshot (which is committed by definition).
    this.log.committed = Math.max(hs.commit, this.log.committed);
    this.term = hs.term;
    this.vote = hs.vote;
  }

  /**
   * Starts from a state machine that applied up to `applied`: the commit
   * index is at least that far, and the membership is the snapshot's plus
   * every conf change in (snapshot, applied], which the driver applied
   * before it stopped.
   */
  private restoreApplied(applied: number): void {
    const snapIndex = this.log.firstIndex() - 1;
    if (applied < snapIndex) {
      throw new Error(`raft ${this.id}: applied ${applied} is behind the log's snapshot ${snapIndex}; restore the state machine first`);
    }
    if (applied > this.log.lastIndex()) {
      throw new Error(`raft ${this.id}: applied ${applied} is past the log's last index ${this.log.lastIndex()}`);
    }
    this.log.commitTo(applied);
    this.log.appliedTo(applied);
    if (applied === snapIndex) return;
    for (const e of this.log.slice(snapIndex + 1, applied + 1, Number.MAX_SAFE_INTEGER)) {
      if (e.type === 'confChange') this.applyConfChange(decodeConfChange(e.data));
    }
  }

  private loadConfState(cs: ConfState): void {
    this.tracker.voters = new Set(cs.voters);
    this.tracker.learners = new Set(cs.learners);
    this.tracker.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of cs.voters) this.tracker.progress.set(id, new Progress(next, this.tracker.maxInflight, false));
    for (const id of cs.learners) this.tracker.progress.set(id, new Progress(next, this.tracker.maxInflight, true));
  }

  // ---- sending -------------------------------------------------------------

  private send(m: Message): void {
    if (m.to === this.id) throw new Error(`raft ${this.id}: message ${m.type} to self`);
    m.from = this.id;
    if (m.type === 'MsgVote' || m.type === 'MsgVoteResp' || m.type === 'MsgPreVote' || m.type === 'MsgPreVoteResp') {
      if (m.term === 0) throw new Error(`raft ${this.id}: ${m.type} needs an explicit term`);
    } else {
      if (m.term !== 0) throw new Error(`raft ${this.id}: ${m.type} must not set a term`);
      // Forwarded proposals and read requests carry no term: they are not
      // part of the protocol between terms and must not move anyone's term.
      if (m.type !== 'MsgProp' && m.type !== 'MsgReadIndex') m.term = this.term;
    }
    this.msgs.push(m);
  }

  /** Sends an append (or a snapshot) to `to` if its flow control allows; true when something was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    if (pr.next < this.log.firstIndex()) return this.sendSnapshot(to, pr);
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = this.log.entriesFrom(pr.next, this.maxMsgSize);
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(makeMessage({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed }));
    if (entries.length > 0) {
      const last = entries[entries.length - 1]!.index;
      if (pr.state === 'replicate') {
        pr.optimisticUpdate(last);
        pr.inflights.add(last);
      } else if (pr.state === 'probe') {
        pr.probeSent = true;
      } else {
        throw new Error(`raft ${this.id}: append to ${to} in snapshot state`);
      }
    }
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // A follower not heard from recently may be down: don't start a transfer.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    if (snapshot.index === 0) throw new Error(`raft ${this.id}: log compacted without a snapshot`);
    this.send(makeMessage({ type: 'MsgSnap', to, snapshot }));
    pr.becomeSnapshot(snapshot.index);
    return true;
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | undefined): void {
    // Never tell a follower to commit past what it is known to match.
    const commit = Math.min(this.tracker.progress.get(to)!.match, this.log.committed);
    const m = makeMessage({ type: 'MsgHeartbeat', to, commit });
    if (ctx !== undefined) m.context = ctx;
    this.send(m);
  }

  private bcastAppend(): void {
    for (const id of this.tracker.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(): void {
    const ctx = this.readOnly.lastPendingRequestCtx();
    for (const id of this.tracker.progress.keys()) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  // ---- role transitions ----------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + this.rand(this.electionTimeout);
    this.leadTransferee = NONE;
    this.tracker.resetVotes();
    const next = this.log.lastIndex() + 1;
    for (const [id, old] of this.tracker.progress) {
      const pr = new Progress(next, this.tracker.maxInflight, old.isLearner);
      if (id === this.id) pr.match = this.log.persistedIndex();
      this.tracker.progress.set(id, pr);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.stepFn = (m) => this.stepFollower(m);
    this.reset(term);
    this.tickFn = () => this.tickElection();
    this.lead = lead;
    this.state = 'follower';
  }

  becomeCandidate(): void {
    if (this.state === 'leader') throw new Error(`raft ${this.id}: invalid transition leader -> candidate`);
    this.stepFn = (m) => this.stepCandidate(m);
    this.reset(this.term + 1);
    this.tickFn = () => this.tickElection();
    this.vote = this.id;
    this.state = 'candidate';
  }

  becomePreCandidate(): void {
    if (this.state === 'leader') throw new Error(`raft ${this.id}: invalid transition leader -> preCandidate`);
    // Pre-vote changes neither term nor vote: a failed pre-election leaves no trace.
    this.stepFn = (m) => this.stepCandidate(m);
    this.tracker.resetVotes();
    this.tickFn = () => this.tickElection();
    this.lead = NONE;
    this.state = 'preCandidate';
  }

  becomeLeader(): void {
    if (this.state === 'follower') throw new Error(`raft ${this.id}: invalid transition follower -> leader`);
    this.stepFn = (m) => this.stepLeader(m);
    this.reset(this.term);
    this.tickFn = () => this.tickHeartbeat();
    this.lead = this.id;
    this.state = 'leader';
    const self = this.tracker.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Entries of earlier terms may hold a conf change not yet applied: be
    // conservative and treat the whole log as possibly holding one.
    this.pendingConfIndex = this.log.lastIndex();
    this.appendEntry([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]);
  }

  // ---- ticks ---------------------------------------------------------------

  tick(): void {
    this.tickFn();
  }

  private pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(makeMessage({ type: 'MsgHup', from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(makeMessage({ type: 'MsgCheckQuorum', from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.state === 'leader' && this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    if (this.state !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(makeMessage({ type: 'MsgBeat', from: this.id }));
    }
  }

  // ---- elections -----------------------------------------------------------

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    return this.log.slice(lo, this.log.committed + 1, Number.MAX_SAFE_INTEGER).some((e) => e.type === 'confChange');
  }

  private hup(t: CampaignType): void {
    if (this.state === 'leader') return;
    if (!this.promotable()) return;
    // The membership may be about to change under us: wait until applied.
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(t);
  }

  private campaign(t: CampaignType): void {
    let term: number;
    let voteMsg: MessageType;
    if (t === 'preElection') {
      this.becomePreCandidate();
      voteMsg = 'MsgPreVote';
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = 'MsgVote';
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      // Single-voter cluster: won on our own vote.
      if (t === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    for (const id of this.tracker.voters) {
      if (id === this.id) continue;
      const m = makeMessage({ type: voteMsg, to: id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm() });
      if (t === 'transfer') m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  private poll(id: NodeId, granted: boolean): 'pending' | 'won' | 'lost' {
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes().result;
  }

  // ---- step ----------------------------------------------------------------

  /** Steps one message; false when a proposal or read request was dropped. */
  step(m: Message): boolean {
    if (m.term === 0) {
      // local message, or a forwarded proposal / read request
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        // Heard from a live leader within the timeout: this candidate is
        // disruptive (partitioned, or removed), don't let it depose anyone.
        if (!force && inLease) return true;
      }
      if (m.type === 'MsgPreVote') {
        // A pre-vote never changes our term.
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // Granted pre-votes carry the future term; the term moves when the real election starts.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A stale leader cut off by check-quorum or pre-vote would never
        // learn the new term otherwise: tell it.
        this.send(makeMessage({ type: 'MsgAppResp', to: m.from }));
      } else if (m.type === 'MsgPreVote') {
        this.send(makeMessage({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true }));
      }
      return true;
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup(this.preVote ? 'preElection' : 'election');
        return true;
      case 'MsgVote':
      case 'MsgPreVote': {
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === 'MsgPreVote' && m.term > this.term);
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          // Granted responses carry the candidate's term so it counts them;
          // the vote itself is persisted (hard state) before this is sent.
          this.send(makeMessage({ type: voteRespType(m.type), to: m.from, term: m.term }));
          if (m.type === 'MsgVote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send(makeMessage({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true }));
        }
        return true;
      }
      default:
        return this.stepFn(m);
    }
  }

  private stepLeader(m: Message): boolean {
    switch (m.type) {
      case 'MsgBeat':
        this.bcastHeartbeat();
        return true;
      case 'MsgCheckQuorum': {
        if (!this.tracker.quorumActive(this.id)) this.becomeFollower(this.term, NONE);
        for (const [id, pr] of this.tracker.progress) pr.recentActive = id === this.id;
        return true;
      }
      case 'MsgProp': {
        if (m.entries.length === 0) throw new Error(`raft ${this.id}: empty proposal`);
        // Removed from the configuration, or handing leadership over.
        if (!this.tracker.progress.has(this.id)) return false;
        if (this.leadTransferee !== NONE) return false;
        // Fresh copies: appendEntry stamps term and index, and the message
        // (possibly a forwarded one) must stay as it was received.
        const entries = m.entries.map((e) => ({ ...e }));
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!;
          if (e.type !== 'confChange') continue;
          if (this.pendingConfIndex > this.log.applied) return false;
          if (!this.confChangeAllowed(e.data)) return false;
          this.pendingConfIndex = this.log.lastIndex() + i + 1;
        }
        if (!this.increaseUncommittedSize(entries)) return false;
        this.appendEntry(entries);
        this.bcastAppend();
        return true;
      }
      case 'MsgReadIndex': {
        // Until an entry of this term is committed, the leader's commit
        // index may lag what was already committed (and acknowledged) —
        // even alone, after a restart that lost an unsynced commit index.
        if (this.log.term(this.log.committed) !== this.term) {
          this.pendingReadIndexMessages.push(m);
          return true;
        }
        this.startReadIndex(m);
        return true;
      }
      default:
        break;
    }

    const pr = this.tracker.progress.get(m.from);
    if (pr === undefined) return true;
    switch (m.type) {
      case 'MsgAppResp': {
        pr.recentActive = true;
        if (m.reject) {
          let nextProbeIdx = m.rejectHint;
          if (m.logTerm > 0) nextProbeIdx = this.log.findConflictByTerm(m.rejectHint, m.logTerm)[0];
          if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
            if (pr.state === 'replicate') pr.becomeProbe();
            this.sendAppend(m.from);
          }
          return true;
        }
        const oldPaused = pr.isPaused();
        if (!pr.maybeUpdate(m.index)) return true;
        if (pr.state === 'probe') {
          pr.becomeReplicate();
        } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
          // Caught up past what the log still holds: back to normal appends.
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.state === 'replicate') {
          pr.inflights.freeLE(m.index);
        }
        if (this.maybeCommit()) {
          this.releasePendingReadIndexMessages();
          this.bcastAppend();
        } else if (oldPaused) {
          this.sendAppend(m.from);
        }
        while (this.maybeSendAppend(m.from, false)) {
          // fill the pipeline
        }
        if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
        return true;
      }
      case 'MsgHeartbeatResp': {
        pr.recentActive = true;
        pr.probeSent = false;
        // A heartbeat answer frees one slot so a follower whose acks were
        // lost cannot stay paused forever.
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        if (m.context === undefined || m.context.length === 0) return true;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (acks === undefined) return true;
        acks.add(this.id);
        if (this.tracker.voteResult((id) => (acks.has(id) ? true : undefined)) !== 'won') return true;
        for (const rs of this.readOnly.advance(m.context)) this.respondReadIndex(rs.req, rs.index);
        return true;
      }
      case 'MsgSnapStatus': {
        if (pr.state !== 'snapshot') return true;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's answer (or a heartbeat) before probing.
        pr.probeSent = true;
        return true;
      }
      case 'MsgUnreachable':
        if (pr.state === 'replicate') pr.becomeProbe();
        return true;
      case 'MsgTransferLeader': {
        if (pr.isLearner) return true;
        const to = m.from;
        if (this.leadTransferee === to) return true;
        if (to === this.id) return true;
        this.electionElapsed = 0;
        this.leadTransferee = to;
        if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
        else this.sendAppend(to);
        return true;
      }
      default:
        return true;
    }
  }

  private stepCandidate(m: Message): boolean {
    const myVoteResp: MessageType = this.state === 'preCandidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
    switch (m.type) {
      case 'MsgProp':
      case 'MsgReadIndex':
        return false;
      case 'MsgApp':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return true;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return true;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return true;
      case 'MsgTransferLeader':
        return false;
      default:
        break;
    }
    if (m.type !== myVoteResp) return true;
    const res = this.poll(m.from, !m.reject);
    if (res === 'won') {
      if (this.state === 'preCandidate') {
        this.campaign('election');
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (res === 'lost') {
      this.becomeFollower(this.term, NONE);
    }
    return true;
  }

  private stepFollower(m: Message): boolean {
    switch (m.type) {
      case 'MsgProp':
      case 'MsgTransferLeader':
      case 'MsgReadIndex':
        if (this.lead === NONE) return false;
        // Forwarded with term 0 (not part of any term's protocol); `from`
        // stays the proposer, the reader or the transferee.
        this.msgs.push({ ...m, to: this.lead, from: m.from === NONE ? this.id : m.from });
        return true;
      case 'MsgApp':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return true;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return true;
      case 'MsgSnap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return true;
      case 'MsgTimeoutNow':
        // The leader chose us: campaign at once, without pre-vote, forcing past leases.
        this.hup('transfer');
        return true;
      case 'MsgReadIndexResp':
        this.readStates.push({ index: m.index, requestCtx: m.context ?? new Uint8Array(0) });
        return true;
      default:
        return true;
    }
  }

  // ---- handlers --------------------------------------------------------------

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.committed }));
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: lastNew }));
      return;
    }
    // Tell the leader where our log could match, skipping a whole term of
    // divergent entries per round trip.
    const [hintIndex, hintTerm] = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send(
      makeMessage({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hintIndex, logTerm: hintTerm }),
    );
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    const resp = makeMessage({ type: 'MsgHeartbeatResp', to: m.from });
    if (m.context !== undefined) resp.context = m.context;
    this.send(resp);
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot!;
    if (this.restore(s)) {
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.lastIndex() }));
    } else {
      this.send(makeMessage({ type: 'MsgAppResp', to: m.from, index: this.log.committed }));
    }
  }

  /** Installs a snapshot's metadata; false when it brings nothing new. */
  private restore(s: SnapshotMeta): boolean {
    if (s.index <= this.log.committed) return false;
    if (this.state !== 'follower') throw new Error(`raft ${this.id}: snapshot restore as ${this.state}`);
    if (this.log.matchTerm(s.index, s.term)) {
      // We already hold that entry: the snapshot only tells us it is committed.
      this.log.commitTo(s.index);
      return false;
    }
    // A node added after the snapshot was taken is not in its confState; it
    // learns its own membership when it applies the entries that follow.
    this.log.restore(s);
    this.loadConfState(s.confState);
    return true;
  }

  // ---- leader helpers --------------------------------------------------------

  private appendEntry(es: Entry[]): void {
    let li = this.log.lastIndex();
    for (const e of es) {
      e.term = this.term;
      e.index = ++li;
    }
    this.log.append(es);
    // The leader's own progress moves only when the driver reports the
    // entries stable (onPersisted), so commit never counts an unsynced copy.
  }

  /** Called by the RawNode after the driver persisted entries; lets the leader count itself. */
  onPersisted(): void {
    if (this.state !== 'leader') return;
    const self = this.tracker.progress.get(this.id);
    if (self === undefined) return;
    if (self.maybeUpdate(this.log.persistedIndex()) && this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    }
  }

  private increaseUncommittedSize(entries: Entry[]): boolean {
    let size = 0;
    for (const e of entries) size += e.data.length;
    // Always accept one proposal into an empty budget, however large.
    if (this.uncommittedSize > 0 && size > 0 && this.uncommittedSize + size > this.maxUncommittedSize) return false;
    this.uncommittedSize += size;
    return true;
  }

  /** Called by the RawNode once committed entries are applied: they no longer count as uncommitted. */
  reduceUncommittedSize(applied: Entry[]): void {
    if (this.state !== 'leader') return;
    let size = 0;
    for (const e of applied) size += e.data.length;
    // Entries of earlier terms were never counted: clamp at zero.
    this.uncommittedSize = Math.max(0, this.uncommittedSize - size);
  }

  private maybeCommit(): boolean {
    const mci = this.tracker.committed();
    // Only entries of the current term are committed by counting replicas
    // (Raft §5.4.2); earlier ones are committed with them.
    if (mci > this.log.committed && this.log.term(mci) === this.term) {
      this.log.commitTo(mci);
      return true;
    }
    return false;
  }

  private startReadIndex(m: Message): void {
    if (this.tracker.isSingleton()) {
      // No one else could have been elected: our commit index is current.
      this.respondReadIndex(m, this.log.committed);
      return;
    }
    this.readOnly.addRequest(this.log.committed, m);
    this.readOnly.recvAck(this.id, m.context!);
    this.bcastHeartbeat();
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (this.log.term(this.log.committed) !== this.term) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) this.startReadIndex(m);
  }

  private respondReadIndex(req: Message, index: number): void {
    const ctx = req.context ?? new Uint8Array(0);
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, requestCtx: ctx });
    } else {
      this.send(makeMessage({ type: 'MsgReadIndexResp', to: req.from, index, context: ctx }));
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(makeMessage({ type: 'MsgTimeoutNow', to }));
  }

  // ---- membership --------------------------------------------------------

  /** Whether the leader accepts a proposed change against the current configuration. */
  private confChangeAllowed(data: Uint8Array): boolean {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(data);
    } catch {
      return false; // malformed: never let it into the log, where applying it would halt every node
    }
    const { voters, learners } = this.tracker;
    switch (cc.type) {
      case 'addNode':
        return !voters.has(cc.nodeId);
      case 'addLearnerNode':
        // Demoting a voter to learner is not supported (remove, then add as learner).
        return !voters.has(cc.nodeId) && !learners.has(cc.nodeId);
      case 'removeNode':
        if (voters.has(cc.nodeId)) return voters.size > 1;
        return learners.has(cc.nodeId);
    }
  }

  /**
   * Applies a committed conf change (called by the driver as it applies the
   * entry) and returns the new membership. Changes that make no sense against
   * the current configuration are no-ops: every node applies the same entries
   * in the same order, so all reach the same configuration.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const t = this.tracker;
    const next = this.log.lastIndex() + 1;
    switch (cc.type) {
      case 'addNode': {
        const pr = t.progress.get(cc.nodeId);
        if (pr !== undefined && pr.isLearner) {
          pr.isLearner = false;
          t.learners.delete(cc.nodeId);
          t.voters.add(cc.nodeId);
        } else if (pr === undefined) {
          const np = new Progress(next, t.maxInflight, false);
          np.recentActive = true;
          t.progress.set(cc.nodeId, np);
          t.voters.add(cc.nodeId);
        }
        break;
      }
      case 'addLearnerNode': {
        if (!t.progress.has(cc.nodeId)) {
          const np = new Progress(next, t.maxInflight, true);
          np.recentActive = true;
          t.progress.set(cc.nodeId, np);
          t.learners.add(cc.nodeId);
        }
        break;
      }
      case 'removeNode': {
        if (t.voters.has(cc.nodeId) && t.voters.size === 1) break;
        t.voters.delete(cc.nodeId);
        t.learners.delete(cc.nodeId);
        t.progress.delete(cc.nodeId);
        break;
      }
    }
    if (this.state === 'leader') {
      if (!t.voters.has(this.id)) {
        // Removed leader: step down; the remaining voters elect a successor.
        this.becomeFollower(this.term, NONE);
      } else {
        if (this.leadTransferee !== NONE && !t.voters.has(this.leadTransferee)) this.leadTransferee = NONE;
        // A smaller quorum may commit more now.
        if (this.maybeCommit()) this.releasePendingReadIndexMessages();
        this.bcastAppend();
      }
    }
    return t.confState();
  }
}
