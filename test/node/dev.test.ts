// `sealkv start --dev` as a real process: it says how to connect, a Redis
// client reads its own writes, SIGTERM stops it cleanly, and the data is there
// after a restart.
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
    expect(node.output).toContain(`redis-cli -p ${resp}`);
    await roundTrip(resp!, async (client) => {
      expect(await client.set('greeting', 'hello')).toBe('OK');
      expect(await client.get('greeting')).toBe('hello');
      expect(await client.incrby('n', 41)).toBe(41);
    });
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(metrics).toMatch(/^sealkv_raft_is_leader 1$/m);
    expect(metrics).toMatch(/^sealkv_raft_applied_index [1-9]/m);
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
