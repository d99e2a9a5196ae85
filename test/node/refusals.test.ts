// Every start-up refusal of SPEC §9 with real `sealkv start` processes: the
// condition is made on disk (or in the flags), and the refused start must
// exit 1 with exactly one non-JSON line on stderr,
// `sealkv: cannot start: Err<Code>: <what to do>` (the JSON log goes to stdout).
//
// One single-voter node (file KEK) is taken through Phase 1, Phase 2, a
// storage rotation and a restart, copying keys.json before the rotation and
// before the restart; then it is stopped and each case starts a copy of its
// data dir with one thing changed. Three more short-lived setups: fresh data
// dirs (flag-only refusals), a node SIGKILLed between the cutover's sidecar
// write and its store batch (SEALKV_TEST_FAULT), and two voters whose raft
// ids share node_id16.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeId16 } from '../../src/crypto/index.js';
import { MAIN_JS, NodeProcess, freePorts, nodeClient } from '../support/node-process.js';

const TOKEN = 'refusals-admin-token-for-tests';

interface Ports {
  resp: number;
  raft: number;
  admin: number;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let secretFile: string;
let tokenFile: string;
let kekFile: string;
let otherKekFile: string;
const running: NodeProcess[] = [];

/** `sealkv start` flags for node `id` (peers: `id=raftport` pairs; default itself). */
function startArgs(o: { id: string; dataDir: string; ports: Ports; peers?: [string, number][]; encryption?: boolean; kekFile?: string }): string[] {
  const peers = (o.peers ?? [[o.id, o.ports.raft]]).map(([id, port]) => `${id}=127.0.0.1:${port}`).join(',');
  return [
    '--raft-id', o.id,
    '--data-dir', o.dataDir,
    '--listen', `127.0.0.1:${o.ports.resp}`,
    '--raft-listen', `127.0.0.1:${o.ports.raft}`,
    '--admin-listen', `127.0.0.1:${o.ports.admin}`,
    '--peers', peers,
    '--cluster-secret-file', secretFile,
    '--admin-token-file', tokenFile,
    ...(o.encryption === false ? [] : ['--encryption-enabled', ...(o.kekFile === undefined ? [] : ['--kek-file', o.kekFile])]),
  ];
}

function run(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN_JS, ...args], { cwd: dir, env: { ...process.env, NODE_ENV: 'test', ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A start that must be refused with `code`: exit 1 and one line naming it, the only non-JSON line on stderr. */
async function expectRefused(args: string[], code: string, env: Record<string, string> = {}): Promise<string> {
  const r = await run(['start', ...args], env);
  const detail = `exit ${r.code}\n--- stderr:\n${r.stderr.slice(-3000)}\n--- stdout:\n${r.stdout.slice(-3000)}`;
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('{'));
  expect(r.code, detail).toBe(1);
  expect(lines, detail).toHaveLength(1);
  expect(lines[0], detail).toMatch(new RegExp(`^sealkv: cannot start: ${code}: .+`));
  expect(r.stdout, 'no key bytes in the output').not.toMatch(/"wrapped"/);
  return lines[0]!;
}

async function startNode(args: string[]): Promise<NodeProcess> {
  const node = new NodeProcess(args, dir);
  running.push(node);
  await node.start();
  return node;
}

function encryptionVerb(verb: string, ports: Ports, extra: string[] = []): Promise<RunResult> {
  return run(['encryption', verb, '--admin', `127.0.0.1:${ports.admin}`, '--admin-token-file', tokenFile, '--json', ...extra], {}, 60_000);
}

async function role(ports: Ports): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${ports.admin}/status`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5_000) });
    const body = (await res.json()) as { role?: string; engine?: { role?: string } };
    return body.engine?.role ?? body.role;
  } catch {
    return undefined;
  }
}

async function waitLeader(all: Ports[], ms = 20_000): Promise<Ports> {
  const end = Date.now() + ms;
  for (;;) {
    for (const p of all) if ((await role(p)) === 'leader') return p;
    if (Date.now() > end) throw new Error('no leader');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SETs through the node, retried while it answers TRYAGAIN (registration pending, cutover barrier). */
async function write(port: number, n: number, tag: string): Promise<void> {
  const client = nodeClient(port);
  try {
    for (let i = 0; i < n; i++) {
      const end = Date.now() + 20_000;
      for (;;) {
        try {
          await client.set(`${tag}-${i}`, crypto.randomBytes(24).toString('base64url'));
          break;
        } catch (err) {
          if (!String(err).includes('TRYAGAIN') || Date.now() > end) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  } finally {
    client.disconnect();
  }
}

/** A short raft id other than `id` with the same node_id16. */
function collidingId(id: string): string {
  const want = nodeId16(id);
  for (let i = 0; i < 10_000_000; i++) {
    const candidate = `c${i.toString(36)}`;
    if (nodeId16(candidate) === want) return candidate;
  }
  throw new Error(`no id colliding with ${id}`);
}

function writeKek(file: string): void {
  fs.writeFileSync(file, crypto.randomBytes(32), { mode: 0o600 });
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-refusals-'));
  secretFile = path.join(dir, 'cluster-secret');
  tokenFile = path.join(dir, 'admin-token');
  kekFile = path.join(dir, 'kek.bin');
  otherKekFile = path.join(dir, 'other-kek.bin');
  fs.writeFileSync(secretFile, 'a-cluster-secret-for-the-refusal-tests', { mode: 0o600 });
  fs.writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  writeKek(kekFile);
  writeKek(otherKekFile);
});

afterAll(async () => {
  await Promise.all(running.map((n) => n.stop('SIGKILL')));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('start-up refusals from flags alone (fresh data dirs)', () => {
  it('ErrKEKRequired: --encryption-enabled without a KEK', async () => {
    const [resp, raft, admin] = await freePorts(3);
    await expectRefused(startArgs({ id: 'n1', dataDir: path.join(dir, 'fresh-nokek'), ports: { resp: resp!, raft: raft!, admin: admin! } }), 'ErrKEKRequired');
  });

  it('ErrUnsupportedFilesystem: the probe\'s directory fsync fails', async () => {
    const [resp, raft, admin] = await freePorts(3);
    const dataDir = path.join(dir, 'fresh-probe');
    await expectRefused(startArgs({ id: 'n1', dataDir, ports: { resp: resp!, raft: raft!, admin: admin! }, kekFile }), 'ErrUnsupportedFilesystem', {
      SEALKV_TEST_FAULT: 'probe-fsync-dir',
    });
    expect(fs.existsSync(path.join(dataDir, 'encryption', 'keys.json')), 'no sidecar written').toBe(false);
  });
});

describe('start-up refusals against an encrypted node\'s data dir', () => {
  let ports: Ports;
  let base: string;
  const sidecarCopies: Record<'beforeRotate' | 'beforeRestart', string> = { beforeRotate: '', beforeRestart: '' };

  /** A copy of the stopped base node's data dir, for one case. */
  function copyOfBase(name: string): string {
    const copy = path.join(dir, `case-${name}`);
    fs.cpSync(base, copy, { recursive: true });
    return copy;
  }

  const keysJson = (dataDir: string): string => path.join(dataDir, 'encryption', 'keys.json');
  const readKeys = (dataDir: string): Record<string, unknown> & { keys: Record<string, Record<string, unknown>> } =>
    JSON.parse(fs.readFileSync(keysJson(dataDir), 'utf8'));
  const writeKeys = (dataDir: string, content: string | object): void =>
    fs.writeFileSync(keysJson(dataDir), typeof content === 'string' ? content : JSON.stringify(content, null, 2), { mode: 0o600 });

  beforeAll(async () => {
    const [resp, raft, admin] = await freePorts(3);
    ports = { resp: resp!, raft: raft!, admin: admin! };
    base = path.join(dir, 'base');
    const args = startArgs({ id: 'n1', dataDir: base, ports, kekFile });
    let node = await startNode(args);
    await write(ports.resp, 5, 'clear');
    for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) {
      const r = await encryptionVerb(verb, ports);
      expect(r.code, `${verb}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    await write(ports.resp, 5, 'phase2');
    sidecarCopies.beforeRotate = fs.readFileSync(keysJson(base), 'utf8');
    const rotated = await encryptionVerb('rotate-dek', ports, ['--purpose', 'storage']);
    expect(rotated.code, `rotate-dek: ${rotated.stdout}${rotated.stderr}`).toBe(0);
    await write(ports.resp, 5, 'rotated');
    sidecarCopies.beforeRestart = fs.readFileSync(keysJson(base), 'utf8');
    expect(await node.stop('SIGTERM')).toBe(0);
    // The restart bumps every local_epoch and re-registers; a write after the
    // cutover waits for that registration, so once it is acknowledged the
    // registry rows record the new epochs.
    node = await startNode(args);
    await write(ports.resp, 5, 'restarted');
    expect(await node.stop('SIGTERM')).toBe(0);
  }, 120_000);

  it('ErrSidecarPresentWithoutFlag: a node with a sidecar started without --encryption-enabled', async () => {
    await expectRefused(startArgs({ id: 'n1', dataDir: copyOfBase('noflag'), ports, encryption: false }), 'ErrSidecarPresentWithoutFlag');
  });

  it('ErrKEKRequired: keys.json removed and started without encryption, while the store holds DEKs', async () => {
    const dataDir = copyOfBase('nosidecar');
    fs.rmSync(keysJson(dataDir));
    const line = await expectRefused(startArgs({ id: 'n1', dataDir, ports, encryption: false }), 'ErrKEKRequired');
    expect(line).toMatch(/store holds encryption keys/);
  });

  it('ErrKEKMismatch: another file KEK than the one its DEKs are wrapped under', async () => {
    const dataDir = copyOfBase('otherkek');
    const before = fs.readFileSync(keysJson(dataDir), 'utf8');
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile: otherKekFile }), 'ErrKEKMismatch');
    expect(fs.readFileSync(keysJson(dataDir), 'utf8'), 'a refused start leaves keys.json as it was').toBe(before);
  });

  it('ErrSidecarCorrupt: keys.json is garbage', async () => {
    const dataDir = copyOfBase('garbage');
    writeKeys(dataDir, '{"version": 1, "raft_applied_index": 12, "keys": {');
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrSidecarCorrupt');
    expect(fs.existsSync(keysJson(dataDir)), 'never "start fresh" over the file').toBe(true);
  });

  it('ErrSidecarCorrupt: keys.json violates the schema', async () => {
    const dataDir = copyOfBase('schema');
    const keys = readKeys(dataDir);
    const first = Object.keys(keys.keys)[0]!;
    keys.keys[first]!.purpose = 'backup';
    writeKeys(dataDir, keys);
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrSidecarCorrupt');
  });

  it('ErrSidecarCorrupt: raft_applied_index past the Raft log\'s last index', async () => {
    const dataDir = copyOfBase('pastlog');
    const keys = readKeys(dataDir);
    keys.raft_applied_index = (keys.raft_applied_index as number) + 1_000_000;
    writeKeys(dataDir, keys);
    const line = await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrSidecarCorrupt');
    expect(line).toMatch(/past the Raft log/);
  });

  it('ErrSidecarBehindRaftLog: keys.json restored from before a rotate-dek the store applied', async () => {
    const dataDir = copyOfBase('behind');
    writeKeys(dataDir, sidecarCopies.beforeRotate);
    const line = await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrSidecarBehindRaftLog');
    expect(line).toMatch(/resync-sidecar/);
  });

  it('ErrLocalEpochRollback: keys.json restored from before a restart whose epochs are registered', async () => {
    const dataDir = copyOfBase('rollback');
    writeKeys(dataDir, sidecarCopies.beforeRestart);
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrLocalEpochRollback');
  });

  it('ErrLocalEpochExhausted: the active storage DEK at local_epoch 65535', async () => {
    const dataDir = copyOfBase('exhausted');
    const keys = readKeys(dataDir);
    // Only an active DEK matters: one rotated away only opens (test/sidecar covers that it does not refuse).
    const active = String((keys.active as { storage: number }).storage);
    keys.keys[active]!.local_epoch = 65535;
    writeKeys(dataDir, keys);
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrLocalEpochExhausted');
  });

  it('ErrEnvelopeCutoverDivergence: keys.json records another cutover index than the store applied', async () => {
    const dataDir = copyOfBase('cutover');
    const keys = readKeys(dataDir);
    // Still a valid file: the cutover stays at or below raft_applied_index.
    keys.raft_envelope_cutover_index = (keys.raft_envelope_cutover_index as number) - 1;
    writeKeys(dataDir, keys);
    await expectRefused(startArgs({ id: 'n1', dataDir, ports, kekFile }), 'ErrEnvelopeCutoverDivergence');
  });

  it('ErrNodeIDCollision: the data dir started under another --raft-id with the same node_id16', async () => {
    const other = collidingId('n1');
    expect(nodeId16(other)).toBe(nodeId16('n1'));
    const line = await expectRefused(startArgs({ id: other, dataDir: copyOfBase('collision'), ports, kekFile }), 'ErrNodeIDCollision');
    expect(line).toContain('n1');
  });
});

describe('ErrEnvelopeCutoverDivergence before the cutover entry is replayed', () => {
  it('a crash after the cutover\'s sidecar write, then keys.json edited to an earlier cutover: refused at start', async () => {
    const [resp, raft, admin] = await freePorts(3);
    const ports: Ports = { resp: resp!, raft: raft!, admin: admin! };
    const dataDir = path.join(dir, 'cutover-replay');
    const args = startArgs({ id: 'n1', dataDir, ports, kekFile });
    // SIGKILLed right after keys.json records the cutover, before the store batch of the cutover entry.
    const node = new NodeProcess(args, dir, { SEALKV_TEST_FAULT: 'after-sidecar-write:enable-raft-envelope' });
    running.push(node);
    await node.start();
    await write(ports.resp, 3, 'clear');
    expect((await encryptionVerb('enable-storage-envelope', ports)).code).toBe(0);
    await write(ports.resp, 3, 'phase1');
    expect((await encryptionVerb('enable-raft-envelope', ports)).code, 'the node dies during the cutover').not.toBe(0);
    expect(await node.stop('SIGKILL')).toBeNull();
    const file = path.join(dataDir, 'encryption', 'keys.json');
    const keys = JSON.parse(fs.readFileSync(file, 'utf8')) as { raft_applied_index: number; raft_envelope_cutover_index: number | null };
    expect(keys.raft_envelope_cutover_index).toBe(keys.raft_applied_index);
    keys.raft_envelope_cutover_index = keys.raft_applied_index - 1;
    fs.writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
    await expectRefused(args, 'ErrEnvelopeCutoverDivergence');
  }, 60_000);
});

describe('ErrNodeIDCollision among members', () => {
  it('bootstrap and enable-storage-envelope are refused when two members share node_id16', async () => {
    const ids = ['n1', collidingId('n1')];
    const all = await freePorts(6);
    const ports: Ports[] = ids.map((_, i) => ({ resp: all[i * 3]!, raft: all[i * 3 + 1]!, admin: all[i * 3 + 2]! }));
    const peers = ids.map((id, i): [string, number] => [id, ports[i]!.raft]);
    const nodes = await Promise.all(ids.map((id, i) => startNode(startArgs({ id, dataDir: path.join(dir, `collide-${id}`), ports: ports[i]!, peers, kekFile }))));
    const leader = await waitLeader(ports);
    for (const verb of ['bootstrap', 'enable-storage-envelope']) {
      const r = await encryptionVerb(verb, leader);
      expect(r.code, `${verb}: ${r.stdout}${r.stderr}`).not.toBe(0);
      expect(r.stdout + r.stderr).toContain('ErrNodeIDCollision');
    }
    for (const n of nodes) await n.stop('SIGTERM');
  }, 60_000);
});
