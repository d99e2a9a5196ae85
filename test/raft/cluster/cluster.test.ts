// A 3-node cluster of real processes on 127.0.0.1 (KV test state machine,
// fsynced Raft logs, TCP transport). Under a write load the leader is killed
// with SIGKILL and restarted; afterwards every acknowledged write is on every
// node and all nodes hold the same state. Meanwhile other clients put and get
// (ReadIndex) a few shared keys through any node, and that history must be
// linearizable.
//
// CLUSTER_RUNS=20 npx vitest run test/raft/cluster   # repeat (default 2)

import { fork, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { distScript } from '../../support/dist.js';
import { freePorts, until } from '../../support/ports.js';
import { checkKvHistory, type KvOperation } from '../../support/linearizability.js';
import type { NodeConfig } from './node-main.js';

const RUNS = Number(process.env.CLUSTER_RUNS ?? 2);
const SECRET = crypto.randomBytes(24).toString('hex');

class Proc {
  child!: ChildProcess;
  alive = false;
  private nextReq = 0;
  private waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly cfg: NodeConfig) {}

  async spawn(): Promise<void> {
    this.child = fork(distScript('test/raft/cluster/node-main.js'), [JSON.stringify(this.cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.alive = true;
    const started = new Promise<void>((resolve, reject) => {
      this.child.on('message', (m: { started?: boolean; req?: number; ok?: boolean; value?: unknown; code?: string }) => {
        if (m.started === true) return resolve();
        const w = this.waiting.get(m.req!);
        this.waiting.delete(m.req!);
        if (m.ok === true) w?.resolve(m.value);
        else w?.reject(Object.assign(new Error(m.code), { code: m.code }));
      });
      this.child.once('exit', (code, signal) => {
        this.alive = false;
        for (const w of this.waiting.values()) w.reject(new Error(`node ${this.cfg.id} exited`));
        this.waiting.clear();
        reject(new Error(`node ${this.cfg.id} exited (${code ?? signal}) before starting`));
      });
    });
    await started;
  }

  call<T>(msg: Record<string, unknown>, ms = 8000): Promise<T> {
    // The IPC channel closes before 'exit' fires on a killed child: check both.
    if (!this.alive || !this.child.connected) return Promise.reject(new Error('down'));
    const req = ++this.nextReq;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(req);
        reject(new Error('client timeout'));
      }, ms);
      this.waiting.set(req, {
        resolve: (v) => (clearTimeout(t), resolve(v as T)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      // With a callback a send on a channel that just closed fails this call instead of throwing.
      this.child.send({ req, ...msg }, (err) => {
        if (err === null) return;
        this.waiting.delete(req);
        clearTimeout(t);
        reject(err);
      });
    });
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await exited;
  }
}

const procs: Proc[] = [];
const roots: string[] = [];
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.kill()));
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function findLeader(nodes: Proc[]): Promise<Proc> {
  let leader: Proc | undefined;
  await until(async () => {
    for (const p of nodes) {
      if (!p.alive) continue;
      const s = await p.call<{ leader: boolean }>({ op: 'status' }, 1000).catch(() => undefined);
      if (s?.leader === true) {
        leader = p;
        return true;
      }
    }
    return false;
  }, 'a leader', 20_000);
  return leader!;
}

async function oneRun(run: number): Promise<{ acked: number; killed: number; ops: number }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-cluster-'));
  roots.push(root);
  const ports = await freePorts(3);
  const peers = Object.fromEntries(ports.map((p, i) => [i + 1, `127.0.0.1:${p}`]));
  const nodes = ports.map((port, i) => new Proc({ id: i + 1, dir: path.join(root, `n${i + 1}`), port, peers, voters: [1, 2, 3], secret: SECRET }));
  procs.push(...nodes);
  await Promise.all(nodes.map((n) => n.spawn()));

  const acked = new Map<string, string>();
  let target = await findLeader(nodes);
  let loading = true;
  const worker = async (w: number): Promise<void> => {
    for (let seq = 0; loading; seq++) {
      const k = `r${run}-w${w}-${seq}`;
      const v = crypto.randomBytes(6).toString('hex');
      const p = target.alive ? target : nodes.find((n) => n.alive)!;
      try {
        await p.call({ op: 'put', k, v }, 5000);
        acked.set(k, v);
      } catch {
        await sleep(20);
        const alive = nodes.filter((n) => n.alive);
        target = alive[Math.floor(Math.random() * alive.length)]!;
      }
    }
  };
  // Register clients: puts and linearizable gets of a few shared keys, through any live node.
  const history: KvOperation[] = [];
  const registerClient = async (client: number): Promise<void> => {
    while (loading) {
      const key = `reg${Math.floor(Math.random() * 4)}`;
      const alive = nodes.filter((n) => n.alive);
      const via = alive[Math.floor(Math.random() * alive.length)]!;
      const isPut = Math.random() < 0.5;
      const value = crypto.randomBytes(4).toString('hex');
      const op: KvOperation = { client, input: isPut ? { kind: 'put', key, value } : { kind: 'get', key }, output: undefined, call: performance.now(), ret: Infinity };
      try {
        const got = await via.call<string | null>(isPut ? { op: 'put', k: key, v: value } : { op: 'get', k: key }, 5000);
        op.ret = performance.now();
        op.output = isPut ? null : got;
      } catch {
        // Outcome unknown (a put may still apply); a failed get constrains nothing.
        await sleep(20);
      }
      if (isPut || op.ret !== Infinity) history.push(op);
    }
  };
  const workers = [...[...Array(12).keys()].map(worker), ...[...Array(4).keys()].map((c) => registerClient(c))];

  await sleep(700);
  const victim = await findLeader(nodes);
  await victim.kill();
  const successor = await findLeader(nodes);
  target = successor;
  await sleep(700);
  await victim.spawn();
  await sleep(700);
  loading = false;
  await Promise.all(workers);
  expect(acked.size).toBeGreaterThan(20);
  const lin = checkKvHistory(history);
  expect(lin.result, `history of ${lin.key} (run ${run}): ${JSON.stringify(lin.ops)}`).toBe('ok');

  // Every node, once caught up (the dump is a ReadIndex read), holds every acknowledged write.
  const dumps: Map<string, string>[] = [];
  for (const n of nodes) {
    let dump: { data: [string, string][] } | undefined;
    await until(async () => {
      dump = await n.call<{ data: [string, string][] }>({ op: 'dump' }, 6000).catch(() => undefined);
      return dump !== undefined;
    }, `dump of node ${n.cfg.id}`, 30_000);
    const data = new Map(dump!.data);
    for (const [k, v] of acked) expect(data.get(k), `node ${n.cfg.id}, key ${k} (run ${run})`).toBe(v);
    dumps.push(data);
  }
  await until(async () => {
    const again = await Promise.all(nodes.map((n) => n.call<{ data: [string, string][] }>({ op: 'dump' }).catch(() => ({ data: [] }))));
    const [a, b, c] = again.map((d) => JSON.stringify([...new Map(d.data)].sort()));
    return a === b && b === c;
  }, 'identical state on all nodes', 20_000);
  await Promise.all(nodes.map((n) => n.kill()));
  procs.splice(0);
  return { acked: acked.size, killed: victim.cfg.id, ops: history.length };
}

describe('3-node cluster of processes', () => {
  it(`keeps every acknowledged write through a SIGKILL of the leader (${RUNS} runs)`, async () => {
    for (let run = 1; run <= RUNS; run++) {
      const r = await oneRun(run);
      console.log(`cluster run ${run}/${RUNS}: ${r.acked} acknowledged writes, leader ${r.killed} killed and restarted, all present on all nodes; ${r.ops} register operations linearizable`);
    }
  }, 120_000 + RUNS * 60_000);
});
