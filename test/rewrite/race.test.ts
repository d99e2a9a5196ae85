// The sweep raced against apply batches (new versions, deletes, and re-applies
// of an existing version), GC and the sweep's own batches (SPEC §11), on
// both engines, seeded and bounded. Afterwards every stored version must be
// exactly the model's: none resurrected after GC removed it, no re-applied
// value lost to a stale reseal, and none left under the old DEK.
//
// SEALKV_SEED=<n> replays one seed.

import { afterEach, describe, expect, it } from 'vitest';
import { cursorKey, runSweep } from '../../src/rewrite/index.js';
import { decodeStoreKey, type WriteOp } from '../../src/store/index.js';
import { seededRandom } from '../../src/raft/index.js';
import { NEW_KEY_ID, OLD_KEY_ID, storedVersions, sweepFixture } from '../support/rewrite-fixtures.js';
import { storeEngines, type OpenedEngine } from '../support/store-engines.js';

const SEEDS = process.env.SEALKV_SEED === undefined ? [1, 2, 3] : [Number(process.env.SEALKV_SEED)];
const KEYS = 24;
const STEPS = 60;

interface ModelVersion {
  tombstone: boolean;
  value?: Buffer;
  expireAt: bigint;
}

const opened: OpenedEngine[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.cleanup()));
});

describe.each(storeEngines)('sweep racing apply and GC on $name', ({ open }) => {
  it.each(SEEDS)('seed %i: every version equals the model afterwards', async (seed) => {
    const o = await open();
    opened.push(o);
    const { store, rotate } = sweepFixture(o.engine);
    const random = seededRandom(seed);
    const pick = (n: number): number => Math.floor(random() * n);
    const model = new Map<string, ModelVersion>(); // `<key>@<ts>`
    const keyName = (i: number): string => `k${String(i).padStart(3, '0')}`;
    let ts = 0n;

    const reapply = (ops: WriteOp[], id: string, v: ModelVersion): void => {
      const [k, t] = id.split('@') as [string, string];
      const value = Buffer.from(`re-applied ${seed}/${ts}/${id}`);
      ops.push({ type: 'put', key: Buffer.from(k), value, commitTs: BigInt(t), ...(v.expireAt === 0n ? {} : { expireAt: v.expireAt }) });
      model.set(id, { tombstone: false, value, expireAt: v.expireAt });
    };

    // Re-applies one of the live versions just past the sweep's cursor: the
    // ones its next batch has most likely read already.
    const reapplyNearCursor = async (): Promise<void> => {
      const cursor = await store.getInternal(cursorKey({ keyId: OLD_KEY_ID }));
      const after = cursor === undefined ? undefined : decodeStoreKey(cursor);
      const order = [...model.entries()]
        .filter(([, v]) => !v.tombstone)
        .map(([id, v]) => ({ id, v, key: id.split('@')[0]!, t: BigInt(id.split('@')[1]!) }))
        .sort((x, y) => (x.key !== y.key ? (x.key < y.key ? -1 : 1) : x.t > y.t ? -1 : x.t < y.t ? 1 : 0))
        .filter((x) => after === undefined || x.key > after.userKey.toString('latin1') || (x.key === after.userKey.toString('latin1') && x.t < after.commitTs));
      const hit = order[pick(Math.min(8, order.length))];
      if (hit === undefined) return;
      const ops: WriteOp[] = [];
      reapply(ops, hit.id, hit.v);
      await store.applyBatch(ops);
    };

    const applyRandom = async (): Promise<void> => {
      const ops: WriteOp[] = [];
      const used = new Set<string>();
      ts += 1n;
      for (let n = 1 + pick(6); n > 0; n--) {
        const key = keyName(pick(KEYS));
        if (used.has(key)) continue;
        used.add(key);
        const roll = random();
        if (roll < 0.2) {
          ops.push({ type: 'delete', key: Buffer.from(key), commitTs: ts });
          model.set(`${key}@${ts}`, { tombstone: true, expireAt: 0n });
        } else if (roll < 0.35 && model.size > 0) {
          // Re-apply an existing live version with new bytes (what replay after a crash may write): the sweep must not undo it.
          const live = [...model.entries()].filter(([, v]) => !v.tombstone);
          if (live.length === 0) continue;
          const [id, v] = live[pick(live.length)]!;
          if (used.has(id.split('@')[0]!) && id.split('@')[0] !== key) continue;
          reapply(ops, id, v);
        } else {
          const value = Buffer.from(`${key} v${ts} `.repeat(1 + pick(40)));
          const expireAt = random() < 0.2 ? 9_000_000_000_000n + ts : 0n;
          ops.push({ type: 'put', key: Buffer.from(key), value, commitTs: ts, ...(expireAt === 0n ? {} : { expireAt }) });
          model.set(`${key}@${ts}`, { tombstone: false, value, expireAt });
        }
      }
      await store.applyBatch(ops);
    };

    const gcModel = (minRetained: bigint): void => {
      const byKey = new Map<string, bigint[]>();
      for (const id of model.keys()) {
        const [k, t] = id.split('@') as [string, string];
        if (BigInt(t) <= minRetained) byKey.set(k, [...(byKey.get(k) ?? []), BigInt(t)]);
      }
      for (const [k, stamps] of byKey) {
        stamps.sort((a, b) => (a < b ? 1 : -1));
        for (const t of stamps.slice(1)) model.delete(`${k}@${t}`);
      }
    };

    // History under the old DEK, then rotation; the race runs under the new one.
    for (let i = 0; i < 40; i++) await applyRandom();
    rotate();
    let sweepDone = false;
    const step = async (): Promise<void> => {
      if (random() < 0.7) {
        await applyRandom();
      } else {
        const minRetained = ts - BigInt(pick(10));
        gcModel(minRetained);
        await store.gc(minRetained);
      }
    };
    // Steps run between a batch's reads and its write (beforeBatch, so the
    // guard is certainly exercised) and from a loop beside the sweep.
    // Both feed one chain, so the model follows the store's write order.
    let chain = Promise.resolve();
    const enqueueStep = (): Promise<void> => (chain = chain.then(step));
    const sweep = runSweep({
      store,
      target: { keyId: OLD_KEY_ID },
      batchVersions: 3 + pick(5),
      beforeBatch: async () => {
        for (let n = pick(3); n > 0; n--) await enqueueStep();
        if (random() < 0.5) await (chain = chain.then(reapplyNearCursor));
      },
    }).finally(() => (sweepDone = true));
    // No steps after the sweep ended: a later GC could hide a version it resurrected.
    for (let steps = 0; steps < STEPS && !sweepDone; steps++) {
      await enqueueStep();
      if (random() < 0.5) await new Promise((resolve) => setImmediate(resolve));
    }
    const final = await sweep;
    await chain;
    expect(final.done, `seed ${seed}`).toBe(true);
    expect(final.skipped, `seed ${seed}: the race made some reseals stale`).toBeGreaterThan(0);

    const stored = await storedVersions(store);
    expect([...stored.keys()].sort(), `seed ${seed}: the stored versions are the model's`).toEqual([...model.keys()].sort());
    for (const [id, v] of model) {
      const s = stored.get(id)!;
      expect({ tombstone: s.tombstone, value: s.value, expireAt: s.expireAt }, `seed ${seed}: ${id}`).toEqual({ tombstone: v.tombstone, value: v.tombstone ? undefined : v.value, expireAt: v.expireAt });
      expect(s.keyId, `seed ${seed}: ${id} is re-sealed`).toBe(v.tombstone ? 0 : NEW_KEY_ID);
    }
  });
});
