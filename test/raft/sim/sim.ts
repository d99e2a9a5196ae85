// Deterministic simulation of a Raft cluster: N RawNodes in one process on a
// seeded network and clock. The seed decides everything — fault rates,
// partitions, crashes (dropping whatever the node had not persisted),
// restarts, membership changes, compaction, client operations — so a failing
// seed replays exactly (RAFT_SIM_SEED=n).
//
// Each simulated tick: faults and client actions, a tick of every live node,
// then message delivery in random order (delays of 0..maxDelay ticks),
// running a Ready cycle after every step and checking the invariants
// (checker.ts) after every Ready. At the end the network heals, crashed
// nodes restart, and the run must converge: every member applies the same
// entries, every acknowledged proposal is present, and the client history
// is linearizable.

import {
  MemoryStorage,
  RawNode,
  decodeConfChange,
  decodeProposal,
  encodeProposal,
  seededRandom,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
} from '../../../src/raft/index.js';
import { checkKvHistory, describeKvHistory, type KvOperation } from '../../support/linearizability.js';
import { InvariantViolation, SafetyChecker } from './checker.js';
import { RegisterMachine, encodeRegisterOp, type RegisterOp } from './register.js';

export interface SimOptions {
  seed: number;
  initialVoters: number;
  ticks: number;
  lossRate: number;
  dupRate: number;
  maxDelay: number;
  /** Share of messages held back 10..40 ticks (very stale arrivals). */
  longDelayRate: number;
  /** Per node and tick: chance a node's clock skips the tick (clock drift). */
  skipTickRate: number;
  /** Per tick: chance a partition starts (when none is active). */
  partitionRate: number;
  /** Per tick: chance a live node crashes. */
  crashRate: number;
  /** Per Ready: chance the node crashes before persisting it (keeping a random prefix of its entries). */
  crashInReadyRate: number;
  /** Per tick: chance the leader proposes a membership change. */
  confChangeRate: number;
  transferRate: number;
  /** Applied entries beyond the snapshot before a node compacts. */
  compactEvery: number;
  clients: number;
  keys: number;
  maxSizePerMsg: number;
  maxInflight: number;
  /**
   * The state machine survives a crash with its applied index (as the store
   * does, SPEC §6), and a commit index written without fsync may be lost;
   * otherwise the state machine restarts from the snapshot.
   */
  durableFsm: boolean;
  /** Safety must not depend on these (liveness and disruption do). */
  checkQuorum: boolean;
  preVote: boolean;
}

/** Draws a run's options from its seed (wide ranges: each seed is a different scenario). */
export function optionsForSeed(seed: number): SimOptions {
  const r = seededRandom(seed ^ 0x5eed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  return {
    seed,
    initialVoters: pick([1, 3, 3, 3, 5]),
    ticks: 200,
    lossRate: pick([0, 0.01, 0.05, 0.15]),
    dupRate: pick([0, 0.02, 0.1]),
    maxDelay: pick([0, 1, 2, 4]),
    longDelayRate: pick([0, 0, 0.002, 0.01]),
    skipTickRate: pick([0, 0, 0.1, 0.3]),
    partitionRate: pick([0, 0.01, 0.03]),
    crashRate: pick([0, 0.005, 0.02]),
    crashInReadyRate: pick([0, 0.002, 0.01]),
    confChangeRate: pick([0, 0.02, 0.05]),
    transferRate: pick([0, 0.01]),
    compactEvery: pick([5, 20, 1000]),
    clients: pick([2, 3]),
    keys: pick([1, 2, 3]),
    maxSizePerMsg: pick([1, 200, 1 << 20]),
    maxInflight: pick([1, 4, 64]),
    durableFsm: pick([false, true]),
    checkQuorum: pick([true, true, false]),
    preVote: pick([true, true, false]),
  };
}

interface SimNode {
  id: NodeId;
  storage: MemoryStorage;
  rn: RawNode | undefined; // undefined while crashed
  fsm: RegisterMachine;
  /** Index the state machine has applied (durably, with durableFsm). */
  fsmApplied: number;
  /** Commit index as of the last fsynced write. */
  syncedCommit: number;
  confState: ConfState;
  downUntil: number;
  lastLeaderTerm: number;
}

interface InFlight {
  due: number;
  m: Message;
}

interface PendingWrite {
  kind: 'write';
  client: number;
  id: bigint;
  op: RegisterOp;
  node: NodeId;
  hist: KvOperation;
  deadline: number;
  retryAt: number;
}

interface PendingRead {
  kind: 'read';
  client: number;
  ctx: Uint8Array;
  key: string;
  node: NodeId;
  readIndex: number | undefined;
  hist: KvOperation;
  deadline: number;
}

export interface SimStats {
  seed: number;
  messages: number;
  elections: number;
  crashes: number;
  confChanges: number;
  snapshotsSent: number;
  acked: number;
  reads: number;
  finalCommit: number;
}

export class SimulationFailure extends Error {
  override name = 'SimulationFailure';
}

const ELECTION_TICK = 10;
const HEARTBEAT_TICK = 2;

export class Simulation {
  private readonly rand: () => number;
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly checker = new SafetyChecker();
  /** Snapshot data by snapshot index (identical on every node, by state machine safety). */
  private readonly snapshots = new Map<number, RegisterMachine>();
  private inflight: InFlight[] = [];
  private now = 0;
  /** Real-time order of client events (history timestamps). */
  private clock = 0;
  private nextNodeId: number;
  private nextProposalId = 1n;
  private nextReadCtx = 1;
  /** Messages from group a to group b are lost; one-way when `oneWay`. */
  private partition: { groups: Map<NodeId, number>; oneWay: boolean; until: number } | undefined;
  private faultsOn = true;
  private readonly pending = new Map<number, PendingWrite | PendingRead>();
  private readonly history: KvOperation[] = [];
  private readonly acked = new Set<bigint>();
  readonly stats: SimStats;

  constructor(readonly opts: SimOptions) {
    this.rand = seededRandom(opts.seed);
    const voters = Array.from({ length: opts.initialVoters }, (_, i) => i + 1);
    this.nextNodeId = voters.length + 1;
    this.snapshots.set(1, new RegisterMachine());
    for (const id of voters) this.startNode(id, MemoryStorage.bootstrap({ voters, learners: [] }));
    this.stats = { seed: opts.seed, messages: 0, elections: 0, crashes: 0, confChanges: 0, snapshotsSent: 0, acked: 0, reads: 0, finalCommit: 0 };
  }

  private chance(p: number): boolean {
    return p > 0 && this.rand() < p;
  }

  private int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  private fail(msg: string): never {
    throw new SimulationFailure(`seed ${this.opts.seed} tick ${this.now}: ${msg}`);
  }

  // ---- node lifecycle --------------------------------------------------------

  private startNode(id: NodeId, storage: MemoryStorage): SimNode {
    const snap = storage.snapshot();
    const data = this.snapshots.get(snap.index);
    if (snap.index > 0 && data === undefined) this.fail(`no snapshot data for index ${snap.index}`);
    const existing = this.nodes.get(id);
    const node: SimNode = existing ?? {
      id,
      storage,
      rn: undefined,
      fsm: new RegisterMachine(),
      fsmApplied: 0,
      syncedCommit: 0,
      confState: { voters: [], learners: [] },
      downUntil: 0,
      lastLeaderTerm: 0,
    };
    const keepFsm = existing !== undefined && this.opts.durableFsm;
    if (!keepFsm) {
      // A volatile state machine restarts from the snapshot and the log replays.
      node.fsm = data?.clone() ?? new RegisterMachine();
      node.fsmApplied = snap.index;
      node.confState = storage.initialState().confState;
    }
    node.rn = new RawNode({
      id,
      storage,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      applied: node.fsmApplied,
      maxSizePerMsg: this.opts.maxSizePerMsg,
      maxInflightMsgs: this.opts.maxInflight,
      checkQuorum: this.opts.checkQuorum,
      preVote: this.opts.preVote,
      rand: (n) => this.int(n),
    });
    this.nodes.set(id, node);
    if (keepFsm) {
      // The core rebuilt the membership from the snapshot and the log up to applied.
      const got = node.rn.confState();
      const want = node.confState;
      const same = (a: number[], b: number[]): boolean => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
      if (!same(got.voters, want.voters) || !same(got.learners, want.learners)) {
        this.fail(`node ${id} restarted with membership ${JSON.stringify(got)}, applied ${JSON.stringify(want)}`);
      }
    }
    return node;
  }

  private crash(node: SimNode): void {
    node.rn = undefined;
    if (this.opts.durableFsm && this.chance(0.5)) {
      // The commit index written since the last fsync is lost.
      const hs = node.storage.initialState().hardState;
      node.storage.setHardState({ ...hs, commit: Math.min(hs.commit, node.syncedCommit) });
    }
    node.downUntil = this.now + 5 + this.int(40);
    this.stats.crashes++;
  }

  // ---- network ---------------------------------------------------------------

  private reachable(from: NodeId, to: NodeId): boolean {
    if (this.partition === undefined) return true;
    const a = this.partition.groups.get(from) ?? 0;
    const b = this.partition.groups.get(to) ?? 0;
    return this.partition.oneWay ? !(a === 0 && b === 1) : a === b;
  }

  private sendAll(msgs: Message[]): void {
    for (const m of msgs) {
      this.stats.messages++;
      if (this.faultsOn && this.chance(this.opts.lossRate)) {
        this.dropped(m);
        continue;
      }
      const long = this.faultsOn && this.chance(this.opts.longDelayRate);
      this.inflight.push({ due: this.now + (long ? 10 + this.int(30) : this.int(this.opts.maxDelay + 1)), m });
      if (this.faultsOn && this.chance(this.opts.dupRate)) {
        this.inflight.push({ due: this.now + this.int(this.opts.maxDelay + 2), m });
      }
    }
  }

  /** A lost MsgSnap is a failed stream: its sender hears about it, as from the real transport. */
  private dropped(m: Message): void {
    if (m.type !== 'MsgSnap') return;
    this.nodes.get(m.from)?.rn?.reportSnapshot(m.to, false);
  }

  private deliver(f: InFlight): void {
    const m = f.m;
    const to = this.nodes.get(m.to);
    if (to?.rn === undefined || !this.reachable(m.from, m.to)) {
      this.dropped(m);
      return;
    }
    if (m.type === 'MsgSnap') this.stats.snapshotsSent++;
    to.rn.step(m);
    this.handleReady(to);
    if (m.type === 'MsgSnap') {
      const from = this.nodes.get(m.from);
      if (from?.rn !== undefined) {
        from.rn.reportSnapshot(m.to, true);
        this.handleReady(from);
      }
    }
  }

  private deliverDue(): void {
    for (let round = 0; round < 100; round++) {
      const due: InFlight[] = [];
      const later: InFlight[] = [];
      for (const f of this.inflight) (f.due <= this.now ? due : later).push(f);
      if (due.length === 0) return;
      this.inflight = later;
      // Fisher-Yates: messages due together arrive in any order.
      for (let i = due.length - 1; i > 0; i--) {
        const j = this.int(i + 1);
        [due[i], due[j]] = [due[j]!, due[i]!];
      }
      for (const f of due) this.deliver(f);
    }
  }

  // ---- Ready cycle -----------------------------------------------------------

  private handleReady(node: SimNode): void {
    for (let guard = 0; guard < 100; guard++) {
      const rn = node.rn;
      if (rn === undefined) return;
      this.checkLeader(node, rn);
      if (!rn.hasReady()) return;
      const rd = rn.ready();
      if (this.faultsOn && this.chance(this.opts.crashInReadyRate)) {
        this.crashInReady(node, rd);
        return;
      }
      this.checker.onAppend(node.id, rd.entries, rn);
      this.checker.onCursors(node.id, rn);
      this.checker.onCommitted(node.id, rn);
      this.persist(node, rd, rd.entries.length);
      this.sendAll(rd.messages);
      if (rd.snapshot !== undefined) this.installSnapshot(node, rd.snapshot.index, rd.snapshot.term);
      for (const e of rd.committedEntries) this.apply(node, rn, e);
      rn.advance(rd);
      this.serveReads(node);
      for (const rs of rd.readStates) this.onReadState(node, rs.requestCtx, rs.index);
      this.serveReads(node);
      this.maybeCompact(node);
    }
    this.fail(`node ${node.id}: Ready never drained`);
  }

  private persist(node: SimNode, rd: Ready, nEntries: number): void {
    if (rd.snapshot !== undefined) node.storage.applySnapshot(rd.snapshot);
    node.storage.append(rd.entries.slice(0, nEntries));
    // Entries go to disk before the hard state record: a torn write keeps a
    // prefix of the entries and loses the hard state.
    if (nEntries === rd.entries.length && rd.hardState !== undefined) node.storage.setHardState(rd.hardState);
    if (nEntries === rd.entries.length && rd.mustSync) node.syncedCommit = node.storage.initialState().hardState.commit;
  }

  private crashInReady(node: SimNode, rd: Ready): void {
    // Nothing of this Ready was fsynced: keep a random prefix of its entries
    // (what happened to reach the disk), send nothing, apply nothing.
    const keep = rd.snapshot === undefined ? this.int(rd.entries.length + 1) : 0;
    if (rd.snapshot === undefined) this.persist(node, { ...rd, hardState: undefined }, keep);
    this.crash(node);
  }

  private installSnapshot(node: SimNode, index: number, term: number): void {
    this.checker.onSnapshot(node.id, index, term);
    const data = this.snapshots.get(index);
    if (data === undefined) this.fail(`node ${node.id}: snapshot ${index} has no data`);
    node.fsm = data.clone();
    node.fsmApplied = index;
    node.confState = node.storage.snapshot().confState;
  }

  private apply(node: SimNode, rn: RawNode, e: Entry): void {
    this.checker.onApply(node.id, e);
    node.fsmApplied = e.index;
    if (e.type === 'confChange') {
      node.confState = rn.applyConfChange(decodeConfChange(e.data));
      return;
    }
    if (e.data.length === 0) return; // a new leader's no-op
    const { id, payload } = decodeProposal(e.data);
    node.fsm.apply(id, payload);
    for (const [c, p] of this.pending) {
      if (p.kind === 'write' && p.id === id && p.node === node.id) {
        p.hist.ret = ++this.clock;
        p.hist.output = null;
        this.acked.add(id);
        this.stats.acked++;
        this.pending.delete(c);
      }
    }
  }

  private maybeCompact(node: SimNode): void {
    const applied = node.rn!.raft.log.applied;
    const snapIndex = node.storage.snapshot().index;
    if (applied - snapIndex < this.opts.compactEvery) return;
    const existing = this.snapshots.get(applied);
    if (existing !== undefined && !existing.equals(node.fsm)) {
      throw new InvariantViolation(`state machine safety: node ${node.id} state at ${applied} differs from another node's`);
    }
    if (existing === undefined) this.snapshots.set(applied, node.fsm.clone());
    node.storage.createSnapshot(applied, node.confState);
    node.storage.compact(Math.max(snapIndex, applied - this.int(4)));
  }

  private checkLeader(node: SimNode, rn: RawNode): void {
    if (rn.raft.state !== 'leader') return;
    this.checker.onLeader(node.id, rn.raft.term);
    if (node.lastLeaderTerm !== rn.raft.term) {
      node.lastLeaderTerm = rn.raft.term;
      this.stats.elections++;
      this.checker.onBecomeLeader(node.id, rn);
    }
  }

  // ---- clients -----------------------------------------------------------------

  private liveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.rn !== undefined);
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.rn?.raft.state === 'leader' && (best === undefined || n.rn.raft.term > best.rn!.raft.term)) best = n;
    }
    return best;
  }

  private chooseNode(): SimNode | undefined {
    // Any node that believes it leads: a deposed leader that has not noticed
    // yet is exactly where stale reads would come from.
    const leaders = this.liveNodes().filter((n) => n.rn!.raft.state === 'leader');
    if (leaders.length > 0 && this.chance(0.7)) return leaders[this.int(leaders.length)];
    const live = this.liveNodes();
    return live.length === 0 ? undefined : live[this.int(live.length)];
  }

  private clientActions(): void {
    for (let c = 0; c < this.opts.clients; c++) {
      const p = this.pending.get(c);
      if (p === undefined) {
        if (this.faultsOn && this.chance(0.3)) this.startOp(c);
        continue;
      }
      if (this.now >= p.deadline) {
        // Outcome unknown: a write may still take effect later; a read tells nothing.
        if (p.kind === 'read') this.history.splice(this.history.indexOf(p.hist), 1);
        this.pending.delete(c);
        continue;
      }
      if (p.kind === 'write' && this.now >= p.retryAt) this.submitWrite(p);
    }
  }

  private startOp(c: number): void {
    const key = `k${this.int(this.opts.keys)}`;
    const r = this.rand();
    const deadline = this.now + 30 + this.int(30);
    if (r < 0.45) {
      const node = this.chooseNode();
      if (node === undefined) return;
      const ctx = new TextEncoder().encode(`read-${this.nextReadCtx++}`);
      const hist: KvOperation = { input: { kind: 'get', key }, output: undefined, call: ++this.clock, ret: Infinity, client: c };
      try {
        node.rn!.readIndex(ctx);
      } catch {
        return; // dropped at once: never happened
      }
      this.history.push(hist);
      this.pending.set(c, { kind: 'read', client: c, ctx, key, node: node.id, readIndex: undefined, hist, deadline });
      this.handleReady(node);
      return;
    }
    const op: RegisterOp = r < 0.85 ? { op: 'put', key, value: `v${this.clock}` } : { op: 'delete', key };
    const hist: KvOperation = {
      input: op.op === 'put' ? { kind: 'put', key, value: op.value } : { kind: 'delete', key },
      output: undefined,
      call: ++this.clock,
      ret: Infinity,
      client: c,
    };
    const w: PendingWrite = { kind: 'write', client: c, id: this.nextProposalId++, op, node: 0, hist, deadline, retryAt: 0 };
    this.history.push(hist);
    this.pending.set(c, w);
    this.submitWrite(w);
  }

  /** Proposes (or re-proposes, same id) a write at some node. */
  private submitWrite(w: PendingWrite): void {
    w.retryAt = this.now + 8 + this.int(8);
    const node = this.chooseNode();
    if (node === undefined) return;
    w.node = node.id;
    try {
      node.rn!.propose(encodeProposal(w.id, encodeRegisterOp(w.op)));
    } catch {
      return;
    }
    this.handleReady(node);
  }

  private onReadState(node: SimNode, ctx: Uint8Array, index: number): void {
    for (const p of this.pending.values()) {
      if (p.kind === 'read' && p.node === node.id && Buffer.compare(p.ctx, ctx) === 0) p.readIndex = index;
    }
  }

  private serveReads(node: SimNode): void {
    const applied = node.rn?.raft.log.applied ?? 0;
    for (const [c, p] of this.pending) {
      if (p.kind !== 'read' || p.node !== node.id || p.readIndex === undefined || applied < p.readIndex) continue;
      p.hist.output = node.fsm.get(p.key) ?? null;
      p.hist.ret = ++this.clock;
      this.stats.reads++;
      this.pending.delete(c);
    }
  }

  // ---- faults and membership ---------------------------------------------------

  private faults(): void {
    if (this.partition !== undefined && this.now >= this.partition.until) this.partition = undefined;
    if (this.partition === undefined && this.chance(this.opts.partitionRate)) {
      const groups = new Map<NodeId, number>();
      for (const id of this.nodes.keys()) groups.set(id, this.int(2));
      this.partition = { groups, oneWay: this.chance(0.25), until: this.now + 10 + this.int(60) };
    }
    for (const n of this.nodes.values()) {
      if (n.rn === undefined) {
        if (this.now >= n.downUntil) this.startNode(n.id, n.storage);
      } else if (this.chance(this.opts.crashRate)) {
        this.crash(n);
      }
    }
    const l = this.leader();
    if (l === undefined) return;
    if (this.chance(this.opts.confChangeRate)) this.proposeConfChange(l);
    // (the leader may have crashed handling its Ready just now)
    if (l.rn !== undefined && this.chance(this.opts.transferRate)) {
      const voters = l.confState.voters.filter((v) => v !== l.id);
      if (voters.length > 0) {
        l.rn!.transferLeader(voters[this.int(voters.length)]!);
        this.handleReady(l);
      }
    }
  }

  private proposeConfChange(l: SimNode): void {
    const { voters, learners } = l.rn!.confState();
    const choices: ConfChange[] = [];
    if (voters.length + learners.length < 7) {
      choices.push({ type: 'addLearnerNode', nodeId: this.nextNodeId });
      choices.push({ type: 'addNode', nodeId: this.nextNodeId });
    }
    for (const id of learners) choices.push({ type: 'addNode', nodeId: id }, { type: 'removeNode', nodeId: id });
    if (voters.length > 3) for (const id of voters) choices.push({ type: 'removeNode', nodeId: id });
    if (choices.length === 0) return;
    const cc = choices[this.int(choices.length)]!;
    try {
      l.rn!.proposeConfChange(cc);
    } catch {
      return;
    }
    this.stats.confChanges++;
    if (cc.nodeId === this.nextNodeId) {
      this.nextNodeId++;
      this.startNode(cc.nodeId, new MemoryStorage());
    }
    this.handleReady(l);
  }

  // ---- main loop ---------------------------------------------------------------

  private step(): void {
    this.now++;
    if (this.faultsOn) this.faults();
    this.clientActions();
    for (const n of this.nodes.values()) {
      if (n.rn === undefined) continue;
      if (this.faultsOn && this.chance(this.opts.skipTickRate)) continue;
      n.rn.tick();
      this.handleReady(n);
    }
    this.deliverDue();
  }

  run(): SimStats {
    try {
      for (let t = 0; t < this.opts.ticks; t++) this.step();
      this.heal();
      for (let t = 0; t < 40 * ELECTION_TICK && !this.converged(); t++) this.step();
      this.checkFinal();
    } catch (err) {
      if (err instanceof InvariantViolation) this.fail(err.message);
      throw err;
    }
    return this.stats;
  }

  private heal(): void {
    this.faultsOn = false;
    this.partition = undefined;
    for (const n of this.nodes.values()) if (n.rn === undefined) this.startNode(n.id, n.storage);
  }

  /** Members of the final configuration, per the leader. */
  private members(): SimNode[] {
    const l = this.leader();
    if (l === undefined) return [];
    const { voters, learners } = l.rn!.confState();
    return [...voters, ...learners].map((id) => this.nodes.get(id)!);
  }

  private converged(): boolean {
    const l = this.leader();
    if (l === undefined || this.pending.size > 0) return false;
    const commit = l.rn!.raft.log.committed;
    if (l.rn!.raft.log.term(commit) !== l.rn!.raft.term) return false;
    return this.members().every((n) => n.rn!.raft.log.applied === commit && n.rn!.confState().voters.length > 0);
  }

  private checkFinal(): void {
    if (!this.converged()) {
      const st = [...this.nodes.values()].map((n) => `${n.id}:${n.rn?.raft.state}/t${n.rn?.raft.term}/a${n.rn?.raft.log.applied}/c${n.rn?.raft.log.committed}`);
      this.fail(`no convergence after healing (pending ${this.pending.size}): ${st.join(' ')}`);
    }
    const members = this.members();
    const ref = members[0]!.fsm;
    for (const n of members) {
      if (!n.fsm.equals(ref)) this.fail(`node ${n.id} state machine differs from node ${members[0]!.id}'s`);
      for (const id of this.acked) if (!n.fsm.seen.has(id)) this.fail(`acknowledged proposal ${id} missing on node ${n.id}`);
    }
    this.stats.finalCommit = this.leader()!.rn!.raft.log.committed;
    const lin = checkKvHistory(this.history);
    if (lin.result !== 'ok') {
      this.fail(`history not linearizable (${lin.result}) on key ${lin.key}:\n${describeKvHistory(lin.ops!)}`);
    }
  }
}

/** Runs one seed; throws SimulationFailure with the seed in its message. */
export function runSeed(seed: number, overrides: Partial<SimOptions> = {}): SimStats {
  return new Simulation({ ...optionsForSeed(seed), ...overrides }).run();
}
