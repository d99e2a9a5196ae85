// `sealkv backup create|verify|restore` end to end with real processes: one
// single-voter node (file KEK) with cleartext values from before Phase 1,
// then Phase 1 and 2, several versions of a key, TTLs, deletes, a storage
// DEK rotation and more writes. A backup is taken through the admin API
// while a client keeps writing; it must verify with the KEK, hold no
// plaintext of any value written after Phase 1 (the cleartext ones are the
// scanner's positive control) and no KEK bytes; restored into an empty data
// dir it must start as a new node serving every key acknowledged before the
// backup, seal its own writes only under DEKs the original never had, and
// grow by a member that joins it (the data reaches it only by snapshot: the
// new cluster's log does not hold it).

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  adminArgs,
  collidingId,
  expectCliFailure,
  expectCliOk,
  needle,
  needlesFound,
  nodeArgs,
  nodePorts,
  retrying,
  runCli,
  startedNode,
  waitLeader,
  writeSecrets,
  type NodePorts,
} from '../support/backup-fixtures.js';
import { NodeProcess } from '../support/node-process.js';

let dir: string;
let kekFile: string;
const running: NodeProcess[] = [];

/** key → the value acknowledged last before the backup (null: deleted). */
const expected = new Map<string, string | null>();
const cleartextValues: string[] = [];
const sealedValues: string[] = [];
const ttlKeys: string[] = [];
let original: { ports: NodePorts; node: NodeProcess; dataDir: string };
let originalKeyIds: number[] = [];
let backupDir: string;
let restoredDir: string;
let restore: Record<string, any>;

async function set(ports: NodePorts, key: string, value: string, ...extra: string[]): Promise<void> {
  await retrying(ports.resp, (c) => (extra.length === 0 ? c.set(key, value) : c.call('SET', key, value, ...extra)));
}

function cli(args: string[]): Promise<ReturnType<typeof runCli> extends Promise<infer R> ? R : never> {
  return runCli(dir, args);
}

async function status(ports: NodePorts, verify = false): Promise<Record<string, any>> {
  return expectCliOk(await cli(['encryption', 'status', ...adminArgs(dir, ports), '--json', ...(verify ? ['--verify'] : [])]), 'encryption status');
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-backup-'));
  writeSecrets(dir);
  kekFile = path.join(dir, 'kek.bin');
  fs.writeFileSync(kekFile, crypto.randomBytes(32), { mode: 0o600 });
  const ports = await nodePorts();
  const dataDir = path.join(dir, 'n1');
  const node = await startedNode(nodeArgs({ id: 'n1', dataDir, ports, dir, kek: ['--kek-file', kekFile] }), dir, ports);
  running.push(node);
  original = { ports, node, dataDir };
  const put = async (key: string, value: string, sealed: boolean, ...extra: string[]): Promise<void> => {
    await set(ports, key, value, ...extra);
    expected.set(key, value);
    (sealed ? sealedValues : cleartextValues).push(value);
  };
  for (let i = 0; i < 3; i++) await put(`clear-${i}`, needle('clear'), false);
  for (const verb of ['enable-storage-envelope', 'enable-raft-envelope']) expectCliOk(await cli(['encryption', verb, ...adminArgs(dir, ports), '--json']), verb);
  for (let v = 1; v <= 3; v++) await put('multi', needle(`multi-v${v}`), true);
  for (let i = 0; i < 3; i++) {
    await put(`ttl-${i}`, needle('ttl'), true, 'EX', '3600');
    ttlKeys.push(`ttl-${i}`);
  }
  for (let i = 0; i < 3; i++) {
    await put(`del-${i}`, needle('del'), true);
    await retrying(ports.resp, (c) => c.del(`del-${i}`));
    expected.set(`del-${i}`, null);
  }
  for (let i = 0; i < 5; i++) await put(`plain-${i}`, needle('plain'), true);
  expectCliOk(await cli(['encryption', 'rotate-dek', '--purpose', 'storage', ...adminArgs(dir, ports), '--json']), 'rotate-dek');
  await put('multi', needle('multi-v4'), true);
  for (let i = 0; i < 5; i++) await put(`rot-${i}`, needle('rot'), true);
  originalKeyIds = ((await status(ports)).keys_present as number[]).slice();
  expect(originalKeyIds).toHaveLength(3); // first storage DEK, rotated storage DEK, raft DEK
}, 60_000);

afterAll(async () => {
  await Promise.all(running.map((n) => n.stop('SIGKILL')));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('backup of a running encrypted node', () => {
  it('is taken online under client traffic and verifies with the KEK: every encrypted value opens', async () => {
    const acked: { key: string; value: string }[] = [];
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop && i < 5_000; i++) {
        const value = needle('traffic');
        await set(original.ports, `traffic-${i}`, value);
        acked.push({ key: `traffic-${i}`, value });
      }
    })();
    while (acked.length < 20) await new Promise((r) => setTimeout(r, 20));
    const before = acked.slice();
    backupDir = path.join(dir, 'backup-online');
    const created = expectCliOk(await cli(['backup', 'create', ...adminArgs(dir, original.ports), '--out', backupDir, '--json']), 'backup create');
    const during = acked.length;
    stop = true;
    await traffic;
    expect(acked.length, 'the client kept writing while the backup ran').toBeGreaterThan(before.length);
    for (const w of before) {
      expected.set(w.key, w.value);
      sealedValues.push(w.value);
    }
    for (const w of acked.slice(before.length)) sealedValues.push(w.value);
    expect(created.mode).toBe('online');
    expect(created.node.raft_id).toBe('n1');
    expect(created.applied_index).toBeGreaterThan(0);
    expect(created.encryption.keys.map((k: { key_id: number }) => k.key_id).sort()).toEqual([...originalKeyIds].sort());
    expect(fs.readdirSync(backupDir).sort()).toEqual(['backup.json', 'keys.json', 'store.snap']);

    const report = expectCliOk(await cli(['backup', 'verify', '--in', backupDir, '--kek-file', kekFile, '--json']), 'backup verify');
    expect(report.failures).toBe(0);
    expect(report.cleartext_versions, 'the values written before Phase 1').toBe(3);
    expect(report.tombstones, 'the deletes').toBe(3);
    const perKeyId = report.per_key_id as Record<string, number>;
    expect(Object.keys(perKeyId), 'values under the first and the rotated storage DEK').toHaveLength(2);
    for (const id of Object.keys(perKeyId)) expect(originalKeyIds).toContain(Number(id));
    // multi ×4, ttl 3, del 3 (the values; their tombstones are cleartext), plain 5, rot 5, then the traffic.
    const minimum = 4 + 3 + 3 + 5 + 5 + before.length;
    expect(report.encrypted_versions).toBeGreaterThanOrEqual(minimum);
    expect(report.encrypted_versions).toBeLessThanOrEqual(minimum + (during - before.length) + 1);
    console.log(`online backup: ${report.rows} rows, ${report.encrypted_versions} encrypted versions opened ${JSON.stringify(perKeyId)}, ${before.length} writes acknowledged before it, ${acked.length - before.length} during or after`);
  }, 60_000);

  it('holds no plaintext of the values sealed after Phase 1 and no KEK bytes (the cleartext ones are found)', () => {
    const sealed = sealedValues.map((v) => Buffer.from(v));
    expect(needlesFound(backupDir, sealed), 'sealed values in the clear').toEqual([]);
    expect(needlesFound(backupDir, cleartextValues.map((v) => Buffer.from(v))), 'the scanner finds cleartext values').toEqual([0, 1, 2]);
    const kek = fs.readFileSync(kekFile);
    expect(needlesFound(backupDir, [kek, Buffer.from(kek.toString('base64')), Buffer.from(kek.toString('hex'))]), 'KEK bytes').toEqual([]);
  });
});

describe('restore of the backup into an empty data dir', () => {
  let restored: { ports: NodePorts; node: NodeProcess };

  it('writes a data dir from which a new node starts and serves every key acknowledged before the backup', async () => {
    restoredDir = path.join(dir, 'restored');
    fs.mkdirSync(restoredDir);
    restore = expectCliOk(await cli(['backup', 'restore', '--in', backupDir, '--data-dir', restoredDir, '--kek-file', kekFile, '--json']), 'backup restore');
    expect(restore.raft_id).toBe('n1');
    expect(restore.raft_envelope_cutover_index, 'Phase 2 from the new log\'s first entry').toBe(1);
    expect(restore.storage_envelope_active).toBe(true);
    const ports = await nodePorts();
    const node = await startedNode(nodeArgs({ id: 'n1', dataDir: restoredDir, ports, dir, kek: ['--kek-file', kekFile] }), dir, ports);
    running.push(node);
    restored = { ports, node };
    const keys = [...expected.keys()];
    const got = await retrying(ports.resp, (c) => c.mget(...keys));
    expect(got).toEqual(keys.map((k) => expected.get(k)));
    for (const key of ttlKeys) {
      const ttl = await retrying(ports.resp, (c) => c.ttl(key));
      expect(ttl, key).toBeGreaterThan(3000);
    }
  }, 60_000);

  it('seals its new writes only under fresh DEKs the original never had, also after a restart', async () => {
    const fresh = [restore.new_active.storage as number, restore.new_active.raft as number];
    for (const id of fresh) {
      expect(typeof id).toBe('number');
      expect(originalKeyIds).not.toContain(id);
    }
    for (let i = 0; i < 10; i++) await set(restored.ports, `new-${i}`, needle('new'));
    let s = await status(restored.ports, true);
    expect(s.active).toEqual({ storage: fresh[0], raft: fresh[1] });
    expect(s.versions_per_key_id[String(fresh[0])], 'the 10 new writes, under the fresh storage DEK').toBe(10);
    for (const id of originalKeyIds) expect(s.keys_present, 'the backup\'s DEKs stay, for reading').toContain(id);

    // A restart bumps every local_epoch and registers again: no ErrLocalEpochRollback.
    expect(await restored.node.stop('SIGTERM')).toBe(0);
    await restored.node.start();
    await waitLeader(restored.ports);
    await set(restored.ports, 'after-restart', 'x');
    s = await status(restored.ports, true);
    expect(s.versions_per_key_id[String(fresh[0])]).toBe(11);
    const back = await retrying(restored.ports.resp, (c) => c.mget('multi', 'plain-0', 'del-0'));
    expect(back).toEqual([expected.get('multi'), expected.get('plain-0'), null]);

    // The original goes on under its own DEKs, untouched by the restore.
    await set(original.ports, 'original-after', 'y');
    const o = await status(original.ports);
    expect(fresh).not.toContain(o.active.storage);
    expect(fresh).not.toContain(o.active.raft);
  }, 60_000);

  it('grows by a member that joins the new cluster and learns the data by snapshot', async () => {
    const ports = await nodePorts();
    const leaderRaft = `127.0.0.1:${restored.ports.raft}`;
    const args = nodeArgs({ id: 'n2', dataDir: path.join(dir, 'joined-n2'), ports, dir, kek: ['--kek-file', kekFile] });
    args[args.indexOf('--peers') + 1] = `n1=${leaderRaft}`;
    const joiner = new NodeProcess([...args, '--join', leaderRaft], dir);
    running.push(joiner);
    await joiner.start();
    const res = await fetch(`http://127.0.0.1:${restored.ports.admin}/cluster/learners`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'n2', raft_address: `127.0.0.1:${ports.raft}` }),
      signal: AbortSignal.timeout(30_000),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const keys = [...expected.keys()];
    const want = keys.map((k) => expected.get(k));
    let got: (string | null)[] = [];
    for (const end = Date.now() + 30_000; Date.now() < end; ) {
      got = await retrying(ports.resp, (c) => c.mget(...keys)).catch(() => []);
      if (JSON.stringify(got) === JSON.stringify(want)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(got, 'the joined member serves the restored data').toEqual(want);
    const s = await status(ports);
    expect(s.active).toEqual(restore.new_active);
    expect(s.raft_envelope_cutover_index).toBe(1);
    expect(await joiner.stop('SIGTERM')).toBe(0);
  }, 60_000);

  it('under another --raft-id: starts and serves; a --raft-id sharing a writer\'s node_id16 is refused', async () => {
    const colliding = collidingId('n1');
    const refusedDir = path.join(dir, 'restored-colliding');
    const line = expectCliFailure(await cli(['backup', 'restore', '--in', backupDir, '--data-dir', refusedDir, '--kek-file', kekFile, '--raft-id', colliding]), 'ErrNodeIDCollision');
    expect(line).toContain(colliding);
    expect(fs.existsSync(refusedDir), 'nothing written').toBe(false);

    const otherDir = path.join(dir, 'restored-n9');
    const report = expectCliOk(await cli(['backup', 'restore', '--in', backupDir, '--data-dir', otherDir, '--kek-file', kekFile, '--raft-id', 'n9', '--json']), 'restore as n9');
    expect(report.raft_id).toBe('n9');
    expect([report.new_active.storage, report.new_active.raft]).not.toContain(restore.new_active.storage);
    const ports = await nodePorts();
    const node = await startedNode(nodeArgs({ id: 'n9', dataDir: otherDir, ports, dir, kek: ['--kek-file', kekFile] }), dir, ports);
    running.push(node);
    const keys = [...expected.keys()];
    expect(await retrying(ports.resp, (c) => c.mget(...keys))).toEqual(keys.map((k) => expected.get(k)));
    await set(ports, 'written-by-n9', 'z');
    expect((await status(ports, true)).versions_per_key_id[String(report.new_active.storage)]).toBe(1);
    expect(await node.stop('SIGTERM')).toBe(0);
  }, 60_000);

  it('refuses a data dir that is not empty', async () => {
    const r = await cli(['backup', 'restore', '--in', backupDir, '--data-dir', restoredDir, '--kek-file', kekFile]);
    expectCliFailure(r, 'ErrDataDirNotEmpty');
    const other = path.join(dir, 'not-empty');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'something'), 'x');
    expectCliFailure(await cli(['backup', 'restore', '--in', backupDir, '--data-dir', other, '--kek-file', kekFile]), 'ErrDataDirNotEmpty');
    expect(fs.readdirSync(other)).toEqual(['something']);
  }, 30_000);
});
