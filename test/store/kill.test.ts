// Durability under SIGKILL (SPEC §6): a child process applies batches with
// their applied index and acknowledges each; the parent kills it with
// SIGKILL at an arbitrary moment. After reopening, every acknowledged batch
// is there, the applied index is at least the last acknowledged one, and
// every batch is all there or not there at all. (rocksdb-native writes are
// not fsynced: this is process-kill durability; power loss is covered by
// the fsynced Raft log replaying from the store's applied index.)

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isSealError } from '../../src/errors/index.js';
import { openStore } from '../../src/store/index.js';
import { KILL_TEST_BATCH, killTestKey, killTestSealer, killTestValue } from '../support/store-kill-child.js';
import { distScript } from '../support/dist.js';
import { tempDir } from '../support/store-engines.js';

const CHILD = 'test/support/store-kill-child.js';
const ROUNDS = Number(process.env.SEALKV_KILL_ROUNDS ?? 3);

/** Runs the child until it acknowledged `minAcks` batches (or 10 s), then SIGKILLs it; returns the last ack. */
function runAndKill(dir: string, mode: string, dekHex: string, minAcks: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [distScript(CHILD), dir, mode], { env: { ...process.env, SEALKV_TEST_DEK_HEX: dekHex }, stdio: ['ignore', 'pipe', 'pipe'] });
    let lastAck = 0;
    let acks = 0;
    let partial = '';
    let stderr = '';
    // Kill at a moment that varies with timing, not at a batch boundary.
    const killAt = minAcks + crypto.randomInt(0, 50);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        lastAck = Number(line);
        if (++acks === killAt) child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited with ${code}: ${stderr}`));
      else resolve(lastAck);
    });
  });
}

describe('store data directory lock', () => {
  it('refuses a second open of the same data directory with ErrDataDirLocked', async () => {
    const dir = tempDir('sealkv-lock-');
    const first = await openStore(dir);
    try {
      await expect(openStore(dir)).rejects.toSatisfy((err) => isSealError(err, 'ErrDataDirLocked'));
    } finally {
      await first.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('store persist()', () => {
  it('moves applied batches out of the memtable into SST files (what power-loss durability needs)', async () => {
    const dir = tempDir('sealkv-persist-');
    const store = await openStore(dir);
    const ssts = (): string[] => fs.readdirSync(dir).filter((f) => f.endsWith('.sst'));
    try {
      await store.applyBatch([{ type: 'put', key: Buffer.from('k'), value: Buffer.from('v'), commitTs: 1n }], { appliedIndex: 7n });
      expect(ssts()).toEqual([]); // only in the memtable and the unsynced WAL
      await store.persist();
      expect(ssts().length).toBeGreaterThan(0);
      expect(await store.appliedIndex()).toBe(7n);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('store durability under SIGKILL', () => {
  it.each(['clear', 'sealed'])('keeps every acknowledged %s batch, atomically, across kills', async (mode) => {
    const dir = tempDir('sealkv-kill-');
    const dekHex = crypto.randomBytes(32).toString('hex');
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        const lastAck = await runAndKill(dir, mode, dekHex, 100);
        expect(lastAck).toBeGreaterThan(0);
        // A later local_epoch per reopen, as the sidecar would give.
        const store = await openStore(dir, { sealer: killTestSealer(dekHex, 100 + round), active: false });
        try {
          const applied = Number(await store.appliedIndex());
          expect(applied).toBeGreaterThanOrEqual(lastAck);
          const keys = [];
          for (let index = 1; index <= applied + 1; index++) for (let j = 0; j < KILL_TEST_BATCH; j++) keys.push(killTestKey(index, j));
          const entries = await store.getMany(keys, BigInt(applied + 10));
          for (let index = 1; index <= applied + 1; index++) {
            for (let j = 0; j < KILL_TEST_BATCH; j++) {
              const entry = entries[(index - 1) * KILL_TEST_BATCH + j];
              if (index <= applied) expect(entry?.value, `batch ${index}/${j}`).toEqual(killTestValue(index, j));
              else expect(entry, `batch ${index} is past the applied index`).toBeUndefined();
            }
          }
          expect((await store.scanAll({}, BigInt(applied + 10))).length).toBe(applied * KILL_TEST_BATCH);
        } finally {
          await store.close();
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
