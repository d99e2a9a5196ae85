// A KvRangeReader over a plain map (latin1 keys), in byte order for scans, and
// a helper that applies writes to it: the simplest store a kv test needs.

import type { KvRangeReader, KvWrite, VisibleValue } from '../../src/kv/index.js';

export type MapReader = KvRangeReader & { data: Map<string, VisibleValue>; apply(writes: readonly KvWrite[]): void };

export function mapReader(entries: [string, VisibleValue][] = []): MapReader {
  const data = new Map(entries);
  return {
    data,
    get: async (key) => data.get(key.toString('latin1')),
    scan: async (after, limit) =>
      [...data.keys()]
        .sort()
        .filter((k) => after === null || k > after.toString('latin1'))
        .slice(0, limit)
        .map((k) => ({ key: Buffer.from(k, 'latin1'), value: data.get(k)! })),
    apply(writes) {
      for (const w of writes) {
        if (w.kind === 'put') data.set(w.key.toString('latin1'), { value: w.value, expireAt: w.expireAt });
        else data.delete(w.key.toString('latin1'));
      }
    },
  };
}
