// The Raft log as the core sees it: stable entries in Storage followed by
// entries (and possibly a snapshot) not yet persisted, plus the commit and
// apply cursors.

import { limitSize, type Storage } from './storage.js';
import type { Entry, SnapshotMeta } from './types.js';

/** Entries and a snapshot appended but not yet reported stable by the driver. */
class Unstable {
  snapshot: SnapshotMeta | undefined;
  // Invariant: entries[k].index === offset + k; when snapshot is set, offset === snapshot.index + 1.
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.index;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      return this.snapshot !== undefined && this.snapshot.index === i ? this.snapshot.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    // Only when the entry at i is still the one that was persisted (a later
    // conflicting append may have replaced it in the meantime).
    if (gt === t && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
    }
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.index === i) this.snapshot = undefined;
  }

  restore(s: SnapshotMeta): void {
    this.offset = s.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: Entry[]): void {
    const after = ents[0]!.index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  // Invariant: applied <= committed <= lastIndex().
  committed: number;
  applied: number;
  private readonly maxNextEntsSize: number;

  constructor(storage: Storage, maxNextEntsSize: number) {
    this.storage = storage;
    this.maxNextEntsSize = maxNextEntsSize;
    const first = storage.firstIndex();
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Highest index known persisted and matching this log (what a leader may count for itself). */
  persistedIndex(): number {
    if (this.unstable.snapshot !== undefined) return 0;
    return this.unstable.offset - 1;
  }

  /** Term of entry i, or 0 when i is compacted away or past the end. */
  term(i: number): number {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return 0;
    return this.unstable.maybeTerm(i) ?? this.storage.term(i);
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  matchTerm(i: number, t: number): boolean {
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return false;
    return this.term(i) === t;
  }

  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /**
   * Appends the entries of a MsgApp whose predecessor is (index, logTerm).
   * Returns the last index of the new entries, or undefined when the
   * predecessor does not match.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) throw new Error(`raft log: conflict at ${ci} <= committed ${this.committed}`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    if (after < this.committed) throw new Error(`raft log: append after ${after} < committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** Index of the first entry whose term differs from ours (or that we lack); 0 when all match. */
  private findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term
   * (term 0 when the index is compacted). Used to skip a whole term of
   * conflicting entries per round trip.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      if (index < this.firstIndex() - 1) return [index, 0];
      const ours = this.term(index);
      if (ours <= term) return [index, ours];
    }
    return [0, 0];
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /** Committed entries not yet applied (bounded by maxNextEntsSize). */
  nextEnts(): Entry[] {
    const off = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 <= off) return [];
    return this.slice(off, this.committed + 1, this.maxNextEntsSize);
  }

  hasNextEnts(): boolean {
    return this.committed + 1 > Math.max(this.applied + 1, this.firstIndex());
  }

  snapshot(): SnapshotMeta {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(tocommit: number): void {
    if (this.committed < tocommit) {
      if (this.lastIndex() < tocommit) {
        throw new Error(`raft log: commit ${tocommit} out of range [last ${this.lastIndex()}]`);
      }
      this.committed = tocommit;
    }
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (this.committed < i || i < this.applied) {
      throw new Error(`raft log: applied ${i} outside [${this.applied}, ${this.committed}]`);
    }
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  restore(s: SnapshotMeta): void {
    this.committed = s.index;
    this.unstable.restore(s);
  }

  /** Entries from i on, at most maxSize bytes (empty when i > lastIndex). Requires i >= firstIndex(). */
  entriesFrom(i: number, maxSize: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxSize);
  }

  /** Entries in [lo, hi), at most maxSize bytes (at least one). */
  slice(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo < this.firstIndex()) throw new RangeError(`raft log: slice(${lo}) compacted`);
    if (hi > this.lastIndex() + 1) throw new RangeError(`raft log: slice(.., ${hi}) past last ${this.lastIndex()}`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const uoff = this.unstable.offset;
    if (lo < uoff) {
      ents = this.storage.entries(lo, Math.min(hi, uoff), maxSize);
      // Storage stopped early because of the size limit: don't add unstable ones.
      if (ents.length < Math.min(hi, uoff) - lo) return ents;
    }
    if (hi > uoff) {
      const u = this.unstable.slice(Math.max(lo, uoff), hi);
      ents = ents.length > 0 ? ents.concat(u) : u;
    }
    return limitSize(ents, maxSize);
  }
}
