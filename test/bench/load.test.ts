// The end-to-end benchmark's own parts: the log-bucketed latency histogram
// (percentiles within its stated error of the exact ones) and the pipelined
// RESP load generator against a RESP server over the in-memory engine
// (every command answered and counted, writers and readers as specified).
// Counts only: timing belongs to `npm run bench`.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatencyHistogram } from '../../bench/lib/histogram.js';
import { fill, isWriter, runLoad, valuePool, type LoadSpec } from '../../bench/lib/load.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { MemoryEngine, RespServer } from '../../src/server/index.js';

describe('LatencyHistogram', () => {
  it('reports percentiles within 0.8% of the exact ones, and merges by adding counts', () => {
    let seed = 12345;
    const random = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const values = Array.from({ length: 20_000 }, () => 10 ** (1 + 5 * random()));
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    values.forEach((v, i) => (i % 2 === 0 ? a : b).record(v));
    a.merge(b);
    expect(a.count).toBe(values.length);
    const sorted = [...values].sort((x, y) => x - y);
    for (const p of [50, 90, 99, 99.9]) {
      const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
      expect(Math.abs(a.percentile(p) - exact) / exact).toBeLessThan(0.008);
    }
    expect(a.percentile(100)).toBeLessThanOrEqual(a.maxUs);
    expect(new LatencyHistogram().percentile(99)).toBe(0);
  });
});

describe('the pipelined RESP load generator', () => {
  let server: RespServer;
  let port: number;
  const engine = new MemoryEngine();

  beforeAll(async () => {
    server = new RespServer({ engine, port: 0, metrics: new SealkvMetrics() });
    ({ port } = await server.start());
  });
  afterAll(async () => {
    await server.close();
  });

  it('splits connections into writers and readers by the set fraction', () => {
    const spec = (setFraction: number): LoadSpec => ({ setFraction, valueBytes: 8, keyspace: 10, connections: 8, pipeline: 4 });
    const writers = (f: number): number => Array.from({ length: 8 }, (_, c) => isWriter(spec(f), c)).filter(Boolean).length;
    expect([writers(0), writers(0.5), writers(1)]).toEqual([0, 4, 8]);
  });

  it('fills the keyspace, then answers and counts every command of a mixed run', async () => {
    const spec: LoadSpec = { setFraction: 0.5, valueBytes: 100, keyspace: 300, connections: 4, pipeline: 8 };
    const values = valuePool(spec.valueBytes);
    await fill([port], spec, values);
    const stored = await engine.read(Array.from({ length: spec.keyspace }, (_, n) => ({ op: 'get' as const, key: Buffer.from(`bench:${n}`) })), { linearizable: false });
    expect(stored.every((r) => r.kind === 'bulk' && r.value.length === spec.valueBytes)).toBe(true);

    const result = await runLoad([port], spec, values, 300);
    expect(result.errors).toBe(0);
    expect(result.sets).toBeGreaterThan(0);
    expect(result.gets).toBeGreaterThan(0);
    expect(result.sets % spec.pipeline).toBe(0);
    expect(result.histogram.count).toBe(result.sets + result.gets);
  });

  it('a reads-only run sends no SET', async () => {
    const spec: LoadSpec = { setFraction: 0, valueBytes: 16, keyspace: 5, connections: 2, pipeline: 2 };
    const result = await runLoad([port], spec, valuePool(16), 100);
    expect(result.sets).toBe(0);
    expect(result.gets).toBeGreaterThan(0);
    expect(result.histogram.count).toBe(result.gets);
  });
});
