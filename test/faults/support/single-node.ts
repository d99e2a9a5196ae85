// A single real `sealkv start` node for the fault campaign (test/faults):
// encrypted, with a file KEK, on fixed loopback ports (a restart keeps its
// addresses), its data dir anywhere (a tmpfs for the disk-full test); the
// compiled CLI, admin GETs and /metrics samples. Touches only the temp dirs
// the tests create.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { MAIN_JS, NodeProcess, freePorts } from '../../support/node-process.js';

export const ADMIN_TOKEN = 'fault-campaign-admin-token-for-tests';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI with `args` in `cwd`. */
export function runCli(args: string[], cwd: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN_JS, ...args], { cwd, env: { ...process.env, NODE_ENV: 'test', ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The non-JSON lines a process wrote to stderr (a refusal writes exactly one). */
export function plainLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('{'));
}

/** A single-voter encrypted node (file KEK) with its own temp files; `dataDir` may be placed elsewhere (a tmpfs). */
export class SingleNode {
  readonly dir: string;
  readonly dataDir: string;
  readonly kekFile: string;
  readonly tokenFile: string;
  readonly ports: { resp: number; raft: number; admin: number };
  readonly process: NodeProcess;
  #client: Redis | undefined;

  private constructor(dir: string, dataDir: string, ports: number[]) {
    this.dir = dir;
    this.dataDir = dataDir;
    this.kekFile = path.join(dir, 'kek.bin');
    this.tokenFile = path.join(dir, 'admin-token');
    const secretFile = path.join(dir, 'cluster-secret');
    fs.writeFileSync(this.kekFile, crypto.randomBytes(32), { mode: 0o600 });
    fs.writeFileSync(this.tokenFile, ADMIN_TOKEN, { mode: 0o600 });
    fs.writeFileSync(secretFile, 'a-cluster-secret-for-the-fault-campaign', { mode: 0o600 });
    this.ports = { resp: ports[0]!, raft: ports[1]!, admin: ports[2]! };
    this.process = new NodeProcess(this.args(), dir);
  }

  static async create(dir: string, dataDir = path.join(dir, 'data'), extraArgs: string[] = []): Promise<SingleNode> {
    const node = new SingleNode(dir, dataDir, await freePorts(3));
    node.process.args.push(...extraArgs);
    return node;
  }

  /** `sealkv start` flags; `kekFile` overrides the node's KEK (e.g. a wrong one). */
  args(kekFile = this.kekFile): string[] {
    return [
      '--raft-id', 'n1',
      '--data-dir', this.dataDir,
      '--listen', `127.0.0.1:${this.ports.resp}`,
      '--raft-listen', `127.0.0.1:${this.ports.raft}`,
      '--admin-listen', `127.0.0.1:${this.ports.admin}`,
      '--peers', `n1=127.0.0.1:${this.ports.raft}`,
      '--cluster-secret-file', path.join(this.dir, 'cluster-secret'),
      '--admin-token-file', this.tokenFile,
      '--encryption-enabled', '--kek-file', kekFile,
    ];
  }

  /** The node's shared client (a new one after a restart). */
  client(): Redis {
    if (this.#client === undefined || this.#client.status === 'end') this.#client = this.newClient();
    return this.#client;
  }

  /** A client of the caller's own: no reconnects, no retries, errors left to the commands. */
  newClient(): Redis {
    const client = new Redis({ host: '127.0.0.1', port: this.ports.resp, maxRetriesPerRequest: 0, retryStrategy: () => null, commandTimeout: 20_000 });
    client.on('error', () => undefined);
    return client;
  }

  dropClient(): void {
    this.#client?.disconnect();
    this.#client = undefined;
  }

  async start(env: Record<string, string> = {}): Promise<void> {
    this.dropClient();
    await this.process.start(30_000, env);
  }

  async kill(): Promise<void> {
    this.dropClient();
    await this.process.stop('SIGKILL');
  }

  /** `sealkv encryption <verb>` through the admin API, retried (bounded) until a leader is known; throws unless it succeeds. */
  async encryption(verb: string): Promise<void> {
    const end = Date.now() + 30_000;
    for (;;) {
      const r = await runCli(['encryption', verb, '--admin', `127.0.0.1:${this.ports.admin}`, '--admin-token-file', this.tokenFile, '--json'], this.dir);
      if (r.code === 0) return;
      if (!/ErrNotLeader|ErrTimeout|ErrProposalDropped/.test(r.stderr) || Date.now() > end) {
        throw new Error(`encryption ${verb}: exit ${r.code}\n${r.stdout}\n${r.stderr}\n${this.process.output.slice(-2000)}`);
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  /** `sealkv start` with `args`, expected to be refused: returns exit code and stderr. */
  refusedStart(args: string[]): Promise<RunResult> {
    return runCli(['start', ...args], this.dir, {}, 30_000);
  }

  async adminText(route: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.ports.admin}${route}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(5_000) });
    if (res.status !== 200) throw new Error(`${route}: HTTP ${res.status}`);
    return res.text();
  }

  /** The value of one Prometheus sample on /metrics (0 when absent). */
  async metric(name: string, labels: string): Promise<number> {
    const text = await this.adminText('/metrics');
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`) || (labels === '' && l.startsWith(`${name} `)));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  }
}

/** SETs retried (bounded) while the node answers TRYAGAIN (registration pending). */
export async function setRetrying(client: Redis, key: string, value: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    try {
      await client.set(key, value);
      return;
    } catch (err) {
      if (!String(err).includes('TRYAGAIN') || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

