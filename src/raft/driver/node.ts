// RaftNode: the async driver around the pure core (SPEC §2, §6). One loop
// does the I/O of each Ready in etcd's order:
//
//   1. a received snapshot: restore the state machine from the streamed file;
//   2. persist snapshot metadata, entries and hard state (fsync when mustSync);
//   3. send messages (MsgSnap starts a streamed transfer of its own; a
//      leader's MsgApps go out before step 2, in parallel with its fsync);
//   4. apply committed entries (conf changes to the core, normal entries
//      through the apply hook to the state machine), resolve proposers;
//   5. serve ReadIndex reads whose index is applied;
//   6. advance(), then compact the log when enough was applied.
//
// Messages, ticks and proposals are stepped into the core as they arrive
// (the core is synchronous, and RawNode allows steps between ready() and
// advance()); the loop wakes whenever the core may have something to do.
//
// On start the core resumes from the log's snapshot and the log replays every
// committed entry after it; entries at or below the state machine's applied
// index are skipped for the state machine (conf changes always reach the
// core), so applying stays idempotent across crashes.

import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurablySync } from '../../durable/index.js';
import { isSealError, sealError, type SealError } from '../../errors/index.js';
import { decodeConfChange } from '../core/confchange.js';
import { decodeProposal, encodeProposal } from '../core/proposal.js';
import { seededRandInt } from '../core/rand.js';
import { BOOTSTRAP_INDEX } from '../core/storage.js';
import { RawNode } from '../core/rawnode.js';
import type { ConfChange, ConfState, Entry, Message, NodeId, Ready, SnapshotMeta, StateRole } from '../core/types.js';
import { SegmentLog } from '../log/index.js';
import { Transport, type RpcHandler } from '../transport/index.js';
import { NOTICE_TIMEOUT_MS, PROPOSALS_REFUSED_METHOD, RefusalNotices, parseRefusals, refusal } from './refusals.js';
import type { ApplyEntry, LogEntryInfo, RaftNodeOptions, StateMachine } from './types.js';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** Where the entry landed in this node's log (once seen), to detect it being overwritten. */
  index?: number;
  /** A normal proposal handed to the leader as MsgProp: a leader's refusal notice may reject it. */
  forwarded?: boolean;
}

interface PendingRead {
  resolve: (index: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  index?: number;
}

interface IncomingSnapshot {
  m: Message;
  file: string;
  done: () => void;
  /** The node stopped before taking it: the sender hears of a failure. */
  abandon: (e: Error) => void;
}

const CONF_CONTEXT_VERSION = 1;

/** Conf change context: version(1) ‖ proposal id(8 BE) ‖ peer address (UTF-8). */
function encodeConfContext(id: bigint, addr: string): Uint8Array {
  const a = Buffer.from(addr, 'utf8');
  const out = Buffer.allocUnsafe(9 + a.length);
  out[0] = CONF_CONTEXT_VERSION;
  out.writeBigUInt64BE(id, 1);
  a.copy(out, 9);
  return out;
}

/** An entry as onLogEntries reports it. */
function logEntryInfo(e: Entry): LogEntryInfo {
  if (e.type === 'confChange') return { index: e.index, payload: null };
  return { index: e.index, payload: e.data.length === 0 ? new Uint8Array(0) : decodeProposal(e.data).payload };
}

function decodeConfContext(ctx: Uint8Array | undefined): { id: bigint; addr: string } | undefined {
  if (ctx === undefined || ctx.length < 9 || ctx[0] !== CONF_CONTEXT_VERSION) return undefined;
  const b = Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength);
  return { id: b.readBigUInt64BE(1), addr: b.subarray(9).toString('utf8') };
}

export class RaftNode {
  readonly id: NodeId;
  private readonly opts: RaftNodeOptions;
  private readonly sm: StateMachine;
  private log!: SegmentLog;
  private node!: RawNode;
  private transport!: Transport;
  private tickTimer: NodeJS.Timeout | undefined;

  private wake: (() => void) | undefined;
  private kicked = false;
  private loopDone: Promise<void> = Promise.resolve();
  private stopped = false;
  private haltError: Error | undefined;

  private readonly pending = new Map<bigint, Pending>();
  private readonly pendingByIndex = new Map<number, bigint>();
  private readonly reads = new Map<string, PendingRead>();
  private readonly incoming: IncomingSnapshot[] = [];
  private readonly snapshotFiles = new Map<number, string>();
  private readonly sendingSnapshotTo = new Set<NodeId>();
  /** As leader: notices to followers whose forwarded proposals admitProposal refused. */
  private readonly refusals = new RefusalNotices((to, batch) =>
    this.callRpc(to, PROPOSALS_REFUSED_METHOD, batch, { timeoutMs: NOTICE_TIMEOUT_MS }),
  );
  private nextProposalId: bigint;

  // Invariant: smApplied === sm.appliedIndex() after every apply and restore;
  // entries at or below it are never handed to the state machine again.
  private smApplied = 0;
  /** Index of the last committed entry this loop has handled (applied or skipped). */
  private applied = 0;
  /** Membership after each conf change applied since the log's snapshot (for compaction metadata). */
  private confHistory: { index: number; confState: ConfState }[] = [];
  private peers: Record<number, string> = {};
  private role: StateRole = 'follower';
  private leader: NodeId = 0;

  private constructor(opts: RaftNodeOptions) {
    this.id = opts.id;
    this.opts = opts;
    this.sm = opts.stateMachine;
    this.nextProposalId = crypto.randomBytes(8).readBigUInt64BE(0) >> 1n;
  }

  /** Opens the log, recovers, starts the transport, the tick timer and the loop. */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const n = new RaftNode(opts);
    await n.open();
    return n;
  }

  private async open(): Promise<void> {
    const o = this.opts;
    this.log = await SegmentLog.open({
      dir: path.join(o.dir, 'log'),
      bootstrap: o.bootstrap,
      segmentBytes: o.segmentBytes,
      cacheBytes: o.cacheBytes,
    });
    if (o.checkLog !== undefined) {
      try {
        await o.checkLog({ firstIndex: this.log.firstIndex(), lastIndex: this.log.lastIndex() });
      } catch (err) {
        await this.log.close();
        throw err;
      }
    }
    const snap = this.log.snapshot();
    this.smApplied = this.sm.appliedIndex();
    // The founding snapshot (index 1) stands for an empty state machine.
    if (this.smApplied < snap.index && snap.index > BOOTSTRAP_INDEX) {
      await this.log.close();
      throw sealError('ErrRaftLogCorrupt', `state machine applied index ${this.smApplied} is behind the log's snapshot ${snap.index}`);
    }
    this.applied = snap.index;
    try {
      this.reportLogTail(Math.max(this.smApplied, snap.index) + 1);
    } catch (e) {
      await this.log.close();
      throw e;
    }
    this.node = new RawNode({
      id: o.id,
      storage: this.log,
      applied: snap.index,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      maxSizePerMsg: o.maxSizePerMsg ?? 1024 * 1024,
      maxInflightMsgs: o.maxInflightMsgs ?? 256,
      // Replay after a restart comes in bounded slices, not the whole log at once.
      maxCommittedSizePerReady: 16 * 1024 * 1024,
      checkQuorum: true,
      preVote: true,
      rand: seededRandInt(o.seed ?? crypto.randomInt(2 ** 31)),
    });
    this.peers = { ...(await this.loadPeers()), ...(o.peers ?? {}) };
    this.transport = new Transport({
      id: o.id,
      secret: o.secret,
      host: o.host,
      port: o.port,
      snapshotDir: path.join(o.dir, 'snap'),
      queueMessages: o.queueMessages,
      queueBytes: o.queueBytes,
      handler: {
        onMessage: (m) => this.onMessage(m),
        onUnreachable: (id) => {
          if (!this.stopped) this.node.reportUnreachable(id);
        },
        onSnapshot: (m, file) => this.onSnapshot(m, file),
      },
    });
    for (const [method, handler] of Object.entries(o.rpcHandlers ?? {})) this.transport.serveRpc(method, handler);
    this.transport.serveRpc(PROPOSALS_REFUSED_METHOD, async (body, from) => this.onProposalsRefused(body, from));
    await fsp.rm(path.join(o.dir, 'snap'), { recursive: true, force: true });
    try {
      await this.transport.start();
    } catch (e) {
      await this.log.close();
      throw e;
    }
    for (const [id, addr] of Object.entries(this.peers)) this.transport.setPeer(Number(id), addr);
    this.tickTimer = setInterval(() => {
      if (this.stopped) return;
      this.node.tick();
      this.kick();
    }, o.tickMs ?? 100);
    this.loopDone = this.loop();
  }

  // ---- public API ----

  get port(): number {
    return this.transport.port;
  }

  isLeader(): boolean {
    return !this.stopped && this.node.isLeader();
  }

  /** The leader this node knows of (0 when none). */
  leaderId(): NodeId {
    return this.leader;
  }

  /** The core's status; `withProgress` false leaves `progress` empty (for frequent polls). */
  status(withProgress = true): ReturnType<RawNode['status']> {
    return this.node.status(withProgress);
  }

  /** Membership as this node has applied it. */
  confState(): ConfState {
    return this.node.confState();
  }

  /** Voters and learners of the membership this node has applied (copies). */
  members(): { voters: NodeId[]; learners: NodeId[] } {
    const cs = this.node.confState();
    return { voters: [...cs.voters], learners: [...cs.learners] };
  }

  /** One election timeout in milliseconds (electionTick × tickMs). */
  electionTimeoutMs(): number {
    return (this.opts.electionTick ?? 10) * (this.opts.tickMs ?? 100);
  }

  /** Where this node reaches `id` ("host:port"); its own listening address for itself; undefined when unknown. */
  peerAddress(id: NodeId): string | undefined {
    if (id === this.id) return `${this.opts.host ?? '127.0.0.1'}:${this.transport.port}`;
    return this.peers[id];
  }

  /** Serves RPC `method` to authenticated peers (replacing an earlier handler). See Transport.callRpc for the errors. */
  serveRpc(method: string, handler: RpcHandler): void {
    this.transport.serveRpc(method, handler);
  }

  /**
   * Calls `method` on node `to` at `opts.addr`, or at its known peer address,
   * on a connection of its own, within `opts.timeoutMs`. `to` need not be a
   * member (a joining node is called by explicit address). Rejects with
   * ErrTimeout (no reply in time, unreachable, refused, or no address known),
   * the handler's SealError code, ErrBadRequest (unknown method), or a plain
   * Error for any other handler failure.
   */
  async callRpc(to: NodeId, method: string, body: unknown, opts: { addr?: string; timeoutMs: number }): Promise<unknown> {
    this.assertRunning();
    const addr = opts.addr ?? this.peerAddress(to);
    if (addr === undefined) throw sealError('ErrTimeout', `rpc ${method} to node ${to}: no address known for it (unreachable)`);
    return this.transport.callRpc(to, addr, method, body, opts.timeoutMs);
  }

  /**
   * Memory the node holds on behalf of its log and peers: read-cache bytes,
   * and per peer the messages and bytes queued for sending. All are capped.
   */
  memoryStats(): { logCacheBytes: number; queued: Record<number, { messages: number; bytes: number }> } {
    const queued: Record<number, { messages: number; bytes: number }> = {};
    for (const id of Object.keys(this.peers)) queued[Number(id)] = this.transport.queued(Number(id));
    return { logCacheBytes: this.log.cacheUsage, queued };
  }

  /** The log's first retained index, last index, and the index of its snapshot (the compaction point). */
  logBounds(): { firstIndex: number; lastIndex: number; snapshotIndex: number } {
    return { firstIndex: this.log.firstIndex(), lastIndex: this.log.lastIndex(), snapshotIndex: this.log.snapshot().index };
  }

  /**
   * The index of the last normal entry still in this node's log whose
   * payload satisfies `match`; null when none. For operator checks, not the
   * data path: reads the log in slices and yields between them. Entries
   * compacted meanwhile are gone, so they are not reported.
   */
  async lastLogEntryWhere(match: (payload: Uint8Array) => boolean): Promise<number | null> {
    let found: number | null = null;
    let lo = this.log.firstIndex();
    for (;;) {
      this.assertRunning();
      lo = Math.max(lo, this.log.firstIndex());
      const hi = this.log.lastIndex() + 1;
      if (lo >= hi) return found;
      const slice = this.log.entries(lo, hi, 4 * 1024 * 1024);
      for (const e of slice) if (e.type === 'normal' && e.data.length > 0 && match(decodeProposal(e.data).payload)) found = e.index;
      lo += slice.length;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The error the node halted with, if it did. */
  get halted(): Error | undefined {
    return this.haltError;
  }

  /** Index of the last committed entry this node has applied. */
  appliedIndex(): number {
    return this.applied;
  }

  /**
   * Proposes `payload` and resolves with the state machine's result once it
   * is applied on this node. Rejects with ErrNotLeader (when `requireLeader`
   * and this node is not the leader), ErrProposalDropped (no leader known, or
   * the entry was overwritten before commit: retry) or ErrTimeout (the
   * outcome is unknown: it may still be applied).
   */
  async propose(payload: Uint8Array, opts: { timeoutMs?: number; requireLeader?: boolean; proposalId?: bigint } = {}): Promise<unknown> {
    this.assertRunning();
    if (opts.requireLeader === true && !this.node.isLeader()) {
      throw sealError('ErrNotLeader', `node ${this.id} is not the leader (leader: ${this.leader})`);
    }
    // A caller retrying a dropped or timed-out proposal passes its id again, so the state machine applies it once.
    const id = opts.proposalId ?? this.newProposalId();
    const data = this.opts.wrapProposal === undefined ? payload : this.opts.wrapProposal(payload);
    return this.track(id, opts.timeoutMs, () => {
      // A follower's proposal is forwarded as MsgProp; the leader admits it on arrival (onMessage).
      if (this.node.isLeader()) {
        const refused = this.opts.admitProposal?.(data);
        if (refused !== undefined) throw refused;
      } else {
        this.pending.get(id)!.forwarded = true;
      }
      this.node.propose(encodeProposal(id, data));
    });
  }

  /** Adds a voter (or promotes a learner) at `addr`; resolves with the new membership once applied here. */
  addVoter(id: NodeId, addr: string): Promise<ConfState> {
    return this.changeMembership({ type: 'addNode', nodeId: id }, addr);
  }

  addLearner(id: NodeId, addr: string): Promise<ConfState> {
    return this.changeMembership({ type: 'addLearnerNode', nodeId: id }, addr);
  }

  removeNode(id: NodeId): Promise<ConfState> {
    return this.changeMembership({ type: 'removeNode', nodeId: id }, '');
  }

  /** Changes where this node reaches peer `id` (a member that moved); kept across restarts. */
  setPeerAddress(id: NodeId, addr: string): void {
    this.assertRunning();
    if (id === this.id) return;
    this.transport.setPeer(id, addr);
    this.peers[id] = addr;
    this.savePeers();
  }

  /** Asks the leader to hand leadership to `to`. */
  transferLeadership(to: NodeId): void {
    this.assertRunning();
    this.node.transferLeader(to);
    this.kick();
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves with an index once this
   * node has applied everything committed when the read was issued; reading
   * the state machine afterwards is linearizable.
   */
  async readIndex(timeoutMs?: number): Promise<number> {
    this.assertRunning();
    const ctx = crypto.randomBytes(16);
    const key = ctx.toString('hex');
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(key);
        reject(sealError('ErrTimeout', `read index on node ${this.id} timed out`));
      }, timeoutMs ?? this.opts.proposalTimeoutMs ?? 10_000);
      this.reads.set(key, { resolve, reject, timer });
      try {
        this.node.readIndex(ctx);
      } catch (e) {
        clearTimeout(timer);
        this.reads.delete(key);
        reject(e as Error);
        return;
      }
      this.kick();
    });
  }

  /** Reads `fn()` linearizably (after a ReadIndex barrier). */
  async linearizableRead<T>(fn: () => T | Promise<T>, timeoutMs?: number): Promise<T> {
    await this.readIndex(timeoutMs);
    return fn();
  }

  /** Stops the loop, the timer and the transport and closes the log. Pending calls reject with ErrRaftStopped. */
  async stop(): Promise<void> {
    if (this.stopped) {
      await this.loopDone;
      return;
    }
    this.stopped = true;
    this.refusals.close();
    clearInterval(this.tickTimer);
    this.kick();
    await this.loopDone.catch(() => undefined);
    await this.transport.stop();
    await this.log.close();
    const err = sealError('ErrRaftStopped', `node ${this.id} stopped`, this.haltError);
    this.failAll(err);
    for (const s of this.incoming.splice(0)) s.abandon(err);
  }

  // ---- inputs ----

  private onMessage(m: Message): void {
    // A snapshot is taken only with its data, from the snapshot stream.
    if (this.stopped || m.type === 'MsgSnap') return;
    if (m.type === 'MsgProp' && this.opts.admitProposal !== undefined && this.node.isLeader()) {
      // Forwarded proposals: the refused ones never enter the log; the proposer hears why by a notice.
      const entries = m.entries.filter((e) => this.admitForwarded(e, m.from));
      if (entries.length === 0) return;
      m = { ...m, entries };
    }
    try {
      this.node.step(m);
    } catch (err) {
      // The core refuses a message its durable state cannot have produced —
      // e.g. a leader's commit index past this log's end, when the log was
      // truncated or the data dir restored from an older copy. Stop cleanly.
      void this.halt(sealError('ErrRaftLogCorrupt', `node ${this.id}: ${(err as Error).message}; was this node's data dir restored from an older copy or its log truncated?`, err));
      return;
    }
    this.kick();
  }

  private admitForwarded(e: Entry, from: NodeId): boolean {
    if (e.type !== 'normal') return true;
    let proposal: { id: bigint; payload: Uint8Array };
    try {
      proposal = decodeProposal(e.data);
    } catch {
      return false;
    }
    const refused = this.opts.admitProposal!(proposal.payload);
    if (refused === undefined) return true;
    this.refusals.add(from, refusal(proposal.id, refused));
    return false;
  }

  /** A leader refused proposals this node forwarded: they fail now with its error. Unknown ids are ignored. */
  private onProposalsRefused(body: unknown, from: NodeId): { rejected: number } {
    let rejected = 0;
    for (const { id, err } of parseRefusals(body, from)) {
      if (this.pending.get(id)?.forwarded !== true) continue;
      this.rejectPending(id, err);
      rejected++;
    }
    return { rejected };
  }

  /** A snapshot streamed in: the loop steps it and, if the core takes it, restores from the file before the promise settles. */
  private onSnapshot(m: Message, file: string): Promise<void> {
    if (this.stopped) return Promise.reject(sealError('ErrRaftStopped', 'node stopped'));
    return new Promise<void>((resolve, reject) => {
      this.incoming.push({ m, file, done: resolve, abandon: reject });
      this.kick();
    });
  }

  private kick(): void {
    this.kicked = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private assertRunning(): void {
    if (this.stopped) throw sealError('ErrRaftStopped', `node ${this.id} is stopped`, this.haltError);
  }

  private newProposalId(): bigint {
    this.nextProposalId = (this.nextProposalId + 1n) & ((1n << 64n) - 1n);
    return this.nextProposalId;
  }

  private track(id: bigint, timeoutMs: number | undefined, submit: () => void): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.dropPending(id);
        reject(sealError('ErrTimeout', `proposal on node ${this.id} timed out; it may still be applied`));
      }, timeoutMs ?? this.opts.proposalTimeoutMs ?? 10_000);
      this.pending.set(id, { resolve, reject, timer });
      try {
        submit();
      } catch (e) {
        this.dropPending(id);
        clearTimeout(timer);
        reject(e as Error);
        return;
      }
      this.kick();
    });
  }

  private async changeMembership(cc: ConfChange, addr: string): Promise<ConfState> {
    this.assertRunning();
    const id = this.newProposalId();
    cc.context = encodeConfContext(id, addr);
    return (await this.track(id, undefined, () => this.node.proposeConfChange(cc))) as ConfState;
  }

  private dropPending(id: bigint): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (p.index !== undefined && this.pendingByIndex.get(p.index) === id) this.pendingByIndex.delete(p.index);
  }

  private failAll(err: Error): void {
    for (const [id, p] of [...this.pending]) {
      this.dropPending(id);
      p.reject(err);
    }
    for (const [key, r] of [...this.reads]) {
      this.reads.delete(key);
      clearTimeout(r.timer);
      r.reject(err);
    }
  }

  // ---- the loop ----

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const snap = this.incoming.shift();
      if (snap !== undefined) {
        await this.takeSnapshot(snap);
        continue;
      }
      if (!this.node.hasReady()) {
        if (!this.kicked) await new Promise<void>((r) => (this.wake = r));
        this.kicked = false;
        continue;
      }
      this.kicked = false;
      try {
        await this.handleReady(this.node.ready());
      } catch (e) {
        await this.halt(e as Error);
        return;
      }
    }
  }

  private async takeSnapshot(s: IncomingSnapshot): Promise<void> {
    try {
      this.snapshotFiles.set(s.m.snapshot!.index, s.file);
      this.node.step(s.m);
      // A snapshot the core takes comes back in the very next Ready.
      if (this.node.hasReady()) await this.handleReady(this.node.ready());
      s.done();
    } catch (e) {
      // The core took the snapshot's metadata already: there is no going back.
      s.abandon(e as Error);
      await this.halt(e as Error);
    } finally {
      this.snapshotFiles.clear();
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState !== undefined) {
      this.role = rd.softState.role;
      this.leader = rd.softState.lead;
    }
    if (rd.snapshot !== undefined) await this.restoreSnapshot(rd.snapshot);
    // A leader's appends may go out while it fsyncs its own copy: the core
    // counts that copy towards commit only after advance() (src/raft/README.md).
    // Every other message waits for the fsync.
    const early = this.role === 'leader' ? rd.messages.filter((m) => m.type === 'MsgApp') : [];
    if (early.length > 0) this.sendMessages(early);
    if (rd.snapshot !== undefined || rd.entries.length > 0 || rd.hardState !== undefined) {
      await this.log.save({ snapshot: rd.snapshot, entries: rd.entries, hardState: rd.hardState }, rd.mustSync);
    }
    if (rd.entries.length > 0) this.opts.onLogEntries?.(rd.entries.map(logEntryInfo));
    this.noteEntries(rd.entries);
    this.sendMessages(early.length > 0 ? rd.messages.filter((m) => m.type !== 'MsgApp') : rd.messages);
    const complete = await this.applyEntries(rd.committedEntries);
    if (!complete) return;
    for (const rs of rd.readStates) {
      const r = this.reads.get(Buffer.from(rs.requestCtx).toString('hex'));
      if (r !== undefined) r.index = rs.index;
    }
    this.serveReads();
    this.node.advance(rd);
    await this.maybeCompact();
  }

  private async restoreSnapshot(meta: SnapshotMeta): Promise<void> {
    const file = this.snapshotFiles.get(meta.index);
    if (file === undefined) throw new Error(`raft ${this.id}: core installed snapshot ${meta.index} with no data at hand`);
    await this.sm.restore(fs.createReadStream(file));
    this.smApplied = this.sm.appliedIndex();
    if (this.smApplied < meta.index) {
      throw sealError('ErrSnapshotCorrupt', `snapshot for index ${meta.index} restored a state at ${this.smApplied}`);
    }
    this.applied = meta.index;
    this.confHistory = [];
  }

  /** At start: hands onLogEntries every entry in the log from index `lo` on (committed or not), in one call. */
  private reportLogTail(lo: number): void {
    const report = this.opts.onLogEntries;
    if (report === undefined) return;
    const out: LogEntryInfo[] = [];
    const hi = this.log.lastIndex() + 1;
    for (let i = lo; i < hi; ) {
      const slice = this.log.entries(i, hi, 16 * 1024 * 1024);
      for (const e of slice) out.push(logEntryInfo(e));
      i += slice.length;
    }
    report(out);
  }

  /** Remembers where this node's own proposals landed; one overwritten before commit is dropped. */
  private noteEntries(entries: Entry[]): void {
    for (const e of entries) {
      const was = this.pendingByIndex.get(e.index);
      const id = e.type === 'normal' && e.data.length > 0 ? decodeProposal(e.data).id : undefined;
      if (was !== undefined && was !== id) this.rejectPending(was, sealError('ErrProposalDropped', `entry ${e.index} was replaced before commit`));
      const p = id === undefined ? undefined : this.pending.get(id);
      if (p !== undefined && id !== undefined) {
        p.index = e.index;
        this.pendingByIndex.set(e.index, id);
      }
    }
  }

  private rejectPending(id: bigint, err: SealError): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.dropPending(id);
    p.reject(err);
  }

  private resolvePending(id: bigint, value: unknown): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.dropPending(id);
    p.resolve(value);
  }

  private sendMessages(msgs: Message[]): void {
    const plain: Message[] = [];
    for (const m of msgs) {
      if (m.type === 'MsgSnap') void this.sendSnapshot(m);
      else plain.push(m);
    }
    if (plain.length > 0) this.transport.send(plain);
  }

  private async sendSnapshot(m: Message): Promise<void> {
    if (this.sendingSnapshotTo.has(m.to)) return;
    this.sendingSnapshotTo.add(m.to);
    let ok = false;
    try {
      ok = await this.transport.sendSnapshot(m, this.sm.snapshot());
    } catch {
      ok = false;
    } finally {
      this.sendingSnapshotTo.delete(m.to);
    }
    if (this.stopped) return;
    this.node.reportSnapshot(m.to, ok);
    this.kick();
  }

  /**
   * Applies committed entries; false when the node halted part way (the
   * failing entry and those after it stay unapplied).
   */
  private async applyEntries(entries: Entry[]): Promise<boolean> {
    let batch: ApplyEntry[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const todo = batch;
      batch = [];
      const results = await this.sm.apply(todo);
      this.smApplied = todo[todo.length - 1]!.index;
      for (let i = 0; i < todo.length; i++) this.resolvePending(todo[i]!.proposalId, results[i]);
    };
    for (const e of entries) {
      try {
        if (e.type === 'confChange') {
          await flush();
          this.applyConfChange(e);
        } else if (e.data.length > 0) {
          const { id, payload } = decodeProposal(e.data);
          const owner = this.pendingByIndex.get(e.index);
          if (owner !== undefined && owner !== id) {
            this.rejectPending(owner, sealError('ErrProposalDropped', `entry ${e.index} committed another proposal`));
          }
          if (e.index > this.smApplied) {
            const hook = this.opts.applyHook;
            let p = payload;
            if (hook !== undefined) {
              try {
                p = await hook({ index: e.index, term: e.term }, payload);
              } catch (err) {
                // An earlier entry of this batch may bring what opening this one needs (a
                // rotation brings the DEK the next entries are sealed under): apply the
                // batch so far and try once more; a second failure halts.
                if (batch.length === 0) throw err;
                await flush();
                p = await hook({ index: e.index, term: e.term }, payload);
              }
            }
            batch.push({ index: e.index, term: e.term, payload: p, proposalId: id });
          }
        }
      } catch (err) {
        // Apply what precedes the failing entry, then stop without advancing past it.
        await flush();
        await this.halt(err as Error);
        return false;
      }
      this.applied = e.index;
    }
    try {
      await flush();
    } catch (err) {
      await this.halt(err as Error);
      return false;
    }
    return true;
  }

  private applyConfChange(e: Entry): void {
    const cc = decodeConfChange(e.data);
    const confState = this.node.applyConfChange(cc);
    this.confHistory.push({ index: e.index, confState });
    const ctx = decodeConfContext(cc.context);
    if (cc.type === 'removeNode') {
      delete this.peers[cc.nodeId];
      this.transport.removePeer(cc.nodeId);
    } else if (ctx !== undefined && ctx.addr !== '' && cc.nodeId !== this.id) {
      this.peers[cc.nodeId] = ctx.addr;
      this.transport.setPeer(cc.nodeId, ctx.addr);
    }
    this.savePeers();
    if (ctx !== undefined) this.resolvePending(ctx.id, confState);
  }

  private serveReads(): void {
    for (const [key, r] of this.reads) {
      if (r.index !== undefined && r.index <= this.applied) {
        this.reads.delete(key);
        clearTimeout(r.timer);
        r.resolve(r.index);
      }
    }
  }

  private async maybeCompact(): Promise<void> {
    const snap = this.log.snapshot();
    const every = this.opts.snapshotEntries ?? 10_000;
    const retain = this.opts.compactionRetain ?? 1000;
    if (this.applied - snap.index < every + retain) return;
    const durable = Math.min(this.applied, this.smApplied, this.sm.durableIndex?.() ?? this.smApplied);
    if (this.sm.persist !== undefined) {
      await this.sm.persist();
      if (this.stopped) return;
    }
    const to = Math.min(durable, this.applied - retain);
    if (to <= snap.index) return;
    await this.log.compact(to, this.confStateAt(to, snap));
    this.confHistory = this.confHistory.filter((c) => c.index > to);
  }

  private confStateAt(index: number, snap: SnapshotMeta): ConfState {
    let cs = snap.confState;
    for (const c of this.confHistory) if (c.index <= index) cs = c.confState;
    return cs;
  }

  private async halt(err: Error): Promise<void> {
    if (this.haltError !== undefined || this.stopped) return;
    this.haltError = err;
    const halted = isSealError(err) ? err : sealError('ErrRaftStopped', `node ${this.id} halted: ${err.message}`, err);
    void this.stop().then(() => this.opts.onHalt?.(halted));
  }

  // ---- peer address book ----

  private async loadPeers(): Promise<Record<number, string>> {
    try {
      return JSON.parse(await fsp.readFile(path.join(this.opts.dir, 'peers.json'), 'utf8')) as Record<number, string>;
    } catch {
      return {};
    }
  }

  /** Written with fsync and an atomic rename: a restart must find every member it applied. */
  private savePeers(): void {
    writeFileDurablySync(path.join(this.opts.dir, 'peers.json'), JSON.stringify(this.peers));
  }
}
