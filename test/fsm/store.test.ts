// The state machine over the real MVCC store (src/store), on the memory and
// RocksDB engines: replicas produce byte-identical snapshots, restarts replay
// idempotently, snapshots install over existing data, and a SIGKILL at any
// moment loses nothing that was acknowledged.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { StateMachine, fsmStoreOver, type EntryToApply } from '../../src/fsm/index.js';
import { kvExecutor } from '../../src/kv/index.js';
import { MemoryEngine, RocksEngine, Store, openStore } from '../../src/store/index.js';
import { distScript } from '../support/dist.js';
import { kvLog } from '../support/fsm-logs.js';
import { tempDir } from '../support/store-engines.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function rocksDir(): string {
  const dir = tempDir('sealkv-fsm-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function rocksStore(dir = rocksDir()): Promise<Store> {
  const store = new Store(await RocksEngine.open(dir));
  cleanups.push(() => store.close());
  return store;
}

async function snapshotBytes(machine: StateMachine): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await machine.snapshot()).stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function applyGrouped(machine: StateMachine, log: readonly EntryToApply[], group: number): Promise<void> {
  for (let i = 0; i < log.length; i += group) await machine.applyEntries(log.slice(i, i + group));
}

describe('StateMachine over the MVCC store', () => {
  it('replicas on the memory and RocksDB engines end byte-identical', async () => {
    const log = kvLog(11, 400);
    const a = await StateMachine.open(fsmStoreOver(new Store(new MemoryEngine())), kvExecutor);
    const b = await StateMachine.open(fsmStoreOver(await rocksStore()), kvExecutor);
    await applyGrouped(a, log, 1);
    await applyGrouped(b, log, 13);
    const bytes = await snapshotBytes(a);
    expect(bytes.equals(await snapshotBytes(b))).toBe(true);
    expect(bytes.subarray(0, 8).toString()).toBe('EKVTHLC1');
  });

  it('replays idempotently after a restart from an older applied index', async () => {
    const log = kvLog(12, 300);
    const reference = await StateMachine.open(fsmStoreOver(new Store(new MemoryEngine())), kvExecutor);
    await applyGrouped(reference, log, 7);
    const dir = rocksDir();
    const first = new Store(await RocksEngine.open(dir));
    await applyGrouped(await StateMachine.open(fsmStoreOver(first), kvExecutor), log.slice(0, 123), 5);
    await first.close();
    const reopened = await rocksStore(dir);
    const machine = await StateMachine.open(fsmStoreOver(reopened), kvExecutor);
    expect(machine.appliedIndex).toBe(123);
    await applyGrouped(machine, log, 10);
    await applyGrouped(machine, log.slice(50), 3);
    expect((await snapshotBytes(machine)).equals(await snapshotBytes(reference))).toBe(true);
  });

  it('installs a snapshot over a store that already holds data', async () => {
    const log = kvLog(13, 300);
    const leader = await StateMachine.open(fsmStoreOver(await rocksStore()), kvExecutor);
    const lagging = await StateMachine.open(fsmStoreOver(await rocksStore()), kvExecutor);
    await applyGrouped(leader, log.slice(0, 200), 8);
    await applyGrouped(lagging, log.slice(0, 60), 8);
    const snapshot = await leader.snapshot();
    await lagging.restoreSnapshot(snapshot.stream, snapshot.appliedIndex);
    expect(lagging.appliedIndex).toBe(200);
    await applyGrouped(leader, log.slice(200), 4);
    await applyGrouped(lagging, log.slice(200), 9);
    expect((await snapshotBytes(lagging)).equals(await snapshotBytes(leader))).toBe(true);
  });

  it('halts when a snapshot install fails part way', async () => {
    const source = await StateMachine.open(fsmStoreOver(new Store(new MemoryEngine())), kvExecutor);
    await applyGrouped(source, kvLog(14, 50), 5);
    const whole = await snapshotBytes(source);
    const machine = await StateMachine.open(fsmStoreOver(new Store(new MemoryEngine())), kvExecutor);
    const truncated = (async function* () {
      yield whole.subarray(0, whole.length - 40);
    })();
    await expect(machine.restoreSnapshot(truncated)).rejects.toMatchObject({ code: 'ErrSnapshotCorrupt' });
    expect(machine.halted?.code).toBe('ErrSnapshotCorrupt');
    await expect(machine.applyEntries([{ index: 51, proposalId: 0n, payload: null }])).rejects.toThrow(/halted/);
  });

  it('loses no acknowledged apply when killed with SIGKILL, and converges on restart', async () => {
    const script = distScript('test/fsm/apply-child.js');
    const seed = 21;
    const length = 2_000;
    const log = kvLog(seed, length);
    const reference = await StateMachine.open(fsmStoreOver(new Store(new MemoryEngine())), kvExecutor);
    await applyGrouped(reference, log, 50);
    const dir = rocksDir();
    for (let round = 0; round < 3; round++) {
      let lastAck = 0;
      let done = false;
      const child = spawn(process.execPath, [script, dir, String(seed), String(length)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const killAt = 100 + round * 250;
      let acks = 0;
      await new Promise<void>((resolve) => {
        let buffered = '';
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) {
            if (line === 'done') done = true;
            else if (line.startsWith('ack ')) {
              lastAck = Number(line.slice(4));
              if (++acks === killAt) child.kill('SIGKILL');
            }
          }
        });
        child.once('exit', () => resolve());
        setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
      });
      const store = await openStore(dir);
      const applied = Number(await store.appliedIndex());
      await store.close();
      expect(applied).toBeGreaterThanOrEqual(lastAck);
      if (done) break;
    }
    const store = await rocksStore(dir);
    const machine = await StateMachine.open(fsmStoreOver(store), kvExecutor);
    await applyGrouped(machine, log, 25);
    expect((await snapshotBytes(machine)).equals(await snapshotBytes(reference))).toBe(true);
  });
});
