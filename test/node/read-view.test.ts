// Linearizable reads see whole batches: an MGET racing MSETs of the same keys
// over a real single-node replication stack (RocksDB, Raft, state machine)
// never returns values from two different MSETs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/index.js';
import { openReplicatedEngine, resolveStartConfig } from '../../src/node/index.js';
import type { Engine } from '../../src/server/index.js';

const KEYS = Array.from({ length: 64 }, (_, i) => Buffer.from(`k${i}`));
const ROUNDS = 150;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-read-view-'));
let engine: Engine | undefined;
afterAll(async () => {
  await engine?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function waitForLeader(e: Engine): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const status = e.status() as { role?: string; clock_armed?: boolean };
    if (status.role === 'leader' && status.clock_armed === true) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('no leader within 10 s');
}

describe('RaftEngine reads', () => {
  it('an MGET racing MSETs of the same keys sees one MSET whole', async () => {
    const config = resolveStartConfig({ raftId: 'n1', raftListen: '127.0.0.1:0', dataDir: path.join(dir, 'data') }, dir);
    engine = await openReplicatedEngine(config, { logger: silentLogger() });
    await waitForLeader(engine);
    const e = engine;
    let torn = 0;
    let reads = 0;
    let writing = true;
    const writer = (async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const value = Buffer.from(`v${round}`);
        await e.execute([{ op: 'mset', entries: KEYS.map((k) => [k, value] as [Buffer, Buffer]) }]);
      }
      writing = false;
    })();
    const readers = Array.from({ length: 4 }, async () => {
      while (writing) {
        const [reply] = await e.read([{ op: 'mget', keys: KEYS }], { linearizable: true });
        reads++;
        if (reply?.kind !== 'array') throw new Error(`MGET replied ${reply?.kind}`);
        const seen = new Set(reply.items.map((item) => (item.kind === 'bulk' ? item.value.toString() : item.kind)));
        if (seen.size > 1) torn++;
      }
    });
    await Promise.all([writer, ...readers]);
    expect(reads).toBeGreaterThan(0);
    expect(torn).toBe(0);
  }, 60_000);
});
