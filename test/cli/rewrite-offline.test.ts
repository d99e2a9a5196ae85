// `sealkv encryption rewrite --offline` with real processes (SPEC §11): a
// node writes values in cleartext, under a first storage DEK, and under a
// second after rotate-dek; while it runs, the offline rewrite is refused
// (ErrDataDirLocked); once it is stopped, the rewrite of the old key_id and
// then of the cleartext versions run to completion (plain progress lines,
// no ANSI, off a terminal), each bumping the local_epoch in keys.json before
// sealing; the node starts again, every value reads back, and
// `status --verify` counts no version under the old key_id nor in cleartext.
// Usage mistakes exit 2; without --offline the online form says it is not here.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EncryptedCluster, cliFailure, encryptionOp, encryptionStatus, type CliResult, type Member } from '../support/encrypted-cluster.js';

let cluster: EncryptedCluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
});

function epochs(dataDir: string): Record<string, number> {
  const sidecar = JSON.parse(fs.readFileSync(path.join(dataDir, 'encryption', 'keys.json'), 'utf8')) as { keys: Record<string, { local_epoch: number }> };
  return Object.fromEntries(Object.entries(sidecar.keys).map(([id, k]) => [id, k.local_epoch]));
}

describe('encryption rewrite --offline on a stopped node', () => {
  it('re-seals the old key_id and the cleartext versions; the node restarts with every value readable and none left under them', async () => {
    const c = (cluster = await EncryptedCluster.start({ voters: 1 }));
    const m: Member = c.members[0]!;
    const written = new Map<string, string>();
    const write = async (prefix: string, n: number): Promise<void> => {
      const client = c.client(m);
      for (let i = 0; i < n; i += 50) {
        const pairs: string[] = [];
        for (let j = i; j < Math.min(n, i + 50); j++) {
          const key = `${prefix}:${j % 120}`; // keys repeat: several versions per key
          const value = `${prefix} value ${j} `.repeat(1 + (j % 30));
          written.set(key, value);
          pairs.push(key, value);
        }
        await client.mset(...pairs);
      }
    };
    await write('clear', 300);
    const enabled = await encryptionOp(c, 'enable-storage-envelope', m);
    expect(enabled.code, cliFailure(enabled, c)).toBe(0);
    const first = (await encryptionStatus(c, m)).active.storage!;
    await write('first', 400);
    const rotated = await encryptionOp(c, 'rotate-dek', m, ['--purpose', 'storage']);
    expect(rotated.code, cliFailure(rotated, c)).toBe(0);
    const second = (await encryptionStatus(c, m)).active.storage!;
    expect(second).not.toBe(first);
    await write('second', 100);
    const before = await encryptionStatus(c, m, true);
    expect(before.versions_per_key_id?.[String(first)]).toBeGreaterThan(0);
    expect(before.versions_per_key_id?.['0']).toBeGreaterThan(0);

    const rewrite = (extra: string[], raftId = m.id): Promise<CliResult> =>
      c.cli(['encryption', 'rewrite', '--offline', '--data-dir', m.dataDir, '--raft-id', raftId, '--kek-uri', c.kekUri, '--workers', '1', ...extra]);

    const locked = await rewrite(['--key-id', String(first)]);
    expect(locked.code, `${locked.stdout}\n${locked.stderr}`).toBe(1);
    expect(locked.stderr).toMatch(/^sealkv: ErrDataDirLocked: /m);
    expect(epochs(m.dataDir)[String(second)], 'a refused run leaves keys.json alone').toBeDefined();
    const epochsRunning = epochs(m.dataDir);

    expect(await c.stop(m)).toBe(0);
    expect(epochs(m.dataDir)).toEqual(epochsRunning);
    const active = await rewrite(['--key-id', String(second)]);
    expect(active.code).toBe(1);
    expect(active.stderr).toMatch(/^sealkv: ErrRewriteTargetActive: /m);
    const stranger = await rewrite(['--key-id', String(first)], 'not-a-member');
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toMatch(/^sealkv: ErrWriterNotRegistered: /m);
    expect(epochs(m.dataDir)).toEqual(epochsRunning);

    const byKey = await rewrite(['--key-id', String(first)]);
    expect(byKey.code, `${byKey.stdout}\n${byKey.stderr}`).toBe(0);
    expect(byKey.stdout).toContain(`rewrite key_id ${first}: done`);
    expect(byKey.stdout).toMatch(new RegExp(`re-sealed: [1-9]\\d* \\(.*\\) under key_id ${second}`));
    expect(byKey.stderr).toMatch(new RegExp(`^rewrite key_id ${first}: scanned \\d+/\\d+, re-sealed \\d+`, 'm'));
    expect(byKey.stdout + byKey.stderr).not.toContain('\x1b');
    // The run that sealed bumped every DEK's epoch once (durably, before any seal); the refused one did not.
    const afterKey = epochs(m.dataDir);
    for (const [id, epoch] of Object.entries(epochsRunning)) expect(afterKey[id], `key ${id}`).toBe(epoch + 1);

    const clear = await rewrite(['--cleartext', '--json']);
    expect(clear.code, `${clear.stdout}\n${clear.stderr}`).toBe(0);
    const json = JSON.parse(clear.stdout) as { done: boolean; rewritten: number; target: string; activeKeyId: number };
    expect(json).toMatchObject({ done: true, target: 'cleartext', activeKeyId: second });
    expect(json.rewritten).toBeGreaterThan(0);

    await c.restart(m);
    const after = await encryptionStatus(c, m, true);
    expect(after.versions_per_key_id?.[String(first)] ?? 0, JSON.stringify(after.versions_per_key_id)).toBe(0);
    expect(after.versions_per_key_id?.['0'] ?? 0, JSON.stringify(after.versions_per_key_id)).toBe(0);
    expect(after.versions_per_key_id?.[String(second)]).toBeGreaterThan(0);
    const keys = [...written.keys()];
    const got = await c.client(m).mget(...keys);
    keys.forEach((key, i) => expect(got[i], key).toBe(written.get(key)));

    // Usage: no target, both targets; without --offline it is the online fan-out, which needs an admin token.
    const noTarget = await rewrite([]);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(/^sealkv: ErrBadRequest: give --key-id/m);
    expect((await rewrite(['--key-id', '5', '--cleartext'])).code).toBe(2);
    const online = await c.cli(['encryption', 'rewrite', '--key-id', String(first)]);
    expect(online.code).toBe(2);
    expect(online.stderr).toContain('no admin token');
    // A node start, stop and restart, and seven CLI processes.
  }, 150_000);
});
