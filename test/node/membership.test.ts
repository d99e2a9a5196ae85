// Membership through the admin API, with real processes: a 4th node started
// with --join is added as a learner on the leader's admin API, promoted, then
// serves linearizable reads of everything written before it joined and takes
// writes; finally it is removed and the three founders carry on.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { raftNodeId } from '../../src/node/index.js';
import { NodeProcess, freePorts, nodeClient, startCluster, type Cluster } from '../support/node-process.js';

const TOKEN = 'membership-test-admin-token';
let cluster: Cluster | undefined;
let joiner: NodeProcess | undefined;
const clients: Redis[] = [];

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await joiner?.stop('SIGKILL');
  await cluster?.destroy();
});

function connect(port: number): Redis {
  const client = nodeClient(port);
  clients.push(client);
  return client;
}

function argOf(node: NodeProcess, flag: string): string {
  return node.args[node.args.indexOf(flag) + 1]!;
}

function adminPort(node: NodeProcess): number {
  const line = node.output.split('\n').find((l) => l.includes('"msg":"admin API listening"'));
  if (line === undefined) throw new Error(`no admin address in:\n${node.output}`);
  return (JSON.parse(line) as { port: number }).port;
}

async function admin(node: NodeProcess, route: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${adminPort(node)}${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function leaderIndex(redis: Redis[]): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    for (const [i, client] of redis.entries()) if (/\brole:leader\b/.test(await client.info('sealkv'))) return i;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no leader');
}

describe('membership through the admin API', () => {
  it('adds a --join node as a learner, promotes it, and removes it', async () => {
    const tokenDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-token-'));
    const tokenFile = path.join(tokenDir, 'token');
    fs.writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
    try {
      cluster = await startCluster(3, ['--admin-token-file', tokenFile]);
    } finally {
      fs.rmSync(tokenDir, { recursive: true, force: true });
    }
    const { nodes, resp, dir } = cluster;
    const founders = resp.map(connect);
    const keys = Array.from({ length: 100 }, (_, i) => `before:${i}`);
    for (const [i, key] of keys.entries()) await founders[i % 3]!.set(key, `${i}`);
    const leader = nodes[await leaderIndex(founders)]!;

    const [respPort, raftPort] = await freePorts(2);
    const raftAddress = `127.0.0.1:${raftPort}`;
    joiner = new NodeProcess(
      [
        '--raft-id', 'n4',
        '--data-dir', path.join(dir, 'n4'),
        '--listen', `127.0.0.1:${respPort}`,
        '--raft-listen', raftAddress,
        '--admin-listen', '127.0.0.1:0',
        '--join', argOf(leader, '--raft-listen'),
        '--peers', argOf(leader, '--peers'),
        '--cluster-secret-file', argOf(leader, '--cluster-secret-file'),
      ],
      dir,
    );
    await joiner.start();

    const n4 = raftNodeId('n4');
    expect(await admin(leader, '/cluster/learners', { id: 'n4' })).toMatchObject({ status: 400 });
    const added = await admin(leader, '/cluster/learners', { id: 'n4', raft_address: raftAddress });
    expect(added.status).toBe(200);
    expect(added.body.learners).toEqual([n4]);
    const promoted = await admin(leader, '/cluster/promote', { id: 'n4' });
    expect(promoted.status).toBe(200);
    expect(promoted.body.voters).toContain(n4);
    expect(promoted.body.learners).toEqual([]);

    // Linearizable reads on the new voter see everything written before it joined.
    const fourth = connect(respPort!);
    expect(await fourth.mget(...keys)).toEqual(keys.map((_, i) => `${i}`));
    expect(await fourth.set('via:n4', 'yes')).toBe('OK');
    expect(await fourth.incr('counter')).toBe(1);
    for (const client of founders) expect(await client.get('via:n4')).toBe('yes');

    const removed = await admin(leader, '/cluster/remove', { id: 'n4' });
    expect(removed.status).toBe(200);
    expect(removed.body.voters).not.toContain(n4);
    expect((removed.body.voters as number[]).length).toBe(3);
    await joiner.stop('SIGTERM');
    expect(await founders[0]!.set('after:remove', 'ok')).toBe('OK');
    expect(await founders[2]!.get('after:remove')).toBe('ok');
  }, 120_000);
});
