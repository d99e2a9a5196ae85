// Scripted interaction tests of the Raft core on the in-process harness.

import { describe, expect, it } from 'vitest';
import { isSealError } from '../../../src/errors/index.js';
import { RawNode, MemoryStorage, seededRandInt, type Message, type NodeId } from '../../../src/raft/index.js';
import { Cluster, dec, enc } from './harness.js';

const isolate =
  (...ids: NodeId[]) =>
  (m: Message): boolean =>
    ids.includes(m.from) !== ids.includes(m.to);

function appliedData(c: Cluster, id: NodeId): string[] {
  return c.node(id).applied.map((e) => dec(e.data));
}

function expectDropped(f: () => void): void {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  expect(isSealError(caught, 'ErrProposalDropped')).toBe(true);
}

describe('election', () => {
  it('elects exactly one leader by timeout, one term after bootstrap', () => {
    const c = new Cluster([1, 2, 3]);
    for (let i = 0; i < 30 && c.leader() === undefined; i++) c.tickAll();
    const l = c.leader();
    expect(l).toBeDefined();
    const leaders = [...c.nodes.values()].filter((n) => n.rn.isLeader());
    expect(leaders).toHaveLength(1);
    expect(c.node(l!).rn.status().term).toBe(2);
    for (const n of c.nodes.values()) expect(n.rn.status().lead).toBe(l);
  });

  it('a single voter elects itself and commits only what it has persisted', () => {
    const storage = MemoryStorage.bootstrap({ voters: [1], learners: [] });
    const rn = new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1, rand: seededRandInt(1) });
    rn.campaign();
    expect(rn.isLeader()).toBe(true);
    let rd = rn.ready();
    expect(rd.hardState).toMatchObject({ term: 2, vote: 1 });
    expect(rd.mustSync).toBe(true);
    expect(rd.entries).toHaveLength(1); // the leader's no-op
    expect(rd.committedEntries).toHaveLength(0); // not yet on disk
    storage.append(rd.entries);
    storage.setHardState(rd.hardState!);
    rn.advance(rd);
    rd = rn.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2]);
    rn.advance(rd);
    rn.propose(enc('x'));
    rd = rn.ready();
    expect(rd.committedEntries).toHaveLength(0);
    storage.append(rd.entries);
    rn.advance(rd);
    rd = rn.ready();
    expect(rd.committedEntries.map((e) => dec(e.data))).toEqual(['x']);
  });

  it('grants a vote only to a candidate whose log is at least as up to date', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(3);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    // 3 lacks 'a': its campaign must fail even once the others time out.
    c.drop = () => false;
    c.node(3).rn.campaign();
    c.stabilize();
    expect(c.node(3).rn.isLeader()).toBe(false);
  });

  it('a learner never campaigns', () => {
    const c = new Cluster([1, 2], {}, [3]);
    c.elect(1);
    c.drop = isolate(3);
    c.tickAll(100);
    expect(c.node(3).rn.status().role).toBe('follower');
    expect(c.node(3).rn.status().term).toBe(2);
  });

  it('votes and terms are in the hard state of the Ready that carries the vote response', () => {
    const c = new Cluster([1, 2, 3]);
    c.node(1).rn.campaign(); // pre-vote round
    c.stabilize();
    const n2 = c.node(2).rn;
    expect(n2.status().vote).toBe(1);
    expect(c.node(2).storage.initialState().hardState).toMatchObject({ term: 2, vote: 1 });
  });

  it('an impossible role transition throws', () => {
    const c = new Cluster([1, 2, 3]);
    expect(() => c.node(2).rn.raft.becomeLeader()).toThrow(/follower -> leader/);
    c.elect(1);
    expect(() => c.node(1).rn.raft.becomeCandidate()).toThrow(/leader -> candidate/);
  });
});

describe('pre-vote and check-quorum', () => {
  it('a partitioned node does not raise its term, and rejoins without deposing the leader', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    const term = c.node(1).rn.status().term;
    c.drop = isolate(3);
    c.tickAll(100);
    expect(c.node(3).rn.status().term).toBe(term);
    c.drop = () => false;
    c.tickAll(30);
    expect(c.leader()).toBe(1);
    expect(c.node(1).rn.status().term).toBe(term);
  });

  it('without pre-vote and check-quorum, the same node inflates its term and disrupts the leader', () => {
    const c = new Cluster([1, 2, 3], { preVote: false, checkQuorum: false });
    c.elect(1);
    const term = c.node(1).rn.status().term;
    c.drop = isolate(3);
    c.tickAll(100);
    expect(c.node(3).rn.status().term).toBeGreaterThan(term + 2);
    c.drop = () => false;
    c.tickAll(30);
    expect(c.node(1).rn.status().term).toBeGreaterThan(term + 2);
  });

  it('followers in lease ignore a vote request with a higher term', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.raft.step({
      type: 'MsgVote', to: 2, from: 3, term: 9, logTerm: 99, index: 99, entries: [], commit: 0, reject: false, rejectHint: 0,
    });
    c.node(2).rn.step({
      type: 'MsgVote', to: 2, from: 3, term: 9, logTerm: 99, index: 99, entries: [], commit: 0, reject: false, rejectHint: 0,
    });
    expect(c.node(2).rn.status().term).toBe(2);
  });

  it('check-quorum: an isolated leader steps down after an election timeout', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(1);
    c.tickAll(25);
    expect(c.node(1).rn.status().role).toBe('follower');
    // and the majority side elected someone else
    const others = [2, 3].filter((id) => c.node(id).rn.isLeader());
    expect(others).toHaveLength(1);
  });
});

describe('log replication', () => {
  it('overwrites a deposed leader\'s uncommitted entries with the new leader\'s log', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.propose(enc('committed'));
    c.stabilize();
    c.drop = isolate(1);
    c.node(1).rn.propose(enc('lost-1'));
    c.node(1).rn.propose(enc('lost-2'));
    c.stabilize();
    // 2 and 3 stop hearing from 1; one of them is elected and commits.
    for (let i = 0; i < 40 && ![2, 3].includes(c.leader() ?? 0); i++) c.tickAll();
    const l = c.leader()!;
    expect([2, 3]).toContain(l);
    c.node(l).rn.propose(enc('new'));
    c.stabilize();
    c.drop = () => false;
    c.tickAll(5);
    for (const id of [1, 2, 3]) expect(appliedData(c, id)).toEqual(['committed', 'new']);
    const l2 = c.node(l).storage;
    const l1 = c.node(1).storage;
    expect(l1.lastIndex()).toBe(l2.lastIndex());
    for (let i = l1.firstIndex(); i <= l1.lastIndex(); i++) expect(l1.term(i)).toBe(l2.term(i));
  });

  it('counts replicas only for entries of the current term (Raft §5.4.2)', () => {
    const c = new Cluster([1, 2, 3], { maxSizePerMsg: 1 });
    c.elect(1);
    c.drop = () => true;
    c.node(1).rn.propose(enc('old')); // index 3, term 2, only on node 1
    c.stabilize();
    const oldIndex = c.node(1).rn.raft.log.lastIndex();
    // 1 wins a new term with 2's vote; 2's acks of the new term's entries are lost.
    c.drop = (m) => {
      if (m.to === 3 || m.from === 3) return true;
      return m.type === 'MsgAppResp' && !m.reject && m.index > oldIndex;
    };
    c.node(1).rn.raft.becomeFollower(c.node(1).rn.status().term, 0);
    for (let i = 0; i < 60 && c.leader() !== 1; i++) c.tickAll();
    expect(c.leader()).toBe(1);
    c.tickAll(3);
    expect(c.node(1).rn.status().progress.get(2)!.match).toBe(oldIndex);
    // A majority (1, 2) holds index 3, yet it is of an older term: not committed.
    expect(c.node(1).rn.status().commit).toBe(oldIndex - 1);
    c.drop = () => false;
    c.tickAll(2);
    expect(c.node(1).rn.status().commit).toBe(oldIndex + 1);
    expect(appliedData(c, 2)).toEqual(['old']);
  });

  it('batches entries up to maxSizePerMsg and pipelines up to maxInflightMsgs appends', () => {
    const c = new Cluster([1, 2], { maxSizePerMsg: 1, maxInflightMsgs: 3 });
    c.elect(1);
    c.drop = (m) => m.from === 2; // acks lost: the window must fill and stop
    for (let i = 0; i < 10; i++) c.node(1).rn.propose(enc(`e${i}`));
    c.stabilize();
    const apps = c.delivered.filter((m) => m.type === 'MsgApp' && m.to === 2 && m.entries.length > 0);
    const sinceProps = apps.filter((m) => m.entries.some((e) => dec(e.data).startsWith('e')));
    expect(sinceProps).toHaveLength(3);
    for (const m of sinceProps) expect(m.entries).toHaveLength(1);

    // With a large limit, one append carries them all.
    const d = new Cluster([1, 2]);
    d.elect(1);
    d.drop = (m) => m.type === 'MsgApp' && m.entries.length > 0; // hold replication
    for (let i = 0; i < 10; i++) d.node(1).rn.propose(enc(`e${i}`));
    d.stabilize();
    d.drop = () => false;
    d.delivered.length = 0;
    d.tickAll(1);
    const big = d.delivered.filter((m) => m.type === 'MsgApp' && m.entries.length > 0);
    expect(big[0]!.entries).toHaveLength(10);
    expect(appliedData(d, 2)).toHaveLength(10);
  });

  it('a duplicated, late MsgApp changes nothing on the follower', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    const old = c.delivered.find((m) => m.type === 'MsgApp' && m.to === 2 && m.entries.length > 0)!;
    c.node(1).rn.propose(enc('b'));
    c.stabilize();
    const before = c.node(2).storage.lastIndex();
    c.node(2).rn.step(old);
    c.stabilize();
    expect(c.node(2).storage.lastIndex()).toBe(before);
    expect(appliedData(c, 2)).toEqual(['a', 'b']);
  });

  it('a heartbeat answer reopens a full inflight window whose acks were lost', () => {
    const c = new Cluster([1, 2], { maxSizePerMsg: 1, maxInflightMsgs: 2 });
    c.elect(1);
    c.drop = (m) => m.type === 'MsgAppResp';
    for (let i = 0; i < 4; i++) c.node(1).rn.propose(enc(`e${i}`));
    c.stabilize();
    const sent = (): number => c.delivered.filter((m) => m.type === 'MsgApp' && m.to === 2 && m.entries.length > 0).length;
    const stalled = sent();
    c.tickAll(1); // heartbeat round: the answer frees one slot
    expect(sent()).toBeGreaterThan(stalled);
    c.drop = () => false;
    c.tickAll(3);
    expect(appliedData(c, 2)).toEqual(['e0', 'e1', 'e2', 'e3']);
  });

  it('an unreachable follower drops back to probing', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    expect(c.node(1).rn.status().progress.get(2)!.state).toBe('replicate');
    c.node(1).rn.reportUnreachable(2);
    expect(c.node(1).rn.status().progress.get(2)!.state).toBe('probe');
  });

  it('a proposal on a follower is forwarded to the leader', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(3).rn.propose(enc('via-3'));
    c.stabilize();
    for (const id of [1, 2, 3]) expect(appliedData(c, id)).toEqual(['via-3']);
  });

  it('a proposal with no known leader is dropped with ErrProposalDropped', () => {
    const c = new Cluster([1, 2, 3]);
    expectDropped(() => c.node(2).rn.propose(enc('x')));
  });
});

describe('ReadIndex', () => {
  it('confirms leadership with a heartbeat quorum and returns the commit index', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    c.node(1).rn.readIndex(enc('r1'));
    c.stabilize();
    const rs = c.node(1).readStates;
    expect(rs).toHaveLength(1);
    expect(dec(rs[0]!.requestCtx)).toBe('r1');
    expect(rs[0]!.index).toBe(c.node(1).rn.status().commit);
  });

  it('a follower\'s request is forwarded and answered to the follower', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(3).rn.readIndex(enc('r3'));
    c.stabilize();
    expect(c.node(3).readStates.map((r) => dec(r.requestCtx))).toEqual(['r3']);
    expect(c.node(1).readStates).toHaveLength(0);
  });

  it('an isolated leader cannot confirm a read', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(1);
    c.node(1).rn.readIndex(enc('stale?'));
    c.tickAll(5);
    expect(c.node(1).readStates).toHaveLength(0);
  });

  it('a lone voter restarted with a stale commit index serves reads only after committing in its term', () => {
    const storage = MemoryStorage.bootstrap({ voters: [1], learners: [] });
    const run = (rn: RawNode): void => {
      while (rn.hasReady()) {
        const rd = rn.ready();
        storage.append(rd.entries);
        if (rd.hardState) storage.setHardState(rd.hardState);
        rn.advance(rd);
      }
    };
    const first = new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1, rand: seededRandInt(1) });
    first.campaign();
    run(first);
    first.propose(enc('acked'));
    run(first);
    const acked = first.status().commit;
    // The commit index was not synced before the crash.
    storage.setHardState({ ...storage.initialState().hardState, commit: acked - 1 });
    const rn = new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1, applied: 1, rand: seededRandInt(1) });
    rn.campaign();
    rn.readIndex(enc('r'));
    const rd = rn.ready();
    expect(rd.readStates).toHaveLength(0);
    storage.append(rd.entries);
    storage.setHardState(rd.hardState!);
    rn.advance(rd);
    const reads = rn.ready().readStates;
    expect(reads).toHaveLength(1);
    expect(reads[0]!.index).toBeGreaterThan(acked);
  });

  it('holds reads until the new leader has committed an entry of its term', () => {
    const c = new Cluster([1, 2, 3]);
    c.drop = (m) => m.type === 'MsgApp' || m.type === 'MsgAppResp';
    c.elect(1);
    c.node(1).rn.readIndex(enc('early'));
    c.stabilize();
    expect(c.node(1).readStates).toHaveLength(0);
    c.drop = () => false;
    c.tickAll(2);
    expect(c.node(1).readStates.map((r) => dec(r.requestCtx))).toEqual(['early']);
    expect(c.node(1).readStates[0]!.index).toBeGreaterThanOrEqual(2);
  });
});

describe('leadership transfer', () => {
  it('hands leadership to an up-to-date voter at once', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    const term = c.node(1).rn.status().term;
    c.node(1).rn.transferLeader(2);
    c.stabilize();
    expect(c.leader()).toBe(2);
    expect(c.node(2).rn.status().term).toBe(term + 1);
  });

  it('catches a lagging transferee up first, and drops proposals meanwhile', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(3);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    c.drop = (m) => m.to === 3 && m.type === 'MsgApp';
    c.node(1).rn.transferLeader(3);
    c.stabilize();
    expect(c.node(1).rn.status().leadTransferee).toBe(3);
    expectDropped(() => c.node(1).rn.propose(enc('during')));
    c.drop = () => false;
    c.tickAll(1);
    expect(c.leader()).toBe(3);
    expect(appliedData(c, 3)).toEqual(['a']);
  });

  it('a transfer requested on a follower is forwarded to the leader', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(3).rn.transferLeader(3);
    c.stabilize();
    expect(c.leader()).toBe(3);
  });

  it('a transfer that cannot finish is abandoned after an election timeout', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(3);
    c.node(1).rn.transferLeader(3);
    c.tickAll(12);
    expect(c.leader()).toBe(1);
    expect(c.node(1).rn.status().leadTransferee).toBe(0);
    c.node(1).rn.propose(enc('after'));
    c.stabilize();
    expect(appliedData(c, 2)).toEqual(['after']);
  });
});

describe('membership (one change at a time)', () => {
  it('adds a learner that replicates but does not count for commit', () => {
    const c = new Cluster([1, 2]);
    c.elect(1);
    c.addNode(3);
    c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 3 });
    c.stabilize();
    expect(c.node(1).rn.confState()).toEqual({ voters: [1, 2], learners: [3] });
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    expect(appliedData(c, 3)).toEqual(['a']);
    // Without voter 2, leader + learner are no quorum.
    c.drop = isolate(2);
    c.node(1).rn.propose(enc('b'));
    c.stabilize();
    expect(appliedData(c, 1)).toEqual(['a']);
    expect(c.node(3).rn.status().commit).toBe(c.node(1).rn.status().commit);
  });

  it('promotes a learner to voter, which then counts', () => {
    const c = new Cluster([1, 2]);
    c.elect(1);
    c.addNode(3);
    c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 3 });
    c.stabilize();
    c.node(1).rn.proposeConfChange({ type: 'addNode', nodeId: 3 });
    c.stabilize();
    for (const id of [1, 2, 3]) expect(c.node(id).confState).toEqual({ voters: [1, 2, 3], learners: [] });
    c.drop = isolate(2);
    c.node(1).rn.propose(enc('with-3'));
    c.stabilize();
    expect(appliedData(c, 1)).toEqual(['with-3']);
  });

  it('adds a voter directly', () => {
    const c = new Cluster([1]);
    c.elect(1);
    c.addNode(2);
    c.node(1).rn.proposeConfChange({ type: 'addNode', nodeId: 2 });
    c.stabilize();
    expect(c.node(2).confState.voters).toEqual([1, 2]);
    c.drop = isolate(2);
    c.node(1).rn.propose(enc('needs-2'));
    c.stabilize();
    expect(appliedData(c, 1)).toEqual([]);
    c.drop = () => false;
    c.tickAll(2);
    expect(appliedData(c, 1)).toEqual(['needs-2']);
  });

  it('removes a voter, shrinking the quorum', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.proposeConfChange({ type: 'removeNode', nodeId: 3 });
    c.stabilize();
    expect(c.node(1).rn.confState()).toEqual({ voters: [1, 2], learners: [] });
    c.drop = isolate(3);
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    expect(appliedData(c, 1)).toEqual(['a']);
    expect(appliedData(c, 3)).toEqual([]);
  });

  it('a removed leader steps down and the rest elect a successor', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.node(1).rn.proposeConfChange({ type: 'removeNode', nodeId: 1 });
    c.stabilize();
    expect(c.node(1).rn.isLeader()).toBe(false);
    c.drop = isolate(1);
    c.tickAll(30);
    const l = c.leader();
    expect([2, 3]).toContain(l);
    c.node(l!).rn.propose(enc('after'));
    c.stabilize();
    expect(appliedData(c, l === 2 ? 3 : 2)).toEqual(['after']);
  });

  it('refuses a second change while the first is unapplied, and nonsense changes', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = (m) => m.type === 'MsgAppResp';
    c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 4 });
    expectDropped(() => c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 5 }));
    c.drop = () => false;
    c.tickAll(2);
    expectDropped(() => c.node(1).rn.proposeConfChange({ type: 'addNode', nodeId: 2 }));
    expectDropped(() => c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 3 }));
    expectDropped(() => c.node(1).rn.proposeConfChange({ type: 'removeNode', nodeId: 9 }));
    c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 5 });
  });
});

describe('restart', () => {
  it('rebuilds membership from the snapshot plus applied conf changes, and trusts applied over a lagging commit', () => {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.addNode(4);
    c.node(1).rn.proposeConfChange({ type: 'addLearnerNode', nodeId: 4 });
    c.stabilize();
    c.node(1).rn.propose(enc('a'));
    c.stabilize();
    const n2 = c.node(2);
    const applied = n2.rn.status().applied;
    // Crash of node 2: its commit index was written but not synced.
    n2.storage.setHardState({ ...n2.storage.initialState().hardState, commit: 1 });
    const rn = new RawNode({ id: 2, storage: n2.storage, electionTick: 10, heartbeatTick: 1, applied, rand: seededRandInt(2) });
    expect(rn.confState()).toEqual({ voters: [1, 2, 3], learners: [4] });
    expect(rn.status().commit).toBe(applied);
    expect(rn.hasReady()).toBe(false); // nothing to re-apply
    expect(() => new RawNode({ id: 2, storage: n2.storage, electionTick: 10, heartbeatTick: 1, applied: applied + 5, rand: seededRandInt(2) })).toThrow(/past the log/);
  });
});

describe('snapshots', () => {
  /** Node 3 misses `n` entries, then the leader (1) compacts its log past them. */
  function laggingFollowerAfterCompaction(n: number): { c: Cluster; applied: number } {
    const c = new Cluster([1, 2, 3]);
    c.elect(1);
    c.drop = isolate(3);
    for (let i = 0; i < n; i++) c.node(1).rn.propose(enc(`e${i}`));
    c.stabilize();
    const leader = c.node(1);
    const applied = leader.rn.status().applied;
    leader.storage.createSnapshot(applied, leader.confState);
    leader.storage.compact(applied);
    expect(leader.storage.firstIndex()).toBe(applied + 1);
    return { c, applied };
  }

  it('installs a snapshot on a lagging follower, then replicates entries after it', () => {
    const { c, applied } = laggingFollowerAfterCompaction(20);
    const leader = c.node(1);

    c.drop = () => false;
    const snaps: number[] = [];
    const before = c.handleReady.bind(c);
    c.handleReady = (n) => {
      if (n.id === 3 && n.rn.hasReady()) {
        const peek = n.rn.raft.log.unstable.snapshot;
        if (peek !== undefined) snaps.push(peek.index);
      }
      return before(n);
    };
    c.tickAll(3);
    expect(snaps).toEqual([applied]);
    expect(c.node(3).storage.firstIndex()).toBe(applied + 1);
    // The snapshot carried no entries (the driver streams state-machine data):
    expect(appliedData(c, 3)).toEqual([]);
    c.node(1).rn.propose(enc('after'));
    c.stabilize();
    expect(appliedData(c, 3)).toEqual(['after']);
    expect(leader.rn.status().progress.get(3)).toMatchObject({ state: 'replicate', match: leader.rn.status().commit });
  });

  it('a failed snapshot stream sends the follower back to probing and retries', () => {
    const { c, applied } = laggingFollowerAfterCompaction(5);
    const l = c.node(1);
    c.drop = (m) => m.type === 'MsgSnap';
    c.tickAll(2);
    expect(l.rn.status().progress.get(3)!.state).toBe('snapshot');
    l.rn.reportSnapshot(3, false);
    expect(l.rn.status().progress.get(3)!.state).toBe('probe');
    c.drop = () => false;
    c.tickAll(3);
    expect(c.node(3).storage.firstIndex()).toBe(applied + 1);
  });
});
