// Real `sealkv start` processes for multi-process tests: spawned from the
// compiled dist/ build, ready when the node logs `"msg":"ready"`, stopped by
// SIGTERM (graceful) or SIGKILL. Everything listens on 127.0.0.1.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { packageRoot } from './dist.js';
import { freePorts } from './ports.js';

export { freePorts };

export const MAIN_JS = path.join(packageRoot(), 'dist/src/cli/main.js');

export class NodeProcess {
  readonly args: string[];
  readonly cwd: string;
  /** Extra environment for the child (e.g. KMS credentials), on top of this process's. */
  readonly env: Record<string, string>;
  #child: ChildProcess | undefined;
  #exit: Promise<number | null> | undefined;
  /** Everything the process printed, for failure messages. */
  output = '';

  constructor(args: string[], cwd: string, env: Record<string, string> = {}) {
    this.args = args;
    this.cwd = cwd;
    this.env = env;
  }

  /** The child's pid while it runs (benchmarks read its CPU time from /proc). */
  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Spawns the node and waits until it reports ready; `extraEnv` is for this process lifetime only (e.g. a test fault). */
  async start(timeoutMs = 30_000, extraEnv: Record<string, string> = {}): Promise<void> {
    if (this.running) throw new Error('already running');
    const child = spawn(process.execPath, [MAIN_JS, 'start', ...this.args], {
      cwd: this.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env, ...extraEnv, NODE_ENV: 'test' },
    });
    this.#child = child;
    const from = this.output.length;
    this.#exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node did not get ready in ${timeoutMs} ms:\n${this.output}`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        this.output += chunk.toString();
        if (this.output.includes('"msg":"ready"', from)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      void this.#exit?.then((code) => {
        clearTimeout(timer);
        reject(new Error(`node exited with ${code} before ready:\n${this.output}`));
      });
    });
  }

  /**
   * Waits (up to `timeoutMs`) for the process to exit on its own and
   * returns how: {code, signal} (signal set when killed by one).
   */
  async exited(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.#child;
    if (!child || !this.#exit) throw new Error('not started');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms:\n${this.output.slice(-2000)}`)), timeoutMs);
    });
    try {
      const code = await Promise.race([this.#exit, timeout]);
      this.#child = undefined;
      return { code, signal: child.signalCode };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` and waits for the exit code (null when killed by a signal). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.#child || !this.#exit) return null;
    if (this.running) this.#child.kill(signal);
    const code = await this.#exit;
    this.#child = undefined;
    return code;
  }
}

export interface Cluster {
  nodes: NodeProcess[];
  /** RESP port of each node. */
  resp: number[];
  /** Node i keeps its data under `<dir>/n<i+1>`. */
  dir: string;
  /** Kills what still runs and removes the data. */
  destroy(): Promise<void>;
}

/** Starts `n` founding members on free loopback ports, with data under a temp dir. */
export async function startCluster(n: number, extraArgs: string[] = []): Promise<Cluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-cluster-'));
  const ports = await freePorts(n * 2);
  const resp = ports.slice(0, n);
  const raft = ports.slice(n);
  const secretFile = path.join(dir, 'cluster-secret');
  fs.writeFileSync(secretFile, 'a-cluster-secret-for-tests-only', { mode: 0o600 });
  const peers = raft.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(',');
  const nodes = resp.map(
    (port, i) =>
      new NodeProcess(
        [
          '--raft-id', `n${i + 1}`,
          '--data-dir', path.join(dir, `n${i + 1}`),
          '--listen', `127.0.0.1:${port}`,
          '--raft-listen', `127.0.0.1:${raft[i]}`,
          '--admin-listen', '127.0.0.1:0',
          '--peers', peers,
          '--cluster-secret-file', secretFile,
          ...extraArgs,
        ],
        dir,
      ),
  );
  const destroy = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((node) => node.start()));
  } catch (err) {
    await destroy();
    throw err;
  }
  return { nodes, resp, dir, destroy };
}

/** An ioredis client for a node under test: no reconnects, one retry, errors left to the commands. */
export function nodeClient(port: number): Redis {
  const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => null, commandTimeout: 20_000 });
  client.on('error', () => undefined);
  return client;
}
