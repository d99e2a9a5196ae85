// Safety invariants of Raft, checked incrementally as the simulator runs
// (kept apart from the simulator so the checks read as the properties they
// are): election safety, log matching, leader completeness, state machine
// safety, and that no acknowledged proposal is lost.

import type { Entry, NodeId, RawNode } from '../../../src/raft/index.js';

export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface LogFact {
  data: Uint8Array;
  type: Entry['type'];
  /** Term of the entry just before, in the log that holds this entry. */
  prevTerm: number;
}

export class SafetyChecker {
  /** term -> the one leader of that term. */
  private readonly leaders = new Map<number, NodeId>();
  /** "index:term" -> what every log holding that entry must agree on. */
  private readonly logFacts = new Map<string, LogFact>();
  /** index -> the entry applied at that index, by whichever node applied it first. */
  private readonly applied: (Entry | undefined)[] = [];
  /** index -> term of the entry some node considered committed there. */
  private readonly committedTerms: (number | undefined)[] = [];
  /** Highest index any node considered committed. */
  maxCommitted = 0;
  /** Per node: committed indexes already recorded (committed entries never change). */
  private readonly checkedCommit = new Map<NodeId, number>();

  private fail(msg: string): never {
    throw new InvariantViolation(msg);
  }

  /** Election safety: at most one leader per term. */
  onLeader(id: NodeId, term: number): void {
    const other = this.leaders.get(term);
    if (other !== undefined && other !== id) this.fail(`election safety: ${other} and ${id} both lead term ${term}`);
    this.leaders.set(term, id);
  }

  /**
   * Log matching, incrementally: an (index, term) pair determines the
   * entry's content and the term of its predecessor, so by induction two
   * logs holding the same (index, term) agree on every entry before it.
   */
  onAppend(id: NodeId, entries: Entry[], rn: RawNode): void {
    const log = rn.raft.log;
    for (const e of entries) {
      const key = `${e.index}:${e.term}`;
      const prevTerm = log.term(e.index - 1);
      const fact = this.logFacts.get(key);
      if (fact === undefined) {
        this.logFacts.set(key, { data: e.data, type: e.type, prevTerm });
        continue;
      }
      if (fact.type !== e.type || !bytesEqual(fact.data, e.data)) {
        this.fail(`log matching: node ${id} holds a different entry at index ${e.index} term ${e.term}`);
      }
      if (fact.prevTerm !== prevTerm) {
        this.fail(`log matching: node ${id} has term ${prevTerm} before ${key}, another log has ${fact.prevTerm}`);
      }
    }
  }

  /** The log's cursors stay ordered: applied <= committed <= lastIndex. */
  onCursors(id: NodeId, rn: RawNode): void {
    const log = rn.raft.log;
    if (!(log.applied <= log.committed && log.committed <= log.lastIndex())) {
      this.fail(`node ${id}: applied ${log.applied}, committed ${log.committed}, last ${log.lastIndex()} out of order`);
    }
  }

  /**
   * Records what a node considers committed (its log up to its commit
   * index) and checks no two nodes consider different entries committed at
   * one index.
   */
  onCommitted(id: NodeId, rn: RawNode): void {
    const log = rn.raft.log;
    const from = Math.max(this.checkedCommit.get(id) ?? 0, log.firstIndex() - 1) + 1;
    for (let i = from; i <= log.committed; i++) {
      const t = log.term(i);
      const prior = this.committedTerms[i];
      if (prior === undefined) this.committedTerms[i] = t;
      else if (prior !== t) this.fail(`commit safety: node ${id} committed term ${t} at index ${i}, another node term ${prior}`);
    }
    if (log.committed > (this.checkedCommit.get(id) ?? 0)) this.checkedCommit.set(id, log.committed);
    if (log.committed > this.maxCommitted) this.maxCommitted = log.committed;
  }

  /** State machine safety: no two nodes apply different entries at one index. */
  onApply(id: NodeId, e: Entry): void {
    const committedTerm = this.committedTerms[e.index];
    if (committedTerm !== undefined && committedTerm !== e.term) {
      this.fail(`state machine safety: node ${id} applied term ${e.term} at index ${e.index}, committed term is ${committedTerm}`);
    }
    const prior = this.applied[e.index];
    if (prior === undefined) {
      this.applied[e.index] = e;
      return;
    }
    if (prior.term !== e.term || prior.type !== e.type || !bytesEqual(prior.data, e.data)) {
      this.fail(`state machine safety: node ${id} applied term ${e.term} at index ${e.index}, another node term ${prior.term}`);
    }
  }

  /** Applied entries are committed: the snapshot a node installs must not contradict them. */
  onSnapshot(id: NodeId, index: number, term: number): void {
    const prior = this.committedTerms[index];
    if (prior !== undefined && prior !== term) {
      this.fail(`state machine safety: node ${id} installed a snapshot at ${index} term ${term}, committed term is ${prior}`);
    }
  }

  /** Leader completeness: a new leader's log holds every entry any node considered committed. */
  onBecomeLeader(id: NodeId, rn: RawNode): void {
    const log = rn.raft.log;
    const first = log.firstIndex();
    if (this.maxCommitted > log.lastIndex()) {
      this.fail(`leader completeness: leader ${id} of term ${rn.raft.term} ends at ${log.lastIndex()}, ${this.maxCommitted} is committed`);
    }
    for (let i = Math.max(first, 1); i <= this.maxCommitted; i++) {
      const t = this.committedTerms[i];
      if (t !== undefined && log.term(i) !== t) {
        this.fail(`leader completeness: leader ${id} of term ${rn.raft.term} has term ${log.term(i)} at committed index ${i} (term ${t})`);
      }
    }
  }
}
