// Property test: MVCC reads and garbage collection against an in-memory
// model. Random puts and deletes at increasing timestamps on keys that
// extend one another (their versions interleave in store-key order), a GC
// at a random horizon, then every read at or above the horizon must match
// the model, and exactly the versions the model keeps must remain.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Store } from '../../src/store/index.js';
import { storeEngines } from '../support/store-engines.js';

const KEYS = ['a', 'ab', 'a\u0000', 'b', 'abc', ''];

type ModelOp = { key: string; value: string | null };

interface Model {
  versions: Map<string, { ts: bigint; value: string | null }[]>; // newest first
  maxTs: bigint;
}

function buildModel(batches: ModelOp[][]): Model {
  const versions = new Map<string, { ts: bigint; value: string | null }[]>();
  let ts = 0n;
  for (const batch of batches) {
    ts++;
    for (const op of batch) {
      const list = versions.get(op.key) ?? [];
      // Later ops of one batch on the same key win, as in the store.
      if (list[0]?.ts === ts) list.shift();
      list.unshift({ ts, value: op.value });
      versions.set(op.key, list);
    }
  }
  return { versions, maxTs: ts };
}

function modelGet(model: Model, key: string, readTs: bigint): string | undefined {
  const v = model.versions.get(key)?.find((x) => x.ts <= readTs);
  return v?.value ?? undefined;
}

function modelGc(model: Model, min: bigint): number {
  let kept = 0;
  for (const list of model.versions.values()) {
    const firstAtOrBelow = list.findIndex((v) => v.ts <= min);
    kept += firstAtOrBelow === -1 ? list.length : firstAtOrBelow + 1;
  }
  return kept;
}

const opArb = fc.record({ key: fc.constantFrom(...KEYS), value: fc.option(fc.string({ maxLength: 6 }), { nil: null, freq: 4 }) });
const scenarioArb = fc
  .array(fc.array(opArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 25 })
  .chain((batches) => fc.record({ batches: fc.constant(batches), min: fc.bigInt({ min: 0n, max: BigInt(batches.length + 1) }) }));

describe.each(storeEngines)('MVCC and GC against a model on $name', ({ name, open }) => {
  it('reads at every timestamp at or above the GC horizon match the model', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ batches, min }) => {
        const opened = await open();
        const store = new Store(opened.engine);
        try {
          let ts = 0n;
          for (const batch of batches) {
            ts++;
            await store.applyBatch(
              batch.map((op) =>
                op.value === null
                  ? { type: 'delete' as const, key: Buffer.from(op.key), commitTs: ts }
                  : { type: 'put' as const, key: Buffer.from(op.key), value: Buffer.from(op.value), commitTs: ts },
              ),
            );
          }
          const model = buildModel(batches);
          await store.gc(min);
          let stored = 0;
          for await (const _ of store.versions()) stored++;
          expect(stored).toBe(modelGc(model, min));
          for (let readTs = min; readTs <= model.maxTs + 1n; readTs++) {
            const gets = await store.getMany(KEYS.map((k) => Buffer.from(k)), readTs);
            expect(gets.map((e) => e?.value.toString())).toEqual(KEYS.map((k) => modelGet(model, k, readTs)));
            const scanned = await store.scanAll({}, readTs);
            const expected = [...KEYS]
              .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
              .flatMap((k) => {
                const v = modelGet(model, k, readTs);
                return v === undefined ? [] : [`${k}=${v}`];
              });
            expect(scanned.map((e) => `${e.key}=${e.value}`)).toEqual(expected);
          }
        } finally {
          await store.close();
          await opened.cleanup();
        }
      }),
      { numRuns: name === 'memory' ? 150 : 25 },
    );
  });
});
