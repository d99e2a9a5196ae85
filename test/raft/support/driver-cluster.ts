// In-process RaftNode clusters for driver tests: n founding voters over
// loopback TCP with fsynced logs and the KV state machine, per-node options,
// stop/restart from the same directory, and one cleanup for everything a
// test started.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RaftNode, type RaftNodeOptions } from '../../../src/raft/index.js';
import { freePorts, until } from '../../support/ports.js';
import { KvStateMachine } from './kv-state-machine.js';

export const DRIVER_SECRET = Buffer.from('driver test secret, 32 bytes....');

export interface ClusterMember {
  id: number;
  /** The node's raft dir (its log is in `<dir>/log`). */
  dir: string;
  node: RaftNode;
  sm: KvStateMachine;
}

export class DriverClusters {
  private readonly roots: string[] = [];
  private readonly running = new Set<RaftNode>();

  /** A temporary directory removed by cleanup(). */
  tempDir(): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-driver-'));
    this.roots.push(root);
    return root;
  }

  /** A node started outside cluster(), stopped by cleanup(). */
  track(node: RaftNode): void {
    this.running.add(node);
  }

  /** Stops every node and removes every directory (call from afterEach). */
  async cleanup(): Promise<void> {
    await Promise.all([...this.running].map((n) => n.stop()));
    this.running.clear();
    for (const r of this.roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
  }

  /**
   * Starts voters 1..n; id n+1 is addressable as a joiner (no bootstrap).
   * `over` adds options for every node, or per node when a function (hooks capturing the node's id).
   */
  async cluster(n: number, over: Partial<RaftNodeOptions> | ((id: number) => Partial<RaftNodeOptions>) = {}) {
    const perNode = typeof over === 'function' ? over : () => over;
    const root = this.tempDir();
    const ports = await freePorts(n + 1);
    const peers: Record<number, string> = {};
    for (let i = 1; i <= n + 1; i++) peers[i] = `127.0.0.1:${ports[i - 1]}`;
    const voters = [...Array(n).keys()].map((i) => i + 1);
    const members = new Map<number, ClusterMember>();
    const running = this.running;
    const start = async (id: number, extra: Partial<RaftNodeOptions> = {}): Promise<ClusterMember> => {
      const dir = path.join(root, `n${id}`);
      const sm = new KvStateMachine(path.join(dir, 'sm'));
      const node = await RaftNode.start({
        id,
        dir,
        secret: DRIVER_SECRET,
        port: ports[id - 1],
        peers: id <= n ? Object.fromEntries(voters.map((v) => [v, peers[v]!])) : peers,
        bootstrap: id <= n ? { voters, learners: [] } : undefined,
        stateMachine: sm,
        tickMs: 20,
        electionTick: 10,
        heartbeatTick: 2,
        proposalTimeoutMs: 10_000,
        ...perNode(id),
        ...extra,
      });
      running.add(node);
      const m = { id, dir, node, sm };
      members.set(id, m);
      return m;
    };
    const stop = async (id: number): Promise<void> => {
      const m = members.get(id)!;
      await m.node.stop();
      running.delete(m.node);
    };
    for (const id of voters) await start(id);
    const leader = async (): Promise<ClusterMember> => {
      let found: ClusterMember | undefined;
      await until(() => {
        found = [...members.values()].find((m) => running.has(m.node) && m.node.isLeader());
        return found !== undefined;
      }, 'a leader');
      return found!;
    };
    return { members, start, stop, leader, peers };
  }
}
