// A cluster of real `sealkv start` processes for the encryption rollout
// tests and benchmark: a loopback KMS-protocol server holding the KEK, N
// voters and any number of learners on fixed free 127.0.0.1 ports (so a
// restarted node keeps its addresses), the cluster secret and admin token in
// a temp dir, and helpers around them:
//   - `cli(args)` runs the compiled `sealkv` CLI and returns {code, stdout, stderr};
//   - `encryption(verb, via)` runs `sealkv encryption <verb> --admin ... --json`;
//   - `leader()` asks each running node's admin /status;
//   - `kill(m)` (SIGKILL) / `restart(m)`, `addLearner(...)`;
//   - `Traffic`: client load through every running node, recording a history
//     for the linearizability checker and every write with the phase it was
//     issued in;
//   - `scanFiles(dir, needles)`: which needles occur in which files of a dir.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { checkKvHistory, describeKvHistory, type KvOperation } from './linearizability.js';
import { KmsTestServer, type KmsTestCredentials } from './kms-server.js';
import { MAIN_JS, NodeProcess, freePorts } from './node-process.js';

export const KMS_CREDENTIALS: KmsTestCredentials = {
  accessKeyId: 'AKIDSEALKVROLLOUT',
  secretAccessKey: 'sealkv-rollout-test-secret-not-a-real-key',
};

/** What a child process needs to reach the loopback KMS (and nothing of the developer's own AWS setup). */
export const KMS_ENV: Record<string, string> = {
  AWS_ACCESS_KEY_ID: KMS_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: KMS_CREDENTIALS.secretAccessKey,
  AWS_CONFIG_FILE: '/nonexistent/sealkv-test/config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/sealkv-test/credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
};

const ADMIN_TOKEN = 'encrypted-cluster-admin-token-for-tests';

export interface Member {
  /** The `--raft-id`. */
  readonly id: string;
  readonly resp: number;
  readonly raft: number;
  readonly admin: number;
  readonly dataDir: string;
  /** Started with `--encryption-enabled --kek-uri ...`. */
  readonly capable: boolean;
  readonly learner: boolean;
  /** The leader's Raft address it was started with --join to (learners). */
  readonly join: string | undefined;
  readonly process: NodeProcess;
}

export interface ClusterOptions {
  voters: number;
  /** Learners started with --join and added on the leader's admin API once the voters serve. */
  learners?: number;
  /** Whether member i (voters first, then learners) gets --encryption-enabled; default all. */
  capable?: (index: number) => boolean;
  /** Extra `sealkv start` flags for every node (e.g. ['--snapshot-entries', '200']). */
  extraArgs?: string[];
  /** Extra environment for every node process (e.g. OPENSSL_ia32cap). */
  env?: Record<string, string>;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface AdminStatus {
  role?: string;
  applied_index?: number;
  commit_index?: number;
  [field: string]: unknown;
}

export class EncryptedCluster {
  readonly dir: string;
  readonly kms: KmsTestServer;
  readonly kekUri: string;
  readonly secretFile: string;
  readonly tokenFile: string;
  readonly members: Member[] = [];
  readonly #extraArgs: string[];
  readonly #env: Record<string, string>;
  readonly #clients = new Map<string, Redis>();
  /** The founding voters, `id=host:port,...`. */
  #peerList = '';

  private constructor(dir: string, kms: KmsTestServer, kekUri: string, extraArgs: string[], env: Record<string, string>) {
    this.dir = dir;
    this.#env = env;
    this.kms = kms;
    this.kekUri = kekUri;
    this.#extraArgs = extraArgs;
    this.secretFile = path.join(dir, 'cluster-secret');
    this.tokenFile = path.join(dir, 'admin-token');
    fs.writeFileSync(this.secretFile, 'a-cluster-secret-for-the-rollout-tests', { mode: 0o600 });
    fs.writeFileSync(this.tokenFile, ADMIN_TOKEN, { mode: 0o600 });
  }

  static async start(options: ClusterOptions): Promise<EncryptedCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-enc-cluster-'));
    const kms = await KmsTestServer.start({ credentials: KMS_CREDENTIALS });
    const key = kms.createKey('sealkv-rollout');
    const cluster = new EncryptedCluster(dir, kms, kms.uri(key.keyId), options.extraArgs ?? [], options.env ?? {});
    const capable = options.capable ?? (() => true);
    try {
      const ports = await freePorts(options.voters * 3);
      cluster.#peerList = Array.from({ length: options.voters }, (_, i) => `n${i + 1}=127.0.0.1:${ports[i * 3 + 1]}`).join(',');
      for (let i = 0; i < options.voters; i++) {
        cluster.members.push(cluster.#member(`n${i + 1}`, ports.slice(i * 3, i * 3 + 3), capable(i), false));
      }
      await Promise.all(cluster.members.map((m) => m.process.start()));
      for (let j = 0; j < (options.learners ?? 0); j++) await cluster.addLearner(capable(options.voters + j));
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  get voters(): Member[] {
    return this.members.filter((m) => !m.learner);
  }

  get running(): Member[] {
    return this.members.filter((m) => m.process.running);
  }

  member(id: string): Member {
    const m = this.members.find((x) => x.id === id);
    if (m === undefined) throw new Error(`no member ${id}`);
    return m;
  }


  #member(id: string, [resp, raft, admin]: number[], capable: boolean, learner: boolean, join?: string, env: Record<string, string> = {}): Member {
    const dataDir = path.join(this.dir, id);
    const args = [
      '--raft-id', id,
      '--data-dir', dataDir,
      '--listen', `127.0.0.1:${resp}`,
      '--raft-listen', `127.0.0.1:${raft}`,
      '--admin-listen', `127.0.0.1:${admin}`,
      '--peers', this.#peerList,
      '--cluster-secret-file', this.secretFile,
      '--admin-token-file', this.tokenFile,
      ...(join === undefined ? [] : ['--join', join]),
      ...(capable ? ['--encryption-enabled', '--kek-uri', this.kekUri] : []),
      ...this.#extraArgs,
    ];
    return { id, resp: resp!, raft: raft!, admin: admin!, dataDir, capable, learner, join, process: new NodeProcess(args, this.dir, { ...KMS_ENV, ...this.#env, ...env }) };
  }

  /**
   * The same node (id, ports, data dir) with other start flags or extra
   * environment (e.g. SEALKV_TEST_FAULT), in place of `m` (which must be
   * stopped); not started.
   */
  replaceMember(m: Member, change: { capable: boolean; env?: Record<string, string> }): Member {
    if (m.process.running) throw new Error(`${m.id} is running`);
    const i = this.members.indexOf(m);
    if (i < 0) throw new Error(`${m.id} is not a current member`);
    const replacement = this.#member(m.id, [m.resp, m.raft, m.admin], change.capable, m.learner, m.join, change.env);
    this.members[i] = replacement;
    return replacement;
  }

  /**
   * Starts a new node with --join and adds it as a learner on the leader's
   * admin API. Returns the member and the admin answer (status 200 when added).
   */
  async addLearner(capable: boolean): Promise<{ member: Member; status: number; body: Record<string, unknown> }> {
    const leader = await this.leader();
    const member = this.#member(`n${this.members.length + 1}`, await freePorts(3), capable, true, `127.0.0.1:${leader.raft}`);
    this.members.push(member);
    await member.process.start();
    const answer = await this.adminPost(leader, '/cluster/learners', { id: member.id, raft_address: `127.0.0.1:${member.raft}` });
    return { member, ...answer };
  }

  async adminGet(m: Member, route: string): Promise<AdminStatus> {
    const res = await fetch(`http://127.0.0.1:${m.admin}${route}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      signal: AbortSignal.timeout(5_000),
    });
    if (res.status !== 200) throw new Error(`${m.id} ${route}: HTTP ${res.status}`);
    return (await res.json()) as AdminStatus;
  }

  async adminPost(m: Member, route: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`http://127.0.0.1:${m.admin}${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** Admin /status with the engine's Raft facts (role, commit_index, applied_index) lifted to the top. */
  async status(m: Member): Promise<AdminStatus> {
    const s = await this.adminGet(m, '/status');
    const engine = typeof s.engine === 'object' && s.engine !== null ? (s.engine as Record<string, unknown>) : {};
    return { ...s, ...engine };
  }

  /** The running member whose admin /status says leader (waits up to `ms`). */
  async leader(ms = 20_000): Promise<Member> {
    const end = Date.now() + ms;
    for (;;) {
      for (const m of this.running) {
        const s = await this.status(m).catch(() => undefined);
        if (s?.role === 'leader') return m;
      }
      if (Date.now() > end) throw new Error(`no leader\n${this.describe()}`);
      await sleep(100);
    }
  }

  /** Waits until every running member has applied at least what the leader has committed now. */
  async settle(ms = 20_000): Promise<void> {
    const leader = await this.leader(ms);
    const target = (await this.status(leader)).commit_index ?? 0;
    const end = Date.now() + ms;
    for (const m of this.running) {
      for (;;) {
        const s = await this.status(m).catch(() => undefined);
        if ((s?.applied_index ?? -1) >= target) break;
        if (Date.now() > end) throw new Error(`${m.id} did not apply index ${target}`);
        await sleep(50);
      }
    }
  }

  /** Runs the compiled CLI (`node dist/src/cli/main.js ...args`). */
  cli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
    return new Promise((resolve) => {
      execFile(process.execPath, [MAIN_JS, ...args], { env: { ...process.env, ...KMS_ENV }, timeout: timeoutMs, cwd: this.dir }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** `sealkv encryption <verb> --admin <via> --admin-token-file ... [--json]`. */
  encryption(verb: string, via: Member, json = true, extra: string[] = []): Promise<CliResult> {
    return this.cli(['encryption', verb, '--admin', `127.0.0.1:${via.admin}`, '--admin-token-file', this.tokenFile, ...(json ? ['--json'] : []), ...extra]);
  }

  /** A RESP client for the member's current process (a new one after a restart). */
  client(m: Member): Redis {
    let client = this.#clients.get(m.id);
    if (client === undefined || client.status === 'end') {
      client = new Redis({ host: '127.0.0.1', port: m.resp, maxRetriesPerRequest: 1, retryStrategy: () => null, commandTimeout: 20_000 });
      client.on('error', () => undefined);
      this.#clients.set(m.id, client);
    }
    return client;
  }

  #dropClient(m: Member): void {
    this.#clients.get(m.id)?.disconnect();
    this.#clients.delete(m.id);
  }

  async kill(m: Member): Promise<void> {
    this.#dropClient(m);
    await m.process.stop('SIGKILL');
  }

  async stop(m: Member): Promise<number | null> {
    this.#dropClient(m);
    return m.process.stop('SIGTERM');
  }

  /** Starts `m` again; `env` (e.g. SEALKV_TEST_FAULT) applies to this process lifetime only. */
  async restart(m: Member, env: Record<string, string> = {}): Promise<void> {
    this.#dropClient(m);
    await m.process.start(30_000, env);
  }

  /** Waits (bounded) for `m` to exit on its own (e.g. a test fault) and returns how. */
  async exited(m: Member, ms = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.#dropClient(m);
    return m.process.exited(ms);
  }

  /**
   * Reads every write back (MGET in chunks) on each of `on` (default: every
   * running member); '' when all read back their value, else what differs.
   */
  async unreadable(writes: readonly WriteRecord[], on: Member[] = this.running): Promise<string> {
    const problems: string[] = [];
    for (const m of on) {
      for (let i = 0; i < writes.length; i += 500) {
        const chunk = writes.slice(i, i + 500);
        const got = await this.client(m).mget(...chunk.map((w) => w.key));
        chunk.forEach((w, j) => {
          if (got[j] !== w.value && problems.length < 10) problems.push(`${m.id}: ${w.key} (${w.phase}) read ${JSON.stringify(got[j])?.slice(0, 40)}`);
        });
      }
    }
    return problems.join('\n');
  }

  /** Each member's state and the tail of its output, for assertion messages. */
  describe(tail = 1500): string {
    return this.members
      .map((m) => `--- ${m.id} (${m.process.running ? 'running' : 'stopped'}, raft ${m.raft}, admin ${m.admin}):\n${m.process.output.slice(-tail)}`)
      .join('\n');
  }

  /**
   * The same node (id, ports, data dir) with its `sealkv start` arguments
   * edited by `edit` and `env` on top of its environment, in place of `m`
   * (which must be stopped); not started. Its earlier output is kept. For
   * the key lifecycle tests: a new `--kek-uri` after rewrap-deks, a start
   * flag, a test-only variable such as SEALKV_TEST_WRITE_CEILING.
   */
  reconfigure(m: Member, edit: (args: string[]) => string[], env: Record<string, string> = {}): Member {
    if (m.process.running) throw new Error(`${m.id} is running`);
    const i = this.members.indexOf(m);
    if (i < 0) throw new Error(`${m.id} is not a current member`);
    const process = new NodeProcess(edit([...m.process.args]), m.process.cwd, { ...m.process.env, ...env });
    process.output = m.process.output;
    const replacement: Member = { ...m, process };
    this.members[i] = replacement;
    return replacement;
  }

  async destroy(): Promise<void> {
    for (const client of this.#clients.values()) client.disconnect();
    this.#clients.clear();
    await Promise.all(this.members.map((m) => m.process.stop('SIGKILL')));
    await this.kms.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- start arguments -------------------------------------------------------------

/** `args` with the value of `--kek-uri` (or `--kek-file`, replaced by `--kek-uri`) set to `uri`. */
export function withKekUri(args: readonly string[], uri: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--kek-uri' || args[i] === '--kek-file') i++;
    else out.push(args[i]!);
  }
  return [...out, '--kek-uri', uri];
}

/** `args` with the boolean flag `flag` present (`on`) or absent. */
export function withFlag(args: readonly string[], flag: string, on = true): string[] {
  const out = args.filter((a) => a !== flag);
  return on ? [...out, flag] : out;
}

// ---- values that cannot be mistaken ------------------------------------------

/**
 * A distinctive, high-entropy, compression-unfriendly value: a fixed prefix
 * and `bytes` of random base64url. `needle` is a 24-character random piece of
 * it: found in a file only if the value (or its key) was written there in the
 * clear — and short enough to sit inside one uncompressed literal.
 */
export function secretValue(bytes = 48): { value: string; needle: string } {
  const random = crypto.randomBytes(bytes).toString('base64url');
  return { value: `sealkv-secret-${random}`, needle: random.slice(0, 24) };
}

// ---- client traffic ---------------------------------------------------------------

export interface WriteRecord {
  key: string;
  value: string;
  /** Random piece of the value (see secretValue). */
  needle: string;
  /** Random piece of the key. */
  keyNeedle: string;
  /** Traffic.phase when the write was first sent. */
  phase: string;
  /** true when acknowledged, false when its outcome is unknown. */
  acked: boolean;
}

export interface TrafficOptions {
  workers?: number;
  /** Fraction of operations that are GETs of a key written before. */
  readRatio?: number;
  valueBytes?: number;
  /** Upper bound on operations per worker. */
  maxOpsPerWorker?: number;
  /** Pause between operations of one worker. */
  pauseMs?: number;
}

const RETRY_LIMIT_MS = 30_000;

function retryable(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return message.startsWith('TRYAGAIN');
}

/**
 * SETs of unique keys with secret values and GETs of keys written before,
 * through every running member. A write answered with a retryable error is
 * sent again (same key, same value) and recorded as one operation from the
 * first call to the final answer; a write whose answer is lost has an
 * unknown outcome (`ret: Infinity`).
 */
export class Traffic {
  /** Labels each write (e.g. 'cleartext', 'phase1'); set by the test between steps. */
  phase = 'initial';
  readonly history: KvOperation[] = [];
  readonly writes: WriteRecord[] = [];
  /** Errors that were neither retryable nor a lost connection. */
  readonly errors: string[] = [];
  readonly #cluster: EncryptedCluster;
  readonly #options: Required<TrafficOptions>;
  #stopping = false;
  #running: Promise<void> | undefined;
  #seq = 0;

  constructor(cluster: EncryptedCluster, options: TrafficOptions = {}) {
    this.#cluster = cluster;
    this.#options = { workers: 4, readRatio: 0.4, valueBytes: 48, maxOpsPerWorker: 100_000, pauseMs: 2, ...options };
  }

  start(): void {
    if (this.#running !== undefined) throw new Error('traffic already running');
    this.#stopping = false;
    this.#running = Promise.all(Array.from({ length: this.#options.workers }, (_, w) => this.#worker(w))).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    this.#running = undefined;
  }

  /** Acknowledged writes whose phase is one of `phases` (all when omitted). */
  acked(phases?: string[]): WriteRecord[] {
    return this.writes.filter((w) => w.acked && (phases === undefined || phases.includes(w.phase)));
  }

  /** Waits (bounded) until at least `n` writes of the current phase are acknowledged. */
  async untilAcked(n: number, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.acked([this.phase]).length < n) {
      if (Date.now() > end) throw new Error(`only ${this.acked([this.phase]).length} of ${n} writes acknowledged in phase ${this.phase}: ${this.errors.slice(-3).join('; ')}`);
      await sleep(50);
    }
  }

  /** Writes (acknowledged or not) first sent in one of `phases`. */
  sentIn(phases: string[]): WriteRecord[] {
    return this.writes.filter((w) => phases.includes(w.phase));
  }

  /** Writes one batch of `n` values synchronously through the members, round robin (for the quiet steps of a test). */
  async writeBatch(n: number): Promise<WriteRecord[]> {
    const out: WriteRecord[] = [];
    for (let i = 0; i < n; i++) {
      const record = await this.#write(-1, i);
      if (!record.acked) throw new Error(`write of ${record.key} was not acknowledged: ${this.errors.at(-1) ?? ''}`);
      out.push(record);
    }
    return out;
  }

  /**
   * `n` SETs pipelined through one member (e.g. to make the log long enough
   * for a compaction). Each must be acknowledged; a retryable error is sent
   * again, up to a bounded time.
   */
  async burst(n: number, via: Member): Promise<WriteRecord[]> {
    const records: WriteRecord[] = [];
    for (let i = 0; i < n; i++) {
      const keyRandom = crypto.randomBytes(12).toString('base64url');
      const { value, needle } = secretValue(this.#options.valueBytes);
      records.push({ key: `b-${this.#seq++}-${keyRandom}`, value, needle, keyNeedle: keyRandom, phase: this.phase, acked: false });
    }
    this.writes.push(...records);
    const call = performance.now();
    const end = Date.now() + RETRY_LIMIT_MS;
    let pending = records;
    while (pending.length > 0) {
      const pipeline = this.#cluster.client(via).pipeline();
      for (const r of pending) pipeline.set(r.key, r.value);
      const results = (await pipeline.exec()) ?? [];
      const again: WriteRecord[] = [];
      pending.forEach((r, i) => {
        const [err] = results[i] ?? [new Error('no reply')];
        if (err === null) r.acked = true;
        else if (retryable(err) && Date.now() < end) again.push(r);
        else throw new Error(`burst SET ${r.key} through ${via.id}: ${String(err)}`);
      });
      pending = again;
      if (pending.length > 0) await sleep(50);
    }
    const ret = performance.now();
    for (const r of records) this.history.push({ input: { kind: 'put', key: r.key, value: r.value }, output: null, call, ret, client: -2 });
    return records;
  }

  #pickMember(turn: number): ReturnType<EncryptedCluster['client']> | undefined {
    const live = this.#cluster.running;
    if (live.length === 0) return undefined;
    return this.#cluster.client(live[turn % live.length]!);
  }

  async #write(w: number, turn: number): Promise<WriteRecord> {
    const keyRandom = crypto.randomBytes(12).toString('base64url');
    const key = `k-${this.#seq++}-${keyRandom}`;
    const { value, needle } = secretValue(this.#options.valueBytes);
    const record: WriteRecord = { key, value, needle, keyNeedle: keyRandom, phase: this.phase, acked: false };
    this.writes.push(record);
    const call = performance.now();
    const end = Date.now() + RETRY_LIMIT_MS;
    for (let attempt = 0; ; attempt++) {
      const client = this.#pickMember(turn + attempt);
      try {
        if (client === undefined) throw new Error('no member is running');
        await client.set(key, value);
        record.acked = true;
        this.history.push({ input: { kind: 'put', key, value }, output: null, call, ret: performance.now(), client: w });
        return record;
      } catch (err) {
        if (retryable(err) && Date.now() < end) {
          await sleep(20);
          continue;
        }
        if (!/Connection is closed|ECONNRESET|ECONNREFUSED|EPIPE|timed out|no member/i.test(String(err))) this.errors.push(`SET ${key}: ${String(err)}`);
        this.history.push({ input: { kind: 'put', key, value }, output: undefined, call, ret: Infinity, client: w });
        return record;
      }
    }
  }

  async #read(w: number, turn: number): Promise<void> {
    const written = this.writes;
    if (written.length === 0) return;
    // Mostly recent keys (they may still be in flight), sometimes any.
    const i = Math.random() < 0.7 ? Math.max(0, written.length - 1 - Math.floor(Math.random() * 20)) : Math.floor(Math.random() * written.length);
    const { key } = written[i]!;
    const client = this.#pickMember(turn);
    if (client === undefined) return;
    const call = performance.now();
    try {
      const output = await client.get(key);
      this.history.push({ input: { kind: 'get', key }, output, call, ret: performance.now(), client: w });
    } catch (err) {
      // A failed read had no effect: nothing to record.
      if (!retryable(err) && !/Connection is closed|ECONNRESET|ECONNREFUSED|EPIPE|timed out/i.test(String(err))) this.errors.push(`GET ${key}: ${String(err)}`);
    }
  }

  async #worker(w: number): Promise<void> {
    for (let n = 0; n < this.#options.maxOpsPerWorker && !this.#stopping; n++) {
      const turn = w + n;
      if (Math.random() < this.#options.readRatio) await this.#read(w, turn);
      else await this.#write(w, turn);
      if (this.#options.pauseMs > 0) await sleep(this.#options.pauseMs);
    }
  }
}

/**
 * Ends a traffic run: stops it, writes `extra` more values synchronously,
 * lets every running member apply everything, then reads every acknowledged
 * write back on each of them and checks the history. `unreadable` and
 * `linearizable` are '' when all is well, else what went wrong.
 */
export async function finishTraffic(cluster: EncryptedCluster, traffic: Traffic, extra = 10): Promise<{ acked: WriteRecord[]; unreadable: string; linearizable: string }> {
  await traffic.stop();
  await traffic.writeBatch(extra);
  await cluster.settle();
  const acked = traffic.acked();
  const verdict = checkKvHistory(traffic.history);
  return { acked, unreadable: await cluster.unreadable(acked), linearizable: verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? []) };
}

// ---- scanning data directories for plaintext ----------------------------------------

export interface ScanResult {
  /** Every regular file scanned, relative to the dir. */
  files: string[];
  /** needle index → files (relative) that contain it. */
  hits: Map<number, string[]>;
}

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(path.join(dir, prefix), { withFileTypes: true });
  } catch {
    return out; // removed while scanning (RocksDB compaction)
  }
  for (const e of entries) {
    const rel = path.join(prefix, e.name);
    if (e.isDirectory()) out.push(...listFiles(dir, rel));
    else if (e.isFile()) out.push(rel);
  }
  return out;
}

/**
 * Reads every file under `dir` (RocksDB SSTs and WAL, Raft segments, sidecar,
 * snapshots, ...) and reports which needles occur in which files. Files that
 * vanish while scanning are skipped.
 */
export function scanFiles(dir: string, needles: Buffer[], filter: (rel: string) => boolean = () => true): ScanResult {
  const files = listFiles(dir).filter(filter);
  const hits = new Map<number, string[]>();
  for (const rel of files) {
    let data: Buffer;
    try {
      data = fs.readFileSync(path.join(dir, rel));
    } catch {
      continue;
    }
    needles.forEach((needle, i) => {
      if (data.includes(needle)) {
        let list = hits.get(i);
        if (list === undefined) hits.set(i, (list = []));
        list.push(rel);
      }
    });
  }
  return { files, hits };
}

/** Raft log segment files (under `raft/log`), as opposed to snapshots and the store. */
export const isRaftLogFile = (rel: string): boolean => rel.startsWith(path.join('raft', 'log') + path.sep);
/** The store's RocksDB files. */
export const isStoreFile = (rel: string): boolean => rel.startsWith('store' + path.sep);

/** A short description of scan hits for an assertion message. */
export function describeHits(result: ScanResult, labels: string[]): string {
  return [...result.hits.entries()]
    .slice(0, 10)
    .map(([i, files]) => `${labels[i]} in ${files.join(', ')}`)
    .join('\n');
}

// ---- reading `encryption status --json` ------------------------------------------------

/** The first value of `field` found anywhere in a JSON object (depth first), or undefined. */
export function findField(json: unknown, field: string): unknown {
  if (typeof json !== 'object' || json === null) return undefined;
  if (!Array.isArray(json) && field in json) return (json as Record<string, unknown>)[field];
  for (const v of Object.values(json)) {
    const found = findField(v, field);
    if (found !== undefined) return found;
  }
  return undefined;
}

export interface Phases {
  /** 'cleartext' | 'bootstrapped' | 'storage-envelope' | 'raft-envelope' as the node reports it. */
  phase: string;
  storage: boolean;
  /** The Raft envelope cutover index, 0 (or absent) before Phase 2. */
  cutover: number;
}

/** The phases an `encryption status --json` answer reports. */
export function phasesOf(statusJson: string): Phases {
  const json: unknown = JSON.parse(statusJson);
  const cutover = Number(findField(json, 'raft_envelope_cutover_index') ?? 0);
  return {
    phase: String(findField(json, 'phase')),
    storage: findField(json, 'storage_envelope_active') === true,
    cutover: Number.isFinite(cutover) ? cutover : 0,
  };
}

// ---- encryption verbs and status for the key lifecycle tests -----------------------------

/** The `encryption status --json` fields the key lifecycle tests read. */
export interface EncryptionStatus {
  phase: string;
  active: { storage?: number; raft?: number };
  keys_present: number[];
  versions_per_key_id?: Record<string, number>;
  sidecar_raft_applied_index: number | null;
}

/** What the failure of a CLI call says, with the cluster's output. */
export function cliFailure(r: CliResult, c: EncryptedCluster): string {
  return `exit ${r.code}\n${r.stdout}\n${r.stderr}\n${c.describe()}`;
}

/** `encryption status --json [--verify]` through `m` (throws when it fails). */
export async function encryptionStatus(c: EncryptedCluster, m: Member, verify = false): Promise<EncryptionStatus> {
  const r = await c.encryption('status', m, true, verify ? ['--verify'] : []);
  if (r.code !== 0) throw new Error(`status on ${m.id}: ${cliFailure(r, c)}`);
  const json = JSON.parse(r.stdout) as Record<string, unknown>;
  return ((json.encryption as EncryptionStatus | undefined) ?? json) as EncryptionStatus;
}

/** An encryption verb through `via` (default: the leader of the moment), retried (bounded) while no leader is known or the leader changes. */
export async function encryptionOp(c: EncryptedCluster, verb: string, via?: Member, extra: string[] = []): Promise<CliResult> {
  const end = Date.now() + 30_000;
  for (;;) {
    const r = await c.encryption(verb, via ?? (await c.leader()), true, extra);
    if (r.code === 0 || !/ErrNotLeader|ErrTimeout|ErrProposalDropped|ECONNREFUSED/.test(r.stderr) || Date.now() > end) return r;
    await sleep(300);
  }
}
