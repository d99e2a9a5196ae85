// `sealkv start --dev` as a real process: it says how to connect, a Redis
// client reads its own writes, SIGTERM stops it cleanly, and the data is there
// after a restart. It is encrypted from its first start (bootstrap and both
// phases, SPEC §12) with a dev KEK outside the data dir, mode 0600.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { NodeProcess, freePorts } from '../support/node-process.js';

const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-dev-'));
let node: NodeProcess | undefined;

afterAll(async () => {
  await node?.stop('SIGKILL');
  fs.rmSync(cwd, { recursive: true, force: true });
});

async function roundTrip(port: number, work: (client: Redis) => Promise<void>): Promise<void> {
  const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await work(client);
  } finally {
    client.disconnect();
  }
}

describe('sealkv start --dev', () => {
  it('serves a Redis client, stops on SIGTERM and keeps its data under ./sealkv-dev', async () => {
    const [resp, raft, admin] = await freePorts(3);
    const token = 'dev-admin-token-for-tests';
    fs.writeFileSync(path.join(cwd, 'token'), token, { mode: 0o600 });
    node = new NodeProcess(
      ['--dev', '--listen', `127.0.0.1:${resp}`, '--raft-listen', `127.0.0.1:${raft}`, '--admin-listen', `127.0.0.1:${admin}`, '--admin-token-file', 'token'],
      cwd,
    );
    await node.start();
    // The hint goes to stderr after the ready line on stdout: the two pipes
    // may deliver in either order.
    for (let i = 0; i < 100 && !node.output.includes(`redis-cli -p ${resp}`); i++) await new Promise((r) => setTimeout(r, 50));
    expect(node.output).toContain(`redis-cli -p ${resp}`);
    await roundTrip(resp!, async (client) => {
      expect(await client.set('greeting', 'hello')).toBe('OK');
      expect(await client.get('greeting')).toBe('hello');
      expect(await client.incrby('n', 41)).toBe(41);
    });
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(metrics).toMatch(/^sealkv_raft_is_leader 1$/m);
    expect(metrics).toMatch(/^sealkv_raft_applied_index [1-9]/m);
    expect(metrics).toMatch(/^sealkv_encryption_active_dek_id\{purpose="storage"\} [1-9]/m);
    const status = (await (await fetch(`http://127.0.0.1:${admin}/encryption/status?verify=1`, { headers: { authorization: `Bearer ${token}` } })).json()) as Record<string, unknown>;
    expect(status.phase).toBe('raft-envelope');
    expect(status.storage_envelope_active).toBe(true);
    expect(status.raft_envelope_cutover_index).toBeGreaterThan(0);
    // Every stored version is sealed under the active storage DEK.
    const active = (status.active as { storage: number }).storage;
    expect(status.versions_per_key_id).toEqual({ [String(active)]: 2 });
    const kek = path.join(cwd, 'sealkv-dev', 'kek.bin');
    expect(fs.statSync(kek).mode & 0o777).toBe(0o600);
    expect(fs.statSync(kek).size).toBe(32);
    expect(fs.existsSync(path.join(cwd, 'sealkv-dev', 'data', 'encryption', 'keys.json'))).toBe(true);
    expect(await node.stop('SIGTERM')).toBe(0);
    expect(fs.existsSync(path.join(cwd, 'sealkv-dev', 'data', 'store'))).toBe(true);
    await node.start();
    await roundTrip(resp!, async (client) => {
      expect(await client.get('greeting')).toBe('hello');
      expect(await client.incr('n')).toBe(42);
    });
    expect(await node.stop('SIGTERM')).toBe(0);
  });
});
