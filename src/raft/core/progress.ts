// The leader's view of each follower: how far it matches, what to send next,
// and the flow control that lets several appends be in flight at once.

import type { ConfState, NodeId } from './types.js';

/**
 * probe: one append at a time until a follower's match is found;
 * replicate: appends pipelined optimistically, up to the inflight window;
 * snapshot: waiting for a snapshot transfer to finish, nothing else sent.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** A ring of the last indexes of appends in flight, oldest first. */
export class Inflights {
  private start = 0;
  private count = 0;
  private readonly buffer: number[];

  constructor(readonly size: number) {
    this.buffer = new Array<number>(size).fill(0);
  }

  add(index: number): void {
    if (this.full()) throw new Error('inflights: add to a full window');
    this.buffer[(this.start + this.count) % this.size] = index;
    this.count++;
  }

  /** Frees every flight whose last index is <= to (acknowledged). */
  freeLE(to: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= to) {
      this.start = (this.start + 1) % this.size;
      this.count--;
    }
  }

  freeFirstOne(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.size;
    this.count--;
  }

  full(): boolean {
    return this.count === this.size;
  }

  get length(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class Progress {
  // Invariant: match < next.
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In probe state: an append was sent and no answer came yet. */
  probeSent = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflight: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an acknowledged index; true when match moved forward. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  optimisticUpdate(n: number): void {
    this.next = n + 1;
  }

  /**
   * Handles a rejected append at `rejected`; `matchHint` is the highest index
   * the follower may match. False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}

export type VoteResult = 'pending' | 'won' | 'lost';

/** Membership, per-node progress and the votes of the current election. */
export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();

  constructor(readonly maxInflight: number) {}

  confState(): ConfState {
    return { voters: [...this.voters].sort((a, b) => a - b), learners: [...this.learners].sort((a, b) => a - b) };
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** The largest index a quorum of voters has matched. */
  committed(): number {
    if (this.voters.size === 0) return Number.MAX_SAFE_INTEGER;
    const matches: number[] = [];
    for (const id of this.voters) matches.push(this.progress.get(id)?.match ?? 0);
    matches.sort((a, b) => b - a);
    return matches[this.quorum() - 1]!;
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: this.voteResult((id) => this.votes.get(id)) };
  }

  /** Outcome of a vote among voters, given each voter's answer (undefined: not yet). */
  voteResult(answer: (id: NodeId) => boolean | undefined): VoteResult {
    if (this.voters.size === 0) return 'won';
    let yes = 0;
    let missing = 0;
    for (const id of this.voters) {
      const v = answer(id);
      if (v === true) yes++;
      else if (v === undefined) missing++;
    }
    const q = this.quorum();
    if (yes >= q) return 'won';
    if (yes + missing >= q) return 'pending';
    return 'lost';
  }

  /** True when a quorum of voters was recently active (self counts as active). */
  quorumActive(self: NodeId): boolean {
    return this.voteResult((id) => (id === self ? true : this.progress.get(id)?.recentActive === true)) === 'won';
  }
}
