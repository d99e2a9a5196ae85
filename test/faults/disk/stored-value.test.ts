// A bit flipped in a sealed value on disk (SPEC §3.1, §12, §13): a real
// encrypted node writes values, is SIGKILLed (the values are then in
// RocksDB's WAL), and one byte inside one value's envelope (eight values
// under SEALKV_FAULT_SOAK=1) is flipped with the WAL record's CRC-32C
// recomputed — so RocksDB replays it as written and only the envelope's tag
// can notice. After restart a GET of that key must answer
// `ErrEncryptedReadIntegrity` over RESP (never data, never nil), every other
// key must still be served, and /metrics must count the failure as
// sealkv_encryption_decrypt_failures_total{reason="tag_mismatch"}.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { recordFault } from '../support/report.js';
import { soakOr } from '../support/soak.js';
import { SingleNode, setRetrying } from '../support/single-node.js';
import { tamperWalValue } from './support.js';

const KEYS = 24;
/** Values damaged (each in another key, at another ciphertext byte). */
const VICTIMS = soakOr(1, 8);
const FAILURE_METRIC = 'sealkv_encryption_decrypt_failures_total';

let dir: string | undefined;
let node: SingleNode | undefined;

afterAll(async () => {
  await node?.kill();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a bit flipped in a stored value', () => {
  it('is ErrEncryptedReadIntegrity over RESP, counted as tag_mismatch, and every other key is still served', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-fault-value-'));
    node = await SingleNode.create(dir);
    await node.start();
    await node.encryption('enable-storage-envelope');
    const values = new Map<string, string>();
    for (let i = 0; i < KEYS; i++) {
      const key = `sv-${i}-${crypto.randomBytes(4).toString('hex')}`;
      const value = crypto.randomBytes(40).toString('base64url');
      await setRetrying(node.client(), key, value);
      values.set(key, value);
    }
    await node.kill();

    // Flip one ciphertext byte (past value header 9 B and envelope header 18 B) of values the WAL holds whole.
    const storeDir = path.join(node.dataDir, 'store');
    const victims: string[] = [];
    for (const key of values.keys()) {
      if (victims.length === VICTIMS) break;
      if (tamperWalValue(storeDir, key, 9 + 18 + 3 + victims.length) !== undefined) victims.push(key);
    }
    expect(victims.length, `sealed values found whole in a WAL record under ${storeDir}`).toBe(VICTIMS);

    await node.start();
    const client = node.client();
    const before = await node.metric(FAILURE_METRIC, 'reason="tag_mismatch"');
    const readsPerVictim = 3;
    let anomalies = 0;
    for (const victim of victims) {
      for (let i = 0; i < readsPerVictim; i++) {
        const outcome = await client.get(victim).then(
          (v) => `data ${JSON.stringify(v)}`,
          (err: Error) => err.message,
        );
        if (!outcome.startsWith('ERR ErrEncryptedReadIntegrity: ')) anomalies++;
        expect(outcome).toMatch(/^ERR ErrEncryptedReadIntegrity: /);
      }
    }
    const reads = victims.length * readsPerVictim;
    // MGET with a tampered key fails as a whole rather than serving a nil in its place.
    const others = [...values.keys()].filter((k) => !victims.includes(k));
    const mget = await client.mget(victims[0]!, others[0]!).then(
      (v) => `data ${JSON.stringify(v)}`,
      (err: Error) => err.message,
    );
    expect(mget).toMatch(/ErrEncryptedReadIntegrity/);
    for (const key of others) {
      const got = await client.get(key);
      if (got !== values.get(key)) anomalies++;
      expect(got, key).toBe(values.get(key));
    }
    const after = await node.metric(FAILURE_METRIC, 'reason="tag_mismatch"');
    expect(after - before).toBeGreaterThanOrEqual(reads);
    // The node still accepts writes and serves them.
    await setRetrying(client, 'after-tamper', 'ok');
    expect(await client.get('after-tamper')).toBe('ok');
    recordFault({ area: 'disk', scenario: 'bit flipped in a sealed value (RocksDB WAL, CRC fixed)', faults: victims.length, operations: reads + 1 + others.length + 2, anomalies });
  }, 90_000);
});
