// The read side of stable storage that the core consults, and an in-memory
// implementation for tests and the simulator.
//
// The driver writes (append, hard state, snapshot, compaction) while handling
// a Ready; the core only reads, between Ready cycles, so there is no race
// between compaction and a read. The core only asks for indexes inside
// [firstIndex() - 1, lastIndex()]; anything else is a programmer error.

import type { ConfState, Entry, HardState, SnapshotMeta } from './types.js';

export interface Storage {
  /**
   * Hard state, and the membership as of the latest snapshot (the core
   * replays the conf changes between the snapshot and the RawNode's
   * `applied` index itself).
   */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), at most `maxSize` bytes but always at least one when
   * lo < hi. firstIndex() <= lo <= hi <= lastIndex() + 1. The returned array
   * and entries belong to the caller, which never mutates them.
   */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  /** Term of entry i, for firstIndex() - 1 <= i <= lastIndex() (firstIndex() - 1 is the snapshot's). */
  term(i: number): number;
  /** Index of the first entry still held (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The latest snapshot's metadata (index 0 when there is none). */
  snapshot(): SnapshotMeta;
}

/** Bytes an entry counts for in size limits (payload plus a fixed header estimate). */
export function entrySize(e: Entry): number {
  return e.data.length + 24;
}

/** The longest prefix of `ents` within `maxSize` bytes, never fewer than one entry. */
export function limitSize(ents: Entry[], maxSize: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySize(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySize(ents[n]!);
    if (size > maxSize) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

/**
 * Founding members start from a snapshot at index 1, term 1 holding the
 * initial membership (and an empty state machine), with hard state
 * {term: 1, commit: 1}. A node that joins later starts empty and is brought
 * up to date by that snapshot (or a later one), so it always learns the
 * membership from a snapshot before replaying the conf changes after it.
 */
export const BOOTSTRAP_INDEX = 1;

export function bootstrapSnapshot(confState: ConfState): SnapshotMeta {
  return { index: BOOTSTRAP_INDEX, term: BOOTSTRAP_INDEX, confState: cloneConfState(confState) };
}

function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}

/**
 * Storage held in memory. `ents[0]` is a dummy entry standing for the
 * snapshot (its index and term), so term(firstIndex() - 1) needs no branch.
 */
export class MemoryStorage implements Storage {
  // Invariant: ents[0].index === snap.index and ents[0].term === snap.term;
  // ents[k].index === snap.index + k.
  private ents: Entry[];
  private snap: SnapshotMeta;
  private hardState: HardState = { term: 0, vote: 0, commit: 0 };

  /** An empty log: a node that joins an existing cluster and waits to be caught up. */
  constructor() {
    this.snap = { index: 0, term: 0, confState: { voters: [], learners: [] } };
    this.ents = [{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }];
  }

  /** Storage of a founding member: the bootstrap snapshot holds the first membership. */
  static bootstrap(confState: ConfState): MemoryStorage {
    const s = new MemoryStorage();
    s.applySnapshot(bootstrapSnapshot(confState));
    s.setHardState({ term: BOOTSTRAP_INDEX, vote: 0, commit: BOOTSTRAP_INDEX });
    return s;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new RangeError(`entries(${lo}): compacted (first index ${offset + 1})`);
    if (hi > this.lastIndex() + 1) throw new RangeError(`entries(.., ${hi}): past last index ${this.lastIndex()}`);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSize);
  }

  term(i: number): number {
    const offset = this.ents[0]!.index;
    if (i < offset || i > this.lastIndex()) {
      throw new RangeError(`term(${i}): outside [${offset}, ${this.lastIndex()}]`);
    }
    return this.ents[i - offset]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): SnapshotMeta {
    return { ...this.snap, confState: cloneConfState(this.snap.confState) };
  }

  /** Replaces the whole log by a received snapshot. */
  applySnapshot(snap: SnapshotMeta): void {
    if (snap.index < this.snap.index) {
      throw new RangeError(`applySnapshot(${snap.index}): older than ${this.snap.index}`);
    }
    this.snap = { ...snap, confState: cloneConfState(snap.confState) };
    this.ents = [{ index: snap.index, term: snap.term, type: 'normal', data: new Uint8Array(0) }];
  }

  /**
   * Records a snapshot the state machine took at applied index `i` (the data
   * lives with the state machine) and returns its metadata.
   */
  createSnapshot(i: number, confState: ConfState): SnapshotMeta {
    if (i <= this.snap.index) throw new RangeError(`createSnapshot(${i}): not after ${this.snap.index}`);
    if (i > this.lastIndex()) throw new RangeError(`createSnapshot(${i}): past last index ${this.lastIndex()}`);
    this.snap = { index: i, term: this.term(i), confState: cloneConfState(confState) };
    return this.snapshot();
  }

  /** Drops entries up to and including `compactIndex` (which must be covered by the snapshot). */
  compact(compactIndex: number): void {
    const offset = this.ents[0]!.index;
    if (compactIndex <= offset) return;
    if (compactIndex > this.snap.index) {
      throw new RangeError(`compact(${compactIndex}): past snapshot index ${this.snap.index}`);
    }
    const i = compactIndex - offset;
    const head = this.ents[i]!;
    this.ents = [{ index: head.index, term: head.term, type: 'normal', data: new Uint8Array(0) }, ...this.ents.slice(i + 1)];
  }

  /** Appends entries, replacing any suffix they conflict with. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // all already compacted
    const fresh = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const offset = fresh[0]!.index - this.ents[0]!.index;
    if (offset > this.ents.length) {
      throw new RangeError(`append(${fresh[0]!.index}): gap after last index ${this.lastIndex()}`);
    }
    if (offset === this.ents.length) {
      for (const e of fresh) this.ents.push(e);
    } else {
      this.ents = this.ents.slice(0, offset).concat(fresh);
    }
  }
}
