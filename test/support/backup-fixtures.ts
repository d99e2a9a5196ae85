// Helpers of the backup tests: one single-voter `sealkv start` node in a
// temp dir (admin token, cluster secret, a KEK given as flags), the CLI run
// as a child process, writes retried through TRYAGAIN, and byte surgery on
// a backup's files (find an encrypted value in store.snap, re-seal the
// stream's trailer and backup.json's checksums as a careful attacker would).

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { META_FILE, STORE_FILE, metaText, type BackupMeta } from '../../src/backup/index.js';
import { nodeId16 } from '../../src/crypto/index.js';
import { MAIN_JS, NodeProcess, freePorts, nodeClient } from './node-process.js';

export const ADMIN_TOKEN = 'backup-tests-admin-token-0123456789';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface NodePorts {
  resp: number;
  raft: number;
  admin: number;
}

/** Runs the compiled CLI in `cwd`. */
export function runCli(cwd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN_JS, ...args], { cwd, env: { ...process.env, NODE_ENV: 'test', ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

/**
 * A CLI run that must fail with `code`: exit 1 and exactly one stderr line
 * `sealkv: <code>: ...` (Node's own warnings, such as the AWS SDK's about the
 * Node version, are not the CLI's).
 */
export function expectCliFailure(r: CliResult, code: string): string {
  const detail = `exit ${r.code}\n--- stderr:\n${r.stderr.slice(-2000)}\n--- stdout:\n${r.stdout.slice(-2000)}`;
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('sealkv'));
  expect(r.code, detail).toBe(1);
  expect(lines, detail).toHaveLength(1);
  expect(lines[0], detail).toMatch(new RegExp(`^sealkv: ${code}: .+`));
  return lines[0]!;
}

export function expectCliOk(r: CliResult, what: string): Record<string, any> {
  expect(r.code, `${what}: exit ${r.code}\n${r.stderr}\n${r.stdout.slice(-2000)}`).toBe(0);
  return JSON.parse(r.stdout) as Record<string, any>;
}

/** `sealkv start` flags of a single-voter node: encrypted with the `kek` flags, cleartext when null. */
export function nodeArgs(o: { id: string; dataDir: string; ports: NodePorts; dir: string; kek: string[] | null }): string[] {
  return [
    '--raft-id', o.id,
    '--data-dir', o.dataDir,
    '--listen', `127.0.0.1:${o.ports.resp}`,
    '--raft-listen', `127.0.0.1:${o.ports.raft}`,
    '--admin-listen', `127.0.0.1:${o.ports.admin}`,
    '--peers', `${o.id}=127.0.0.1:${o.ports.raft}`,
    '--cluster-secret-file', path.join(o.dir, 'cluster-secret'),
    '--admin-token-file', path.join(o.dir, 'admin-token'),
    ...(o.kek === null ? [] : ['--encryption-enabled', ...o.kek]),
  ];
}

/** Writes the cluster secret and the admin token under `dir`. */
export function writeSecrets(dir: string): void {
  fs.writeFileSync(path.join(dir, 'cluster-secret'), 'a-cluster-secret-for-the-backup-tests', { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'admin-token'), ADMIN_TOKEN, { mode: 0o600 });
}

export async function nodePorts(): Promise<NodePorts> {
  const [resp, raft, admin] = await freePorts(3);
  return { resp: resp!, raft: raft!, admin: admin! };
}

export function adminArgs(dir: string, ports: NodePorts): string[] {
  return ['--admin', `127.0.0.1:${ports.admin}`, '--admin-token-file', path.join(dir, 'admin-token')];
}

/** Starts a single-voter node and waits until it leads (it logs ready before its first election). */
export async function startedNode(args: string[], cwd: string, ports: NodePorts, env: Record<string, string> = {}): Promise<NodeProcess> {
  const node = new NodeProcess(args, cwd, env);
  await node.start();
  await waitLeader(ports);
  return node;
}

export async function waitLeader(ports: NodePorts, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${ports.admin}/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { role?: string; engine?: { role?: string } };
      if ((body.engine?.role ?? body.role) === 'leader') return;
    } catch {
      // not serving yet
    }
    if (Date.now() > end) throw new Error(`the node on admin port ${ports.admin} did not become leader within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs `command` on a RESP client of `port`, retried while the node answers
 * TRYAGAIN (registration pending after a start, cutover barrier).
 */
export async function retrying<T>(port: number, command: (client: ReturnType<typeof nodeClient>) => Promise<T>): Promise<T> {
  const client = nodeClient(port);
  try {
    const end = Date.now() + 20_000;
    for (;;) {
      try {
        return await command(client);
      } catch (err) {
        if (!String(err).includes('TRYAGAIN') || Date.now() > end) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    client.disconnect();
  }
}

/** A short raft id other than `id` with the same node_id16. */
export function collidingId(id: string): string {
  const want = nodeId16(id);
  for (let i = 0; i < 10_000_000; i++) {
    const candidate = `c${i.toString(36)}`;
    if (nodeId16(candidate) === want) return candidate;
  }
  throw new Error(`no id colliding with ${id}`);
}

/** A fresh random value that occurs nowhere else (a needle for the plaintext scans). */
export function needle(tag: string): string {
  return `${tag}-${crypto.randomBytes(18).toString('base64url')}`;
}

/** Every regular file under `dir`, recursively, as paths relative to it. */
export function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((rel) => fs.statSync(path.join(dir, rel)).isFile());
}

/** Which of `needles` occur in any file under `dir`. */
export function needlesFound(dir: string, needles: readonly Buffer[]): number[] {
  const found = new Set<number>();
  for (const rel of filesUnder(dir)) {
    const data = fs.readFileSync(path.join(dir, rel));
    needles.forEach((n, i) => {
      if (data.includes(n)) found.add(i);
    });
  }
  return [...found].sort((a, b) => a - b);
}

/** Offset in store.snap of the first ciphertext byte of the first encrypted version row. */
export function firstCiphertextOffset(snap: Buffer): number {
  let at = snap.subarray(0, 8).toString('latin1') === 'EKVTHLC2' ? 10 + snap.readUInt16BE(8) : 16;
  for (;;) {
    const keyLen = snap.readUInt32BE(at);
    if (keyLen === 0xffffffff) throw new Error('no encrypted version in store.snap');
    const valueLen = snap.readUInt32BE(at + 4);
    const key = at + 8;
    const value = key + keyLen;
    // Version row (space 0x03) whose value header says "storage envelope" (flags bits 1-2 = 01).
    if (snap[key] === 0x03 && ((snap[value]! >> 1) & 0x03) === 1) return value + 9 + 18;
    at = value + valueLen;
  }
}

/** Re-computes store.snap's trailer SHA-256 and backup.json's file sums and checksum after an edit. */
export function resealBackup(dir: string): void {
  const file = path.join(dir, STORE_FILE);
  const snap = fs.readFileSync(file);
  const body = snap.subarray(0, snap.length - 32);
  fs.writeFileSync(file, Buffer.concat([body, crypto.createHash('sha256').update(body).digest()]));
  const { checksum: _old, ...meta } = JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')) as BackupMeta & { checksum: string };
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const name of Object.keys(meta.files)) {
    const p = path.join(dir, name);
    if (!fs.existsSync(p)) continue;
    const data = fs.readFileSync(p);
    files[name] = { bytes: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex') };
  }
  fs.writeFileSync(path.join(dir, META_FILE), metaText({ ...meta, files }));
}

/** Flips one bit of `file` at `offset` (default: the middle). */
export function flipByte(file: string, offset?: number): void {
  const data = fs.readFileSync(file);
  const at = offset ?? Math.floor(data.length / 2);
  data[at] = data[at]! ^ 0x01;
  fs.writeFileSync(file, data);
}
