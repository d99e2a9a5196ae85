// One cluster node as a real process, for the multi-process tests: a
// RaftNode over the KV test state machine, driven by its parent through the
// IPC channel. Requests: {req, op: 'put', k, v} | {req, op: 'get', k} (a
// ReadIndex read) | {req, op: 'dump'} | {req, op: 'status'}; answers
// {req, ok, value} or {req, ok: false, code}.
//
// Usage (from dist/): node node-main.js '<json NodeConfig>'

import path from 'node:path';
import { isSealError } from '../../../src/errors/index.js';
import { RaftNode } from '../../../src/raft/index.js';
import { KvStateMachine, kvPayload } from '../support/kv-state-machine.js';

export interface NodeConfig {
  id: number;
  dir: string;
  port: number;
  peers: Record<number, string>;
  voters: number[];
  secret: string;
}

type Request =
  | { req: number; op: 'put'; k: string; v: string }
  | { req: number; op: 'get'; k: string }
  | { req: number; op: 'dump' }
  | { req: number; op: 'status' };

const cfg = JSON.parse(process.argv[2]!) as NodeConfig;
const sm = new KvStateMachine(path.join(cfg.dir, 'sm'));
const node = await RaftNode.start({
  id: cfg.id,
  dir: cfg.dir,
  secret: Buffer.from(cfg.secret),
  port: cfg.port,
  peers: cfg.peers,
  bootstrap: { voters: cfg.voters, learners: [] },
  stateMachine: sm,
  tickMs: 25,
  electionTick: 10,
  heartbeatTick: 2,
  proposalTimeoutMs: 3000,
  snapshotEntries: 100,
  compactionRetain: 20,
  segmentBytes: 256 * 1024,
  onHalt: (e) => {
    console.error(`node ${cfg.id} halted: ${e.message}`);
    process.exit(3);
  },
});

async function handle(r: Request): Promise<unknown> {
  switch (r.op) {
    case 'put':
      return node.propose(kvPayload(r.k, r.v));
    case 'get':
      return node.linearizableRead(() => sm.data.get(r.k) ?? null, 3000);
    case 'dump':
      return node.linearizableRead(() => ({ applied: sm.appliedIndex(), data: [...sm.data] }), 5000);
    case 'status':
      return { leader: node.isLeader(), lead: node.leaderId(), applied: node.appliedIndex() };
  }
}

process.on('message', (r: Request) => {
  handle(r).then(
    (value) => process.send!({ req: r.req, ok: true, value }),
    (e: unknown) => process.send!({ req: r.req, ok: false, code: isSealError(e) ? e.code : 'Error', message: String(e) }),
  );
});
process.on('disconnect', () => void node.stop().then(() => process.exit(0)));
process.send!({ started: true });
