// A node's own online sweeps (src/node/sweeps.ts) over an in-memory store
// that seals: the registration gate holds a sweep (waiting) until it passes,
// one sweep per target, a pause (snapshot install) stops it with its cursor
// and resume finishes it, a new process resumes a request it finds in the
// data dir, a refused target fails and is forgotten, and a finished key_id
// stays finished.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { silentLogger } from '../../src/log/index.js';
import { NodeSweeps, type SweepReport } from '../../src/node/index.js';
import { readSweepState } from '../../src/rewrite/index.js';
import { MemoryEngine, type Store } from '../../src/store/index.js';
import { NEW_KEY_ID, OLD_KEY_ID, storedVersions, sweepFixture } from '../support/rewrite-fixtures.js';

const VALUES = 300;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function loaded(): Promise<{ store: Store; dataDir: string }> {
  const f = sweepFixture(new MemoryEngine());
  for (let i = 0; i < VALUES; i++) await f.store.put(Buffer.from(`k${String(i).padStart(4, '0')}`), crypto.randomBytes(1024), BigInt(i + 1));
  f.rotate();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-sweeps-'));
  dirs.push(dataDir);
  return { store: f.store, dataDir };
}

async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${what} not within 5 s`);
}

async function report(sweeps: NodeSweeps, target: string): Promise<SweepReport | undefined> {
  return (await sweeps.status()).find((r) => r.target === target);
}

async function keyIdsLeft(store: Store, keyId: number): Promise<number> {
  return [...(await storedVersions(store)).values()].filter((v) => v.keyId === keyId).length;
}

const requestsFile = (dataDir: string): unknown => JSON.parse(fs.readFileSync(path.join(dataDir, 'rewrite-requests.json'), 'utf8'));

describe('node sweeps', () => {
  it('wait for the registration gate, run one sweep per target, and forget the request once done', async () => {
    const { store, dataDir } = await loaded();
    let registered = false;
    const sweeps = new NodeSweeps({ store, dataDir, gate: () => {
      if (!registered) throw sealError('ErrWriterNotRegistered', 'not yet');
    }, logger: silentLogger() });
    sweeps.resumeRequested();
    const first = await sweeps.start({ keyId: OLD_KEY_ID }, null);
    expect(first.phase).toBe('running');
    await until('waiting', async () => (await report(sweeps, String(OLD_KEY_ID)))?.phase === 'waiting');
    expect((await report(sweeps, String(OLD_KEY_ID)))?.error).toMatch(/ErrWriterNotRegistered/);
    expect(await keyIdsLeft(store, OLD_KEY_ID)).toBe(VALUES);
    // A second start while it runs reports the same sweep.
    expect((await sweeps.start({ keyId: OLD_KEY_ID }, 4)).phase).toBe('waiting');
    expect((await sweeps.status()).filter((r) => r.target === String(OLD_KEY_ID))).toHaveLength(1);
    expect(requestsFile(dataDir)).toEqual([{ target: String(OLD_KEY_ID), rate: null }]);
    registered = true;
    await until('done', async () => (await report(sweeps, String(OLD_KEY_ID)))?.phase === 'done');
    expect(await keyIdsLeft(store, OLD_KEY_ID)).toBe(0);
    expect(await keyIdsLeft(store, NEW_KEY_ID)).toBe(VALUES);
    expect(requestsFile(dataDir)).toEqual([]);
    // Finished stays finished: a new start does not sweep again.
    const again = await sweeps.start({ keyId: OLD_KEY_ID }, null);
    expect(again).toMatchObject({ phase: 'done', done: { rewritten: VALUES } });
    await sweeps.close();
  });

  it('stop on pause (snapshot install) with the cursor kept, finish after resume; a new process resumes a recorded request', async () => {
    const { store, dataDir } = await loaded();
    const gate = (): void => undefined;
    const sweeps = new NodeSweeps({ store, dataDir, gate, logger: silentLogger() });
    sweeps.resumeRequested();
    await sweeps.start({ keyId: OLD_KEY_ID }, 0.25);
    await until('progress', async () => ((await report(sweeps, String(OLD_KEY_ID)))?.progress?.rewritten ?? 0) > 0);
    await sweeps.pause();
    expect((await report(sweeps, String(OLD_KEY_ID)))?.phase).toBe('stopped');
    const left = await keyIdsLeft(store, OLD_KEY_ID);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(VALUES);
    expect((await readSweepState(store, { keyId: OLD_KEY_ID })).cursor).toBeDefined();
    // Paused: a start is recorded and waits for the resume.
    expect((await sweeps.start({ cleartext: true }, null)).phase).toBe('waiting');
    await sweeps.close();

    // As after a crash: a new process over the same store and data dir.
    const next = new NodeSweeps({ store, dataDir, gate, logger: silentLogger() });
    next.resumeRequested();
    await until('done after restart', async () => (await report(next, String(OLD_KEY_ID)))?.phase === 'done');
    const done = await report(next, String(OLD_KEY_ID));
    expect((done?.done as { scanned: number }).scanned).toBeLessThan(VALUES);
    expect(await keyIdsLeft(store, OLD_KEY_ID)).toBe(0);
    await next.close();
  });

  it('a target the engine refuses fails and is not resumed', async () => {
    const { store, dataDir } = await loaded();
    const sweeps = new NodeSweeps({ store, dataDir, gate: () => undefined, logger: silentLogger() });
    sweeps.resumeRequested();
    await sweeps.start({ keyId: NEW_KEY_ID }, null);
    await until('failed', async () => (await report(sweeps, String(NEW_KEY_ID)))?.phase === 'failed');
    expect((await report(sweeps, String(NEW_KEY_ID)))?.error).toMatch(/^ErrRewriteTargetActive/);
    expect(requestsFile(dataDir)).toEqual([]);
    await sweeps.close();
  });
});
