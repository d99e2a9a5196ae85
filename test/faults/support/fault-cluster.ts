// A cluster of real `sealkv start` processes with every Raft link behind a
// LinkProxy (link-proxy.ts), for the cluster fault scenarios (SPEC §13):
// the KEK in the loopback KMS-protocol server and the admin, CLI, client and
// traffic helpers of test/support/encrypted-cluster.ts (`cluster`), plus
//   - per directed voter link i→j a proxy: node i's `--peers` entry for j
//     names it; `cut`, `isolate`, `delay` and `healAll` act on them;
//   - learners reached by the voters through one proxy into the learner
//     (the address given when adding it, which every member uses), and
//     reaching each voter through a proxy of their own;
//   - SIGSTOP / SIGCONT of a node (`pause` / `resume`), with the pid read
//     from the node's `ready` log line; SIGKILL and restart with the same
//     data dir through `cluster`.
// `destroy()` continues paused nodes, kills every node, closes every proxy
// and removes the data; call it also when a test fails.

import path from 'node:path';
import { EncryptedCluster, KMS_ENV, type Member } from '../../support/encrypted-cluster.js';
import { NodeProcess, freePorts } from '../../support/node-process.js';
import { LinkProxy, type CutMode, type HealMode } from './link-proxy.js';

export interface FaultClusterOptions {
  voters: number;
  learners?: number;
  /** Extra `sealkv start` flags for every node (e.g. ['--snapshot-entries', '200']). */
  extraArgs?: string[];
}

/** Key of the proxy that carries what `from` says to `to` ('*' = every voter, for a learner's inbound proxy). */
const linkKey = (from: string, to: string): string => `${from}>${to}`;

export class FaultCluster {
  readonly cluster: EncryptedCluster;
  readonly #links = new Map<string, LinkProxy>();
  readonly #paused = new Map<string, number>();
  readonly #extraArgs: string[];

  private constructor(cluster: EncryptedCluster, extraArgs: string[]) {
    this.cluster = cluster;
    this.#extraArgs = extraArgs;
  }

  static async start(options: FaultClusterOptions): Promise<FaultCluster> {
    // No members from EncryptedCluster itself: ours get their own --peers lists.
    const fc = new FaultCluster(await EncryptedCluster.start({ voters: 0 }), options.extraArgs ?? []);
    try {
      const ids = Array.from({ length: options.voters }, (_, i) => `n${i + 1}`);
      const ports = await freePorts(options.voters * 3);
      const raftPort = (i: number): number => ports[i * 3 + 1]!;
      for (const [i, from] of ids.entries()) {
        for (const [j, to] of ids.entries()) if (i !== j) fc.#links.set(linkKey(from, to), await LinkProxy.start(`${from}→${to}`, raftPort(j)));
      }
      for (const [i, id] of ids.entries()) {
        const peers = ids.map((other, j) => (i === j ? `${id}=127.0.0.1:${raftPort(j)}` : `${other}=${fc.link(id, other).address}`)).join(',');
        fc.cluster.members.push(fc.#member(id, ports.slice(i * 3, i * 3 + 3), peers, false));
      }
      await Promise.all(fc.cluster.members.map((m) => m.process.start()));
      for (let k = 0; k < (options.learners ?? 0); k++) await fc.addLearner();
    } catch (err) {
      await fc.destroy();
      throw err;
    }
    return fc;
  }

  #member(id: string, [resp, raft, admin]: number[], peers: string, learner: boolean, join?: string): Member {
    const dataDir = path.join(this.cluster.dir, id);
    const args = [
      '--raft-id', id,
      '--data-dir', dataDir,
      '--listen', `127.0.0.1:${resp}`,
      '--raft-listen', `127.0.0.1:${raft}`,
      '--admin-listen', `127.0.0.1:${admin}`,
      '--peers', peers,
      '--cluster-secret-file', this.cluster.secretFile,
      '--admin-token-file', this.cluster.tokenFile,
      ...(join === undefined ? [] : ['--join', join]),
      '--encryption-enabled', '--kek-uri', this.cluster.kekUri,
      ...this.#extraArgs,
    ];
    return { id, resp: resp!, raft: raft!, admin: admin!, dataDir, capable: true, learner, join, process: new NodeProcess(args, this.cluster.dir, KMS_ENV) };
  }

  /** Starts a learner behind its proxies and adds it on the leader's admin API (throws unless added). */
  async addLearner(): Promise<Member> {
    const c = this.cluster;
    const voters = c.voters;
    const id = `n${c.members.length + 1}`;
    const ports = await freePorts(3);
    const inbound = await LinkProxy.start(`*→${id}`, ports[1]!);
    this.#links.set(linkKey('*', id), inbound);
    for (const v of voters) this.#links.set(linkKey(id, v.id), await LinkProxy.start(`${id}→${v.id}`, v.raft));
    const peers = voters.map((v) => `${v.id}=${this.link(id, v.id).address}`).join(',');
    const leader = await c.leader();
    const member = this.#member(id, ports, peers, true, `127.0.0.1:${leader.raft}`);
    c.members.push(member);
    await member.process.start();
    const answer = await c.adminPost(await c.leader(), '/cluster/learners', { id, raft_address: inbound.address });
    if (answer.status !== 200) throw new Error(`adding learner ${id}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
    return member;
  }

  /** The proxy carrying what `from` sends to `to` (for a learner `to`, the one shared inbound proxy). */
  link(from: string, to: string): LinkProxy {
    const p = this.#links.get(linkKey(from, to)) ?? this.#links.get(linkKey('*', to));
    if (p === undefined) throw new Error(`no link ${from}→${to}`);
    return p;
  }

  /** Every proxy that carries traffic from or to `id`. */
  linksOf(id: string): LinkProxy[] {
    return [...this.#links.entries()].filter(([key]) => key.split('>').includes(id)).map(([, p]) => p);
  }

  get links(): LinkProxy[] {
    return [...this.#links.values()];
  }

  /** Cuts what `from` says to `to` (bytes held or dropped); `to` still reaches `from`. */
  cut(from: string, to: string, mode: CutMode = 'hold'): void {
    this.link(from, to).cut(mode);
  }

  /** Cuts every link of `id`, both ways (bytes held or dropped). */
  isolate(id: string, mode: CutMode = 'hold'): void {
    for (const p of this.linksOf(id)) p.cut(mode);
  }

  /** Heals every cut link and removes every delay. */
  healAll(mode: HealMode = 'resume'): void {
    for (const p of this.#links.values()) {
      p.heal(mode);
      p.setDelay(0);
    }
  }

  /** What the links carried and dropped so far, for a scenario's summary line. */
  linkTotals(): { connections: number; cuts: number; forwarded: number; dropped: number; resets: number } {
    const sum = (k: keyof LinkProxy['stats']): number => this.links.reduce((n, p) => n + p.stats[k], 0);
    return { connections: sum('connections'), cuts: sum('cuts'), forwarded: sum('bytesUp') + sum('bytesDown'), dropped: sum('bytesDropped'), resets: sum('resets') };
  }

  // ---- processes ----

  /** The pid of `m`'s current process, from its last `ready` line. */
  #pid(m: Member): number {
    const lines = m.process.output.split('\n').filter((l) => l.includes('"msg":"ready"'));
    const pid = Number(/"pid":(\d+)/.exec(lines.at(-1) ?? '')?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`${m.id}: no pid in its ready line`);
    return pid;
  }

  isPaused(m: Member): boolean {
    return this.#paused.has(m.id);
  }

  /** SIGSTOP: the process keeps its sockets and files but does nothing until resumed. */
  pause(m: Member): void {
    if (!m.process.running || this.#paused.has(m.id)) return;
    const pid = this.#pid(m);
    process.kill(pid, 'SIGSTOP');
    this.#paused.set(m.id, pid);
  }

  /** SIGCONT of a paused node. */
  resume(m: Member): void {
    const pid = this.#paused.get(m.id);
    if (pid === undefined) return;
    this.#paused.delete(m.id);
    // The process may have been killed meanwhile.
    if (m.process.running) process.kill(pid, 'SIGCONT');
  }

  resumeAll(): void {
    for (const m of this.cluster.members) this.resume(m);
  }

  /** SIGKILL (also of a paused node). */
  async kill(m: Member): Promise<void> {
    this.#paused.delete(m.id);
    await this.cluster.kill(m);
  }

  /** Starts `m` again with the same data dir, ports and peers. */
  async restart(m: Member): Promise<void> {
    await this.cluster.restart(m);
  }

  async destroy(): Promise<void> {
    this.resumeAll();
    await this.cluster.destroy();
    await Promise.all(this.links.map((p) => p.close()));
    this.#links.clear();
  }
}
