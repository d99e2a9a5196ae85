// `sealkv encryption ...` as a real process (compiled dist/, built by
// `npm test`) against an in-test admin API: serve() over a MemoryEngine with a
// scripted EngineEncryption. Checks the summary and --json outputs, the one
// failure line with exit 1, `disable` without any node, and usage errors
// (no token, bad options) with exit 2.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { silentLogger } from '../../src/log/index.js';
import { serve, type RunningServer } from '../../src/server/index.js';
import { distScript } from '../support/dist.js';
import { encryptingMemoryEngine, fakeEncryption } from '../support/fake-encryption.js';

const TOKEN = 'cli-admin-token-0123456789abcdef';
const main = distScript('src/cli/main.js');
const encryption = fakeEncryption({ storage_key_id: 1, raft_key_id: 2, cutover_index: null }, (verify) => ({
  active: { storage: 1, raft: 2 },
  phases: { storage_envelope: true, raft_envelope: false },
  members: ['n1', 'n2'],
  ...(verify ? { versions_per_key_id: { '0': 3, '1': 40 } } : {}),
}));
const calls = encryption.calls;

let server: RunningServer;
let admin = '';
let tmp = '';
let tokenFile = '';

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-cli-enc-'));
  tokenFile = path.join(tmp, 'admin-token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  server = await serve({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    engine: encryptingMemoryEngine(encryption),
    logger: silentLogger(),
  });
  admin = `127.0.0.1:${server.admin!.port}`;
});
afterAll(async () => {
  await server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sealkv(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  delete base.SEALKV_ADMIN_TOKEN;
  return new Promise((resolve) => {
    execFile(process.execPath, [main, 'encryption', ...args], { env: { ...base, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A port that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('sealkv encryption', () => {
  it('prints a key: value summary, and status --verify asks for the scan', async () => {
    calls.length = 0;
    const plain = await sealkv(['status', '--admin', admin, '--admin-token-file', tokenFile]);
    expect(plain).toMatchObject({ code: 0, stderr: '' });
    expect(plain.stdout.split('\n')).toEqual([
      'active.storage: 1',
      'active.raft: 2',
      'phases.storage_envelope: true',
      'phases.raft_envelope: false',
      'members: n1, n2',
      '',
    ]);
    const verified = await sealkv(['status', '--verify', '--admin', admin], { SEALKV_ADMIN_TOKEN: TOKEN });
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain('versions_per_key_id.1: 40\n');
    expect(calls).toEqual([{ verify: false }, { verify: true }]);
  });

  it('runs each operation and prints the raw result with --json', async () => {
    calls.length = 0;
    encryption.refusal = null;
    for (const op of ['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope']) {
      const run = await sealkv([op, '--json', '--admin', admin, '--admin-token-file', tokenFile]);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toEqual({ op, storage_key_id: 1, raft_key_id: 2, cutover_index: null });
    }
    expect(calls).toEqual(['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope']);
  });

  it('prints one failure line and exits 1 when the node refuses or cannot be asked', async () => {
    encryption.refusal = sealError('ErrEncryptionNotBootstrapped', 'run `sealkv encryption bootstrap` first');
    const refused = await sealkv(['enable-raft-envelope', '--admin', admin, '--admin-token-file', tokenFile]);
    encryption.refusal = null;
    expect(refused).toEqual({ code: 1, stdout: '', stderr: 'sealkv: ErrEncryptionNotBootstrapped: run `sealkv encryption bootstrap` first\n' });

    const wrongToken = await sealkv(['status', '--admin', admin], { SEALKV_ADMIN_TOKEN: 'not-the-token-0123456789' });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toMatch(/^sealkv: ErrAdminRequest: .*401\)\n$/);

    const plain = await serve({ listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0, token: TOKEN }, logger: silentLogger() });
    try {
      const noRoutes = await sealkv(['status', '--admin', `127.0.0.1:${plain.admin!.port}`, '--admin-token-file', tokenFile]);
      expect(noRoutes.code).toBe(1);
      expect(noRoutes.stderr).toMatch(/^sealkv: ErrAdminRequest: the node at .* has no encryption admin routes \(HTTP 404/);
    } finally {
      await plain.close();
    }

    const port = await closedPort();
    const unreachable = await sealkv(['bootstrap', '--admin', `127.0.0.1:${port}`, '--admin-token-file', tokenFile]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(new RegExp(`^sealkv: ErrAdminRequest: cannot reach the admin API at 127.0.0.1:${port}: ECONNREFUSED\\n$`));
  });

  it('gives up after --timeout with ErrTimeout', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const run = await sealkv(['status', '--timeout', '300', '--admin', `127.0.0.1:${port}`, '--admin-token-file', tokenFile]);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^sealkv: ErrTimeout: no answer from the admin API at .* within 300 ms/);
      expect(run.stderr.split('\n')).toHaveLength(2);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('refuses disable with the dump-and-reload explanation, without any node or token', async () => {
    const port = await closedPort();
    const run = await sealkv(['disable', '--admin', `127.0.0.1:${port}`]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^sealkv: ErrEncryptionDisableUnsupported: encryption is one-way .*dump the data .*new cluster .*\n$/);
    expect(run.stderr.split('\n')).toHaveLength(2);
  });

  it('exits 2 with a clear line on usage errors', async () => {
    const [noToken, missingFile, ...others] = await Promise.all([
      sealkv(['status', '--admin', admin]),
      sealkv(['status', '--admin', admin, '--admin-token-file', path.join(tmp, 'absent')]),
      sealkv(['status', '--admin', 'nowhere', '--admin-token-file', tokenFile]),
      sealkv(['status', '--timeout', '0', '--admin-token-file', tokenFile]),
      sealkv(['rotate-everything']),
      sealkv(['status', '--no-such-option']),
    ]);
    expect(noToken).toEqual({ code: 2, stdout: '', stderr: 'sealkv: ErrBadRequest: no admin token: give --admin-token-file <path> or set SEALKV_ADMIN_TOKEN\n' });
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toMatch(/^sealkv: ErrBadRequest: cannot read the admin token file .*ENOENT\n$/);
    expect(others.map((run) => run.code)).toEqual([2, 2, 2, 2]);
  });

  it('exits 2 on usage errors of retire-dek and the online rewrite, before asking any node', async () => {
    const token = ['--admin', admin, '--admin-token-file', tokenFile];
    const runs = await Promise.all([
      sealkv(['retire-dek', ...token]),
      sealkv(['retire-dek', '--key-id', '0', ...token]),
      sealkv(['rewrite', ...token]),
      sealkv(['rewrite', '--key-id', '7', '--cleartext', ...token]),
      sealkv(['rewrite', '--key-id', '7', '--rate', '-1', ...token]),
      sealkv(['rewrite', '--key-id', '7', '--data-dir', tmp, ...token]),
    ]);
    expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(runs[1]!.stderr).toBe('sealkv: ErrBadRequest: --key-id: "0" is not a key_id (uint32, not 0)\n');
    expect(runs[2]!.stderr).toBe('sealkv: ErrBadRequest: give exactly one of --key-id=<N> or --cleartext\n');
    expect(runs[5]!.stderr).toBe('sealkv: ErrBadRequest: these options need --offline: --data-dir\n');
  });
});
