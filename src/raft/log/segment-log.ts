// The durable Raft log: entries, hard state and snapshot metadata in the
// project's own append-only segment files (SPEC §6 "Durability"), because
// rocksdb-native cannot fsync a write.
//
// Layout: <dir>/<seq:16 hex>.seg. Every segment starts with a Head record
// (its seq and the last entry index held by earlier segments), then the
// current snapshot metadata and hard state, so the oldest segments can be
// deleted once a compaction covers them. After that, records are appended in
// the order the driver saves them; an Entry record at index i replaces every
// entry >= i (a conflicting suffix), a Snapshot record of kind `install`
// replaces the whole log, one of kind `compact` drops entries up to it.
//
// Recovery reads every segment in order. A damaged record in the last segment
// with no valid record after it is a torn tail from a crash and is cut off
// (it was never acknowledged: save() returns only after the fsync). Any other
// damage, a missing segment or a gap in indexes throws ErrRaftLogCorrupt and
// the node must not start: an acknowledged entry is never silently skipped.
//
// Reads serve the core synchronously from an in-memory index (term and file
// position per entry) and a byte-bounded cache of recent entry data; older
// data is read back from its segment.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fsyncDirectory } from '../../durable/index.js';
import { sealError } from '../../errors/index.js';
import { bootstrapSnapshot, BOOTSTRAP_INDEX, type Storage } from '../core/storage.js';
import type { ConfState, Entry, EntryType, HardState, SnapshotMeta } from '../core/types.js';
import {
  HEADER_BYTES,
  RecordType,
  encodeRecords,
  findNextValidRecord,
  parseRecord,
  recordSize,
  type LogRecord,
} from './record.js';

export interface SegmentLogOptions {
  dir: string;
  /** A segment is closed and a new one started once it reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** Entry data kept in memory for reads (default 32 MiB); the rest is read from disk. */
  cacheBytes?: number;
  /** Membership of a founding member; used only when the directory holds no log yet. */
  bootstrap?: ConfState;
}

/** Where an entry lives. `data` is set while the entry is in the read cache. */
interface EntryMeta {
  term: number;
  type: EntryType;
  seq: number;
  /** Offset of the entry's data in its segment; -1 for an entry known only from a later Head (recovery). */
  off: number;
  len: number;
  data: Uint8Array | undefined;
}

interface Segment {
  seq: number;
  file: string;
  /** Bytes of valid records. */
  size: number;
  /** Highest entry index this segment (or the Head opening it) speaks of. */
  maxIndex: number;
  readFd: number | undefined;
}

const ZERO_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };
const EMPTY_SNAPSHOT: SnapshotMeta = { index: 0, term: 0, confState: { voters: [], learners: [] } };
const SEGMENT_RE = /^([0-9a-f]{16})\.seg$/;

function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.seg`;
}

function corrupt(message: string): Error {
  return sealError('ErrRaftLogCorrupt', message);
}

function cloneSnapshot(s: SnapshotMeta): SnapshotMeta {
  return { index: s.index, term: s.term, confState: { voters: [...s.confState.voters], learners: [...s.confState.learners] } };
}

export class SegmentLog implements Storage {
  readonly dir: string;
  private readonly segmentBytes: number;
  private readonly cacheBytes: number;

  private hardState: HardState = { ...ZERO_HARD_STATE };
  private snap: SnapshotMeta = cloneSnapshot(EMPTY_SNAPSHOT);
  // Invariant: metas[k] describes entry snap.index + 1 + k.
  private metas: EntryMeta[] = [];
  private segments: Segment[] = [];
  private writer: fsp.FileHandle | undefined;
  private busy = false;
  private closed = false;
  /** Opened by read(): recovery changed no file and writes are refused. */
  private readOnly = false;
  private cutTail: { segment: string; offset: number; bytes: number } | undefined;
  /** Data offsets of the Entry records just written, consumed in order by applyRecord. */
  private pendingOffsets: number[] = [];

  // Read cache: FIFO of metas whose data is held, bounded by cacheBytes.
  private cacheQueue: EntryMeta[] = [];
  private cacheHead = 0;
  private cachedBytes = 0;

  private constructor(opts: SegmentLogOptions) {
    this.dir = opts.dir;
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.cacheBytes = opts.cacheBytes ?? 32 * 1024 * 1024;
  }

  /** Opens (recovering) or creates the log in `opts.dir`. */
  static async open(opts: SegmentLogOptions): Promise<SegmentLog> {
    const log = new SegmentLog(opts);
    await fsp.mkdir(opts.dir, { recursive: true });
    const seqs = (await fsp.readdir(opts.dir))
      .map((n) => SEGMENT_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => parseInt(m[1]!, 16))
      .sort((a, b) => a - b);
    if (seqs.length > 0 && (await log.recover(seqs))) return log;
    // A new log (or one whose creation a crash cut short: nothing in it was acknowledged).
    if (opts.bootstrap !== undefined) {
      log.snap = bootstrapSnapshot(opts.bootstrap);
      log.hardState = { term: BOOTSTRAP_INDEX, vote: 0, commit: BOOTSTRAP_INDEX };
    }
    await fsyncDirectory(path.dirname(path.resolve(opts.dir)));
    await log.startSegment(1, 'install');
    return log;
  }

  /** The damaged or torn tail recovery cut off at open, if any (for the node's log). */
  get tailCut(): { segment: string; offset: number; bytes: number } | undefined {
    return this.cutTail;
  }

  /**
   * Recovers the log in `dir` into memory WITHOUT changing any file, for
   * offline tools on a stopped node (resync-sidecar): a torn tail is left
   * in place (its records are ignored, as recovery would cut them), no
   * segment is created or deleted, and save()/compact() are refused. A
   * directory with no segment (or none at all) reads as an empty log.
   */
  static async read(dir: string): Promise<SegmentLog> {
    const log = new SegmentLog({ dir });
    log.readOnly = true;
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return log;
      throw err;
    }
    const seqs = names
      .map((n) => SEGMENT_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => parseInt(m[1]!, 16))
      .sort((a, b) => a - b);
    if (seqs.length > 0) await log.recover(seqs);
    return log;
  }

  // ---- Storage (read side, synchronous) ----

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneSnapshot(this.snap).confState };
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo <= this.snap.index) throw new RangeError(`entries(${lo}): compacted (first index ${this.firstIndex()})`);
    if (hi > this.lastIndex() + 1) throw new RangeError(`entries(.., ${hi}): past last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const m = this.metas[i - this.snap.index - 1]!;
      size += m.len + 24;
      if (out.length > 0 && size > maxSize) break;
      out.push({ index: i, term: m.term, type: m.type, data: this.readData(m) });
    }
    return out;
  }

  term(i: number): number {
    if (i === this.snap.index) return this.snap.term;
    if (i < this.snap.index || i > this.lastIndex()) {
      throw new RangeError(`term(${i}): outside [${this.snap.index}, ${this.lastIndex()}]`);
    }
    return this.metas[i - this.snap.index - 1]!.term;
  }

  firstIndex(): number {
    return this.snap.index + 1;
  }

  lastIndex(): number {
    return this.snap.index + this.metas.length;
  }

  snapshot(): SnapshotMeta {
    return cloneSnapshot(this.snap);
  }

  // ---- Writes (asynchronous, one at a time) ----

  /**
   * Persists what a Ready asks for: a received snapshot (replacing the whole
   * log), entries (replacing any conflicting suffix) and hard state. When
   * `sync`, returns only after the data is fsynced.
   */
  async save(rd: { hardState?: HardState; entries: Entry[]; snapshot?: SnapshotMeta }, sync: boolean): Promise<void> {
    // Checked before writing: a gap on disk would make the log unreadable.
    let next = (rd.snapshot?.index ?? this.lastIndex()) + 1;
    for (const e of rd.entries) {
      if (e.index > next || (e.index !== next && e !== rd.entries[0])) {
        throw new RangeError(`save: entry ${e.index} does not follow ${next - 1}`);
      }
      next = e.index + 1;
    }
    const records: LogRecord[] = [];
    if (rd.snapshot !== undefined) records.push({ type: RecordType.Snapshot, kind: 'install', meta: rd.snapshot });
    for (const entry of rd.entries) records.push({ type: RecordType.Entry, entry });
    if (rd.hardState !== undefined) records.push({ type: RecordType.HardState, hardState: rd.hardState });
    if (records.length === 0) return;
    await this.exclusive(async () => {
      await this.appendRecords(records, sync);
      for (const r of records) this.applyRecord(r, this.active(), -1);
    });
  }

  /**
   * Records that the state machine holds everything up to `index` (with
   * membership `confState` as of that index), drops the entries up to it and
   * deletes the segments that held only such entries.
   */
  async compact(index: number, confState: ConfState): Promise<void> {
    if (index <= this.snap.index) return;
    if (index > this.lastIndex()) throw new RangeError(`compact(${index}): past last index ${this.lastIndex()}`);
    const meta: SnapshotMeta = { index, term: this.term(index), confState };
    await this.exclusive(async () => {
      const r: LogRecord = { type: RecordType.Snapshot, kind: 'compact', meta };
      await this.appendRecords([r], true);
      this.applyRecord(r, this.active(), -1);
      await this.deleteCoveredSegments();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writer?.close();
    this.writer = undefined;
    for (const s of this.segments) if (s.readFd !== undefined) fs.closeSync(s.readFd);
  }

  /** Entry bytes held in the read cache (bounded by cacheBytes). */
  get cacheUsage(): number {
    return this.cachedBytes;
  }

  /** Segment files currently on disk, oldest first (for tests and metrics). */
  segmentFiles(): string[] {
    return this.segments.map((s) => s.file);
  }

  // ---- internals ----

  private async exclusive(fn: () => Promise<void>): Promise<void> {
    if (this.closed) throw sealError('ErrRaftStopped', 'raft log is closed');
    if (this.readOnly) throw sealError('ErrRaftStopped', 'raft log was opened read-only (SegmentLog.read)');
    if (this.busy) throw new Error('SegmentLog: concurrent writes (the driver must serialise save/compact)');
    this.busy = true;
    try {
      await fn();
    } finally {
      this.busy = false;
    }
  }

  private active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private async appendRecords(records: LogRecord[], sync: boolean): Promise<void> {
    if (this.active().size >= this.segmentBytes) await this.startSegment(this.active().seq + 1, 'compact');
    const seg = this.active();
    const buf = encodeRecords(records);
    let written = 0;
    while (written < buf.length) {
      const { bytesWritten } = await this.writer!.write(buf, written, buf.length - written, seg.size + written);
      written += bytesWritten;
    }
    if (sync) await this.writer!.datasync();
    // Entry data offsets, for reads that miss the cache.
    let off = seg.size;
    for (const r of records) {
      if (r.type === RecordType.Entry) this.pendingOffsets.push(off + HEADER_BYTES + 18);
      off += recordSize(r);
    }
    seg.size += buf.length;
  }

  /**
   * Starts segment `seq` with Head, snapshot and hard state, fsyncs it and
   * the directory, and makes it the one appended to. The previous segment is
   * fsynced first: once a later segment exists, damage in an earlier one is
   * never a torn tail.
   */
  private async startSegment(seq: number, kind: 'install' | 'compact'): Promise<void> {
    if (this.writer !== undefined) {
      await this.writer.sync();
      await this.writer.close();
      this.writer = undefined;
    }
    const file = path.join(this.dir, segmentName(seq));
    const lastIndex = this.lastIndex();
    const buf = encodeRecords([
      { type: RecordType.Head, seq, lastIndex },
      { type: RecordType.Snapshot, kind, meta: this.snap },
      { type: RecordType.HardState, hardState: this.hardState },
    ]);
    const h = await fsp.open(file, 'w+');
    await h.write(buf, 0, buf.length, 0);
    await h.sync();
    await fsyncDirectory(this.dir);
    this.writer = h;
    this.segments.push({ seq, file, size: buf.length, maxIndex: lastIndex, readFd: undefined });
  }

  /** Applies one record to the in-memory state. `dataOff` < 0: take it from pendingOffsets (live writes). */
  private applyRecord(r: LogRecord, seg: Segment, dataOff: number): void {
    switch (r.type) {
      case RecordType.Head:
        throw new Error('SegmentLog: Head applied out of place');
      case RecordType.HardState:
        this.hardState = { ...r.hardState };
        return;
      case RecordType.Snapshot:
        this.applySnapshotRecord(r.kind, r.meta);
        return;
      case RecordType.Entry: {
        const off = dataOff >= 0 ? dataOff : this.pendingOffsets.shift()!;
        const e = r.entry;
        if (e.index <= this.snap.index) return; // covered by the snapshot already
        const k = e.index - this.snap.index - 1;
        if (k > this.metas.length) {
          throw corrupt(`${path.basename(seg.file)}: entry ${e.index} leaves a gap after ${this.lastIndex()}`);
        }
        if (k < this.metas.length) this.truncateFrom(k);
        const meta: EntryMeta = { term: e.term, type: e.type, seq: seg.seq, off, len: e.data.length, data: e.data };
        this.metas.push(meta);
        this.cache(meta);
        if (e.index > seg.maxIndex) seg.maxIndex = e.index;
        return;
      }
    }
  }

  private applySnapshotRecord(kind: 'install' | 'compact', meta: SnapshotMeta): void {
    if (meta.index < this.snap.index) return;
    const drop = kind === 'install' || meta.index > this.lastIndex() ? this.metas.length : meta.index - this.snap.index;
    for (let k = 0; k < drop; k++) this.uncache(this.metas[k]!);
    this.metas = this.metas.slice(drop);
    this.snap = cloneSnapshot(meta);
  }

  private truncateFrom(k: number): void {
    for (let j = k; j < this.metas.length; j++) this.uncache(this.metas[j]!);
    this.metas.length = k;
  }

  private cache(m: EntryMeta): void {
    if (m.data === undefined) return;
    this.cachedBytes += m.len;
    this.cacheQueue.push(m);
    while (this.cachedBytes > this.cacheBytes && this.cacheHead < this.cacheQueue.length) {
      this.uncache(this.cacheQueue[this.cacheHead++]!);
    }
    if (this.cacheHead > 4096 && this.cacheHead * 2 > this.cacheQueue.length) {
      this.cacheQueue = this.cacheQueue.slice(this.cacheHead);
      this.cacheHead = 0;
    }
  }

  private uncache(m: EntryMeta): void {
    if (m.data === undefined) return;
    this.cachedBytes -= m.len;
    m.data = undefined;
  }

  private readData(m: EntryMeta): Uint8Array {
    if (m.data !== undefined) return m.data;
    const seg = this.segments.find((s) => s.seq === m.seq);
    if (seg === undefined || m.off < 0) throw corrupt(`entry data of segment ${m.seq} is gone`);
    seg.readFd ??= fs.openSync(seg.file, 'r');
    const buf = Buffer.allocUnsafe(m.len);
    let got = 0;
    while (got < m.len) {
      const n = fs.readSync(seg.readFd, buf, got, m.len - got, m.off + got);
      if (n === 0) throw corrupt(`${path.basename(seg.file)}: short read at ${m.off}`);
      got += n;
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  }

  private async deleteCoveredSegments(): Promise<void> {
    let removed = false;
    while (this.segments.length > 1 && this.segments[0]!.maxIndex <= this.snap.index) {
      const s = this.segments.shift()!;
      if (s.readFd !== undefined) fs.closeSync(s.readFd);
      await fsp.rm(s.file);
      removed = true;
    }
    if (removed) await fsyncDirectory(this.dir);
  }

  /** Replays the segments; false when the only one held no complete Head (a crash while creating the log). */
  private async recover(seqs: number[]): Promise<boolean> {
    let phantomLast = -1;
    for (let si = 0; si < seqs.length; si++) {
      const seq = seqs[si]!;
      const isLast = si === seqs.length - 1;
      const file = path.join(this.dir, segmentName(seq));
      const buf = await fsp.readFile(file);
      const seg: Segment = { seq, file, size: 0, maxIndex: 0, readFd: undefined };
      let off = 0;
      while (off < buf.length) {
        const res = parseRecord(buf, off);
        if (!res.ok) {
          if (!isLast || findNextValidRecord(buf, off + 1) >= 0) {
            throw corrupt(`${segmentName(seq)}: damaged record at offset ${off} (${res.reason}) before valid data`);
          }
          if (!this.readOnly) {
            await this.truncateTail(file, off);
            this.cutTail = { segment: segmentName(seq), offset: off, bytes: buf.length - off };
          }
          break;
        }
        const r = res.record;
        if (off === 0) {
          if (r.type !== RecordType.Head || r.seq !== seq) throw corrupt(`${segmentName(seq)}: does not start with its Head`);
          if (si === 0) {
            phantomLast = r.lastIndex;
          } else if (seq !== seqs[si - 1]! + 1 || r.lastIndex !== this.lastIndex()) {
            throw corrupt(`${segmentName(seq)}: does not follow segment ${segmentName(seqs[si - 1]!)}`);
          }
          seg.maxIndex = r.lastIndex;
          this.segments.push(seg);
        } else if (r.type === RecordType.Head) {
          throw corrupt(`${segmentName(seq)}: Head record at offset ${off}`);
        } else {
          this.applyRecord(r, seg, off + HEADER_BYTES + 18);
          if (phantomLast >= 0 && r.type === RecordType.Snapshot) {
            // The first segment's Head says entries up to phantomLast were in
            // deleted segments; a later compaction must cover them.
            for (let i = this.lastIndex() + 1; i <= phantomLast; i++) {
              this.metas.push({ term: 0, type: 'normal', seq: 0, off: -1, len: 0, data: undefined });
            }
            phantomLast = -1;
          }
        }
        off = res.end;
        seg.size = off;
      }
      if (off === 0 && isLast && !this.readOnly) {
        // A crash while creating this segment: nothing in it was acknowledged.
        await fsp.rm(file);
        await fsyncDirectory(this.dir);
      }
    }
    const missing = this.metas.findIndex((m) => m.off < 0);
    if (missing >= 0) throw corrupt(`entry ${this.snap.index + 1 + missing} is in no segment (a segment is missing)`);
    if (this.segments.length === 0) {
      if (seqs.length === 1 && seqs[0] === 1) return false;
      throw corrupt('no readable segment');
    }
    if (this.readOnly) return true;
    // Appends go to a new segment: the recovered one may end in a cut tail.
    await this.startSegment(this.active().seq + 1, 'compact');
    await this.deleteCoveredSegments();
    return true;
  }

  private async truncateTail(file: string, size: number): Promise<void> {
    const h = await fsp.open(file, 'r+');
    try {
      await h.truncate(size);
      await h.sync();
    } finally {
      await h.close();
    }
  }
}
