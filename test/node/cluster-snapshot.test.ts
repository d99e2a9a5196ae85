// A follower that was down while the leader compacted its log catches up by
// snapshot install (real processes, small --snapshot-entries), then serves
// every write, and keeps applying entries after the snapshot.
import { afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { SegmentLog } from '../../src/raft/index.js';
import { nodeClient, startCluster, type Cluster } from '../support/node-process.js';

let cluster: Cluster | undefined;
const clients: Redis[] = [];

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await cluster?.destroy();
});

function connect(port: number): Redis {
  const client = nodeClient(port);
  clients.push(client);
  return client;
}

describe('3-node cluster, follower behind a compacted log', () => {
  it('catches up by snapshot', async () => {
    cluster = await startCluster(3, ['--snapshot-entries', '40']);
    const { nodes, resp } = cluster;
    const first = connect(resp[0]!);
    for (let i = 0; i < 20; i++) await first.set(`before:${i}`, `${i}`);
    // Stop node 3 (whatever its role), then write enough for several compactions.
    await nodes[2]!.stop('SIGKILL');
    const live = [connect(resp[0]!), connect(resp[1]!)];
    for (let i = 0; i < 300; i++) await live[i % 2]!.set(`during:${i}`, `${i}`);
    await live[0]!.set('ttl', 'x', 'PX', 600_000);
    await nodes[2]!.start();
    const third = connect(resp[2]!);
    const keys = [...Array.from({ length: 20 }, (_, i) => `before:${i}`), ...Array.from({ length: 300 }, (_, i) => `during:${i}`)];
    expect(await third.mget(...keys)).toEqual(keys.map((k) => k.split(':')[1]));
    expect(await third.pttl('ttl')).toBeGreaterThan(500_000);
    // Entries after the snapshot apply on top of it.
    expect(await third.set('after', 'snapshot')).toBe('OK');
    expect(await live[0]!.get('after')).toBe('snapshot');
    expect(await third.dbsize()).toBe(322);
    // Its log starts at an installed snapshot, past everything it had before the kill.
    await nodes[2]!.stop('SIGTERM');
    const log = await SegmentLog.open({ dir: path.join(cluster.dir, 'n3', 'raft', 'log') });
    expect(log.snapshot().index).toBeGreaterThan(100);
    await log.close();
  }, 120_000);
});
