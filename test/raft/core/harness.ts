// A scripted in-process cluster for the core's interaction tests: nodes on
// MemoryStorage, a message queue the test can filter, and `stabilize()` that
// runs Ready cycles until nothing moves (like etcd's rafttest "stabilize").

import {
  MemoryStorage,
  RawNode,
  decodeConfChange,
  seededRandInt,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type ReadState,
} from '../../../src/raft/index.js';

export interface TestNode {
  id: NodeId;
  rn: RawNode;
  storage: MemoryStorage;
  /** Normal entries applied, in order (no-op entries of new leaders excluded). */
  applied: Entry[];
  readStates: ReadState[];
  confState: ConfState;
}

export type Filter = (m: Message) => boolean;

export class Cluster {
  readonly nodes = new Map<NodeId, TestNode>();
  queue: Message[] = [];
  /** Messages for which this returns true are dropped. */
  drop: Filter = () => false;
  readonly delivered: Message[] = [];

  constructor(
    voters: NodeId[],
    readonly opts: Partial<RaftConfig> = {},
    learners: NodeId[] = [],
  ) {
    for (const id of [...voters, ...learners]) this.addNode(id, MemoryStorage.bootstrap({ voters, learners }));
  }

  addNode(id: NodeId, storage: MemoryStorage = new MemoryStorage()): TestNode {
    const rn = new RawNode({
      id,
      storage,
      electionTick: 10,
      heartbeatTick: 1,
      rand: seededRandInt(id),
      ...this.opts,
    });
    const node: TestNode = { id, rn, storage, applied: [], readStates: [], confState: storage.initialState().confState };
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  leader(): NodeId | undefined {
    for (const n of this.nodes.values()) if (n.rn.isLeader()) return n.id;
    return undefined;
  }

  /** Runs one Ready cycle on a node (persist, queue messages, apply, advance). */
  handleReady(n: TestNode): boolean {
    if (!n.rn.hasReady()) return false;
    const rd = n.rn.ready();
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
    this.queue.push(...rd.messages);
    for (const e of rd.committedEntries) {
      if (e.type === 'confChange') n.confState = n.rn.applyConfChange(decodeConfChange(e.data));
      else if (e.data.length > 0) n.applied.push(e);
    }
    n.readStates.push(...rd.readStates);
    n.rn.advance(rd);
    return true;
  }

  /** Delivers queued messages and runs Ready cycles until quiet. */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      let moved = false;
      for (const n of this.nodes.values()) moved = this.handleReady(n) || moved;
      const q = this.queue;
      this.queue = [];
      for (const m of q) {
        moved = true;
        if (this.drop(m)) continue;
        const to = this.nodes.get(m.to);
        if (to === undefined) continue;
        this.delivered.push(m);
        to.rn.step(m);
      }
      if (!moved) return;
    }
    throw new Error('cluster did not stabilize');
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.rn.tick();
      this.stabilize();
    }
  }

  /** Campaigns on `id` and stabilizes. */
  elect(id: NodeId): void {
    this.node(id).rn.campaign();
    this.stabilize();
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
