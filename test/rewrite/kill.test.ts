// The sweep under SIGKILL (SPEC §11, §13): a child process sweeps a RocksDB
// store in small batches and is killed at a random batch; after each kill
// the store reopens, everything up to the cursor is re-sealed and nothing
// after it, every version reads back its value, and the next run resumes
// from the cursor (at a higher local_epoch, as a restart would have). The
// last run finishes: done row, no cursor, no version left under the old DEK.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readSweepState } from '../../src/rewrite/index.js';
import { openStore, versionRowKey, type Store, type StoredVersion } from '../../src/store/index.js';
import { KILL_NEW_KEY_ID, KILL_OLD_KEY_ID, killSweepSealer, killSweepValue } from '../support/rewrite-kill-child.js';
import { distScript } from '../support/dist.js';
import { tempDir } from '../support/store-engines.js';

const CHILD = 'test/support/rewrite-kill-child.js';
const ROUNDS = Number(process.env.SEALKV_KILL_ROUNDS ?? 3);
const KEYS = 400;
const VERSIONS = 3; // commit_ts 1..3 per key; ts 2 of every tenth key is a tombstone

/** Runs the child; kills it after `killAfter` progress lines (or lets it finish when undefined). */
function runChild(dir: string, env: Record<string, string>, epoch: number, killAfter?: number): Promise<{ killed: boolean; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [distScript(CHILD), dir, String(epoch)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let partial = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (killAfter !== undefined && lines.length === killAfter) child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve({ killed: true, lines });
      else if (code === 0) resolve({ killed: false, lines });
      else reject(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
}

/** Every version: its value reads back, and its key_id is the new one exactly when it is at or before `cursorRow`. */
async function checkStore(store: Store, cursorRow: Buffer | undefined, done: boolean): Promise<{ resealed: number; old: number }> {
  let resealed = 0;
  let old = 0;
  const versions: StoredVersion[] = [];
  for await (const v of store.versions()) versions.push(v);
  const values = store.openVersions(versions); // one batch open
  for (const [k, v] of versions.entries()) {
    const i = Number(v.key.toString().slice(4));
    const ts = Number(v.commitTs);
    if (v.header.tombstone) {
      expect(ts === 2 && i % 10 === 0).toBe(true);
      continue;
    }
    expect(values[k], `${v.key.toString()}@${ts}`).toEqual(killSweepValue(i, ts));
    const row = versionRowKey(v.key, v.commitTs);
    const shouldBeNew = done || (cursorRow !== undefined && Buffer.compare(row, cursorRow) <= 0);
    expect(v.keyId, `${v.key.toString()}@${ts}`).toBe(shouldBeNew ? KILL_NEW_KEY_ID : KILL_OLD_KEY_ID);
    if (v.keyId === KILL_NEW_KEY_ID) resealed++;
    else old++;
  }
  expect(versions.length).toBe(KEYS * VERSIONS);
  return { resealed, old };
}

describe('rewrite sweep under SIGKILL', () => {
  it('resumes from its cursor after kills at random batches and finishes with every version readable and re-sealed', async () => {
    const dir = tempDir('sealkv-rewrite-kill-');
    const env = { SEALKV_TEST_OLD_DEK_HEX: crypto.randomBytes(32).toString('hex'), SEALKV_TEST_NEW_DEK_HEX: crypto.randomBytes(32).toString('hex') };
    try {
      const writer = await openStore(dir, { sealer: killSweepSealer(env.SEALKV_TEST_OLD_DEK_HEX, env.SEALKV_TEST_NEW_DEK_HEX, 1, KILL_OLD_KEY_ID), active: true });
      for (let ts = 1; ts <= VERSIONS; ts++) {
        await writer.applyBatch(
          Array.from({ length: KEYS }, (_, i) => {
            const key = Buffer.from(`key-${String(i).padStart(5, '0')}`);
            return ts === 2 && i % 10 === 0 ? { type: 'delete' as const, key, commitTs: BigInt(ts) } : { type: 'put' as const, key, value: killSweepValue(i, ts), commitTs: BigInt(ts) };
          }),
        );
      }
      await writer.close();
      const live = KEYS * VERSIONS - KEYS / 10;

      let lastResealed = 0;
      for (let round = 1; round <= ROUNDS; round++) {
        // 1160 live versions in batches of 16: about 73 batches per full sweep.
        const { killed } = await runChild(dir, env, 10 + round, 1 + crypto.randomInt(0, Math.floor(66 / ROUNDS)));
        expect(killed).toBe(true);
        const store = await openStore(dir, { sealer: killSweepSealer(env.SEALKV_TEST_OLD_DEK_HEX, env.SEALKV_TEST_NEW_DEK_HEX, 50 + round, KILL_NEW_KEY_ID), active: true });
        try {
          const { cursor, done } = await readSweepState(store, { keyId: KILL_OLD_KEY_ID });
          const cursorRow = cursor === undefined ? undefined : Buffer.concat([Buffer.from([0x03]), cursor]);
          const { resealed, old } = await checkStore(store, cursorRow, done !== undefined);
          expect(resealed + old).toBe(live);
          expect(resealed, `round ${round}: progress only moves forward`).toBeGreaterThanOrEqual(lastResealed);
          lastResealed = resealed;
        } finally {
          await store.close();
        }
      }
      const { killed, lines } = await runChild(dir, env, 100);
      expect(killed).toBe(false);
      expect(lines.at(-1)).toBe('done');
      const store = await openStore(dir, { sealer: killSweepSealer(env.SEALKV_TEST_OLD_DEK_HEX, env.SEALKV_TEST_NEW_DEK_HEX, 200, KILL_NEW_KEY_ID), active: true });
      try {
        const { cursor, done } = await readSweepState(store, { keyId: KILL_OLD_KEY_ID });
        expect(cursor).toBeUndefined();
        expect(done?.active_key_id).toBe(KILL_NEW_KEY_ID);
        expect(await checkStore(store, undefined, true)).toEqual({ resealed: live, old: 0 });
        const all = await store.scanAll({}, 10n);
        expect(all.length).toBe(KEYS);
      } finally {
        await store.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Child processes and a full-store check per round: generous for a loaded 2-core machine.
  }, 120_000);
});
