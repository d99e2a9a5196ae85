// The GC scheduler inside a real single-node replication stack (RocksDB,
// Raft, state machine): with no retention and a short interval it removes
// the old versions of a counter while it is being incremented, and reads at
// the last commit keep seeing the newest value (never going back).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/index.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { openReplicatedEngine, resolveStartConfig } from '../../src/node/index.js';
import type { Engine } from '../../src/server/index.js';

const INCREMENTS = 40;
const KEY = Buffer.from('counter');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-gc-node-'));
let engine: Engine | undefined;
afterAll(async () => {
  await engine?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${what} not within 10 s`);
}

async function readCounter(e: Engine): Promise<number> {
  const [reply] = await e.read([{ op: 'get', key: KEY }], { linearizable: true });
  if (reply?.kind === 'nil') return 0;
  if (reply?.kind !== 'bulk') throw new Error(`GET replied ${reply?.kind}`);
  return Number(reply.value.toString());
}

describe('GC in a running node', () => {
  it('removes old versions while reads at the last commit keep the newest value', async () => {
    const config = resolveStartConfig(
      { raftId: 'n1', raftListen: '127.0.0.1:0', dataDir: path.join(dir, 'data'), gcIntervalMs: '20', gcRetentionMs: '0' },
      dir,
    );
    const metrics = new SealkvMetrics();
    engine = await openReplicatedEngine(config, { logger: silentLogger(), metrics });
    const e = engine;
    await until('leadership', () => {
      const status = e.status() as { role?: string; clock_armed?: boolean };
      return status.role === 'leader' && status.clock_armed === true;
    });
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < INCREMENTS; i++) await e.execute([{ op: 'incrby', key: KEY, delta: 1n }]);
      writing = false;
    })();
    let seen = 0;
    let staleReads = 0;
    while (writing) {
      const value = await readCounter(e);
      if (value < seen) staleReads++;
      seen = Math.max(seen, value);
    }
    await writer;
    // A new leader issues timestamps from its fenced floor, up to the ceiling
    // lead ahead of the wall clock, so the counter's versions may share one
    // millisecond, which a zero retention still keeps. Writes of fresh keys
    // (one version each, never removed) move the last commit past it.
    let ticks = 0;
    await until('GC of the counter', async () => {
      await e.execute([{ op: 'set', key: Buffer.from(`tick-${ticks++}`), value: Buffer.from('x') }]);
      if ((await readCounter(e)) !== INCREMENTS) staleReads++;
      return (await metrics.storeGcRemoved.get()).values[0]?.value === INCREMENTS - 1;
    });
    expect(staleReads).toBe(0);
    expect(await readCounter(e)).toBe(INCREMENTS);
    const minRetained = BigInt((e.status() as { min_retained_ts?: string }).min_retained_ts ?? '0');
    expect(minRetained).toBeGreaterThan(0n);
    expect((await metrics.storeMinRetainedTs.get()).values[0]?.value).toBe(Number(minRetained));
  }, 60_000);
});
