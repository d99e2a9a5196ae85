// Three real `sealkv start` processes on 127.0.0.1 with ioredis as the client:
// writes and linearizable reads through every node (followers forward inside
// Raft), SIGKILL of the leader and then of a follower under writes, restarts
// that catch up, and a graceful SIGTERM stop. Every acknowledged write must be
// readable from every node at the end, and the history of a concurrent
// GET/SET workload run through all of it must be linearizable.
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { checkKvHistory, describeKvHistory, type KvOperation } from '../support/linearizability.js';
import { startCluster, type Cluster } from '../support/node-process.js';

const NODES = 3;
let cluster: Cluster | undefined;
const clients: (Redis | undefined)[] = [];

afterAll(async () => {
  for (const client of clients) client?.disconnect();
  await cluster?.destroy();
});

function connect(i: number, port: number): Redis {
  clients[i]?.disconnect();
  const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => null, commandTimeout: 20_000 });
  client.on('error', () => undefined);
  clients[i] = client;
  return client;
}

async function leaderIndex(live: number[]): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    for (const i of live) {
      const info = await clients[i]!.info('sealkv');
      if (/\brole:leader\b/.test(info)) return i;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no leader');
}

describe('3-node cluster of real processes', () => {
  it('serves ioredis on every node and keeps every acknowledged write across SIGKILLs', async () => {
    cluster = await startCluster(NODES);
    const { nodes, resp } = cluster;
    nodes.forEach((_, i) => connect(i, resp[i]!));

    const acked = new Map<string, string>();
    let counter = 0;
    const writeThrough = async (live: number[], count: number, tag: string): Promise<void> => {
      for (let j = 0; j < count; j++) {
        const i = live[j % live.length]!;
        const key = `${tag}:${j}`;
        expect(await clients[i]!.set(key, `value-${tag}-${j}`)).toBe('OK');
        acked.set(key, `value-${tag}-${j}`);
        counter = await clients[i]!.incr('counter');
        // A linearizable read on another node sees the write at once.
        const other = live[(j + 1) % live.length]!;
        expect(await clients[other]!.get(key)).toBe(`value-${tag}-${j}`);
      }
    };
    const checkAll = async (live: number[]): Promise<void> => {
      const keys = [...acked.keys()];
      for (const i of live) {
        expect(await clients[i]!.mget(...keys)).toEqual(keys.map((k) => acked.get(k)));
        expect(Number(await clients[i]!.get('counter'))).toBe(counter);
      }
    };

    await writeThrough([0, 1, 2], 30, 'start');
    await checkAll([0, 1, 2]);

    // A concurrent workload on a few registers, through whichever nodes are up.
    const up = new Set([0, 1, 2]);
    const history: KvOperation[] = [];
    let stopWorkload = false;
    let seq = 0;
    const worker = async (w: number): Promise<void> => {
      while (!stopWorkload) {
        const candidates = [...up];
        const i = candidates[Math.floor(Math.random() * candidates.length)]!;
        const client = clients[i]!;
        const key = `reg${Math.floor(Math.random() * 4)}`;
        const call = performance.now();
        if (Math.random() < 0.5) {
          const value = `w${w}-${seq++}`;
          try {
            await client.set(key, value);
            history.push({ input: { kind: 'put', key, value }, output: null, call, ret: performance.now() });
          } catch {
            history.push({ input: { kind: 'put', key, value }, output: undefined, call, ret: Infinity });
          }
        } else {
          try {
            const output = await client.get(key);
            history.push({ input: { kind: 'get', key }, output, call, ret: performance.now() });
          } catch {
            // A read that failed had no effect: nothing to record.
          }
        }
      }
    };
    const workload = Promise.all([0, 1, 2, 3].map(worker));

    // SIGKILL the leader; the survivors elect a new one and keep taking writes.
    const leader = await leaderIndex([0, 1, 2]);
    up.delete(leader);
    await nodes[leader]!.stop('SIGKILL');
    const survivors = [0, 1, 2].filter((i) => i !== leader);
    await writeThrough(survivors, 20, 'after-leader-kill');
    await nodes[leader]!.start();
    connect(leader, resp[leader]!);
    up.add(leader);
    await checkAll([0, 1, 2]);

    // SIGKILL a follower under writes, then restart it.
    const newLeader = await leaderIndex([0, 1, 2]);
    const follower = [0, 1, 2].find((i) => i !== newLeader)!;
    const live = [0, 1, 2].filter((i) => i !== follower);
    const writes = writeThrough(live, 20, 'during-follower-kill');
    up.delete(follower);
    await nodes[follower]!.stop('SIGKILL');
    await writes;
    await nodes[follower]!.start();
    connect(follower, resp[follower]!);
    up.add(follower);
    stopWorkload = true;
    await workload;
    await checkAll([0, 1, 2]);
    const verdict = checkKvHistory(history);
    expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');
    expect(history.length).toBeGreaterThan(50);
    console.log(`cluster workload: ${history.length} operations checked linearizable`);

    // Graceful stop.
    for (const client of clients) client?.disconnect();
    expect(await Promise.all(nodes.map((n) => n.stop('SIGTERM')))).toEqual([0, 0, 0]);
  }, 180_000);
});
