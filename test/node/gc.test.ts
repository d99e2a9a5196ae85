// The node's GC scheduler (src/node/gc.ts) over a Store on the memory engine,
// ticked by hand: what a run removes and keeps, that a read at the last
// commit timestamp is unchanged by it, that runs never overlap, that close
// waits for a running one, and that a failing run is retried.

import { afterEach, describe, expect, it } from 'vitest';
import { packHlc } from '../../src/fsm/index.js';
import { silentLogger, type Logger } from '../../src/log/index.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { GcScheduler, minRetainedTimestamp, resolveStartConfig, type GcTimers } from '../../src/node/index.js';
import { MemoryEngine, Store, type Entry } from '../../src/store/index.js';

class ManualTimers implements GcTimers {
  #run: (() => void) | undefined;
  cleared = false;
  intervalMs = 0;
  setInterval(run: () => void, ms: number): unknown {
    this.#run = run;
    this.intervalMs = ms;
    return 1;
  }
  clearInterval(): void {
    this.cleared = true;
  }
  tick(): void {
    if (!this.cleared) this.#run?.();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const ts = (ms: number, logical = 0): bigint => packHlc(ms, logical);
const view = (entries: Entry[]): string[] => entries.map((e) => `${e.key.toString()}=${e.value.toString()}@${e.commitTs}`);

async function versionsOf(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const v of store.versions()) out.push(`${v.key.toString()}@${v.commitTs}`);
  return out.sort();
}

describe('GcScheduler', () => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  it('removes versions older than the horizon, keeps the newest at or below it and all above, and leaves reads at the last commit unchanged', async () => {
    store = new Store(new MemoryEngine());
    const put = (key: string, value: string, commitTs: bigint) => store!.put(Buffer.from(key), Buffer.from(value), commitTs);
    await put('k', 'v1', ts(1_000));
    await put('k', 'v2', ts(2_000));
    await put('k', 'v3', ts(3_000));
    await put('k', 'v4', ts(4_000, 7));
    await put('o', 'o1', ts(1_500));
    await put('o', 'o2', ts(10_000));
    await put('t', 't1', ts(1_000));
    await store.delete(Buffer.from('t'), ts(2_500));
    const lastCommit = ts(10_000, 3);
    const before = view(await store.scanAll({}, lastCommit, { now: 0n }));

    const timers = new ManualTimers();
    const metrics = new SealkvMetrics();
    const gc = new GcScheduler({ store, lastCommitTs: () => lastCommit, intervalMs: 5, retentionMs: 7_000, logger: silentLogger(), metrics, timers });
    expect(timers.intervalMs).toBe(5);
    expect(gc.status()).toEqual({ min_retained_ts: '0' });
    timers.tick();
    await gc.runOnce(); // joins the run the tick started

    const horizon = ts(3_000);
    expect(gc.minRetainedTS).toBe(horizon);
    expect(gc.minRetainedTS <= lastCommit).toBe(true);
    expect(gc.lastRemoved).toBe(3);
    expect(await versionsOf(store)).toEqual(
      [`k@${ts(3_000)}`, `k@${ts(4_000, 7)}`, `o@${ts(1_500)}`, `o@${ts(10_000)}`, `t@${ts(2_500)}`].sort(),
    );
    // The read views' timestamp, and every one down to the horizon, see what they saw before.
    expect(view(await store.scanAll({}, lastCommit, { now: 0n }))).toEqual(before);
    expect((await store.get(Buffer.from('k'), horizon, { now: 0n }))?.value.toString()).toBe('v3');
    expect((await store.get(Buffer.from('o'), horizon, { now: 0n }))?.value.toString()).toBe('o1');
    expect(await store.get(Buffer.from('t'), horizon, { now: 0n })).toBeUndefined();
    // Below the horizon, history is gone.
    expect(await store.get(Buffer.from('k'), ts(2_500), { now: 0n })).toBeUndefined();

    expect(gc.status()).toEqual({ min_retained_ts: horizon.toString() });
    expect((await metrics.storeMinRetainedTs.get()).values[0]?.value).toBe(Number(horizon));
    expect((await metrics.storeGcRemoved.get()).values[0]?.value).toBe(3);

    // A second run at the same horizon finds nothing more.
    await gc.runOnce();
    expect(gc.lastRemoved).toBe(0);
    expect((await metrics.storeGcRemoved.get()).values[0]?.value).toBe(3);
    await gc.close();
  });

  it('never computes a horizon above the last commit timestamp', () => {
    for (const last of [0n, 1n, ts(0, 5), ts(5), ts(5, 9), ts(1_700_000_000_000, 65_535)]) {
      for (const retention of [0, 1, 4, 5, 6, 600_000]) {
        const horizon = minRetainedTimestamp(last, retention);
        expect(horizon <= last).toBe(true);
        expect(horizon).toBe(packHlc(Math.max(0, Number(last >> 16n) - retention)));
      }
    }
    expect(minRetainedTimestamp(ts(10_000, 3), 7_000)).toBe(ts(3_000));
  });

  it('reads the last commit timestamp at each run', async () => {
    const horizons: bigint[] = [];
    let last = ts(20_000);
    const gc = new GcScheduler({
      store: { gc: async (min) => (horizons.push(min), { removed: 0 }) },
      lastCommitTs: () => last,
      intervalMs: 1,
      retentionMs: 1_000,
      logger: silentLogger(),
      timers: new ManualTimers(),
    });
    await gc.runOnce();
    last = ts(25_000, 4);
    await gc.runOnce();
    expect(horizons).toEqual([ts(19_000), ts(24_000)]);
    await gc.close();
  });

  it('never overlaps runs, and close waits for a running one and stops further runs', async () => {
    let calls = 0;
    let gate = deferred();
    const timers = new ManualTimers();
    const gc = new GcScheduler({
      store: {
        gc: async () => {
          calls++;
          await gate.promise;
          return { removed: 1 };
        },
      },
      lastCommitTs: () => ts(50_000),
      intervalMs: 10,
      retentionMs: 0,
      logger: silentLogger(),
      timers,
    });
    timers.tick();
    timers.tick();
    void gc.runOnce();
    await flush();
    expect(calls).toBe(1);
    gate.resolve();
    await gc.runOnce();
    expect(calls).toBe(1);

    gate = deferred();
    timers.tick();
    await flush();
    expect(calls).toBe(2);
    let closed = false;
    const closing = gc.close().then(() => (closed = true));
    await flush();
    expect(closed).toBe(false);
    expect(timers.cleared).toBe(true);
    gate.resolve();
    await closing;
    expect(closed).toBe(true);
    await gc.runOnce();
    timers.tick();
    await flush();
    expect(calls).toBe(2);
    expect(gc.lastRemoved).toBe(1);
  });

  it('logs a failing run and tries again at the next interval', async () => {
    const warnings: unknown[] = [];
    const logger = { warn: (fields: unknown) => warnings.push(fields), debug: () => undefined } as unknown as Logger;
    let fail = true;
    const timers = new ManualTimers();
    const gc = new GcScheduler({
      store: {
        gc: async () => {
          if (fail) throw new Error('engine busy');
          return { removed: 2 };
        },
      },
      lastCommitTs: () => ts(9_000),
      intervalMs: 10,
      retentionMs: 1_000,
      logger,
      timers,
    });
    timers.tick();
    await gc.runOnce();
    expect(warnings).toHaveLength(1);
    expect(gc.minRetainedTS).toBe(0n);
    fail = false;
    timers.tick();
    await gc.runOnce();
    expect(gc.minRetainedTS).toBe(ts(8_000));
    expect(gc.lastRemoved).toBe(2);
    await gc.close();
  });

  it('refuses intervals and retentions that are not whole milliseconds', () => {
    const base = { store: { gc: async () => ({ removed: 0 }) }, lastCommitTs: () => 0n, logger: silentLogger(), timers: new ManualTimers() };
    expect(() => new GcScheduler({ ...base, intervalMs: 0, retentionMs: 0 })).toThrow(RangeError);
    expect(() => new GcScheduler({ ...base, intervalMs: 10, retentionMs: -1 })).toThrow(RangeError);
    expect(() => new GcScheduler({ ...base, intervalMs: 1.5, retentionMs: 0 })).toThrow(RangeError);
  });
});

describe('--gc-interval-ms and --gc-retention-ms', () => {
  it('default to a minute and ten minutes, and take whole milliseconds', () => {
    expect(resolveStartConfig({ raftId: 'n1' }, '/w')).toMatchObject({ gcIntervalMs: 60_000, gcRetentionMs: 600_000 });
    expect(resolveStartConfig({ raftId: 'n1', gcIntervalMs: '250', gcRetentionMs: '0' }, '/w')).toMatchObject({ gcIntervalMs: 250, gcRetentionMs: 0 });
    expect(() => resolveStartConfig({ raftId: 'n1', gcIntervalMs: '0' })).toThrow(/--gc-interval-ms/);
    expect(() => resolveStartConfig({ raftId: 'n1', gcRetentionMs: '-5' })).toThrow(/--gc-retention-ms/);
    expect(() => resolveStartConfig({ raftId: 'n1', gcRetentionMs: '1e3' })).toThrow(/--gc-retention-ms/);
  });
});
