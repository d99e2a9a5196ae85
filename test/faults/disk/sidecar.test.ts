// A damaged keys.json or a wrong KEK on a real node (SPEC §4.3, §9, §13):
// a single encrypted node in Phase 2 writes values and stops; then each case
// damages its sidecar (cut short at several points, bytes flipped into
// invalid JSON, a wrapped DEK altered, emptied) or starts it under another
// KEK. Every start must be refused: exit 1, exactly one `sealkv: cannot
// start: Err<Code>: ...` line, the damaged file left as it was (never "start
// fresh" over it). Once the original file is back, the node starts and
// serves every value written before: nothing stored was damaged.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordFault } from '../support/report.js';
import { SingleNode, plainLines, setRetrying } from '../support/single-node.js';

let dir: string;
let node: SingleNode;
let original: string;
const values = new Map<string, string>();
const keysJson = (): string => path.join(node.dataDir, 'encryption', 'keys.json');

/** Starts the node with the sidecar (or KEK) damaged; expects the refusal `code` and keys.json left as it was. */
async function expectRefusal(sidecar: string, code: RegExp, kekFile = node.kekFile): Promise<void> {
  fs.writeFileSync(keysJson(), sidecar, { mode: 0o600 });
  const r = await node.refusedStart(node.args(kekFile));
  const detail = `exit ${r.code}\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-2000)}`;
  expect(r.code, detail).toBe(1);
  const lines = plainLines(r.stderr).filter((l) => l.startsWith('sealkv'));
  expect(lines, detail).toHaveLength(1);
  expect(lines[0], detail).toMatch(new RegExp(`^sealkv: cannot start: (${code.source}): .+`));
  expect(fs.readFileSync(keysJson(), 'utf8'), 'a refused start leaves keys.json as it was').toBe(sidecar);
  expect(r.stdout + r.stderr, 'no wrapped key material in the output').not.toMatch(/"wrapped"/);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-fault-sidecar-'));
  node = await SingleNode.create(dir);
  await node.start();
  await node.encryption('enable-storage-envelope');
  await node.encryption('enable-raft-envelope');
  for (let i = 0; i < 10; i++) {
    const key = `sc-${i}`;
    const value = crypto.randomBytes(24).toString('base64url');
    await setRetrying(node.client(), key, value);
    values.set(key, value);
  }
  node.dropClient();
  expect(await node.process.stop('SIGTERM')).toBe(0);
  original = fs.readFileSync(keysJson(), 'utf8');
}, 90_000);

afterAll(async () => {
  await node?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('damaged sidecar and wrong KEK on a real node', () => {
  it('refuses every damaged keys.json with ErrSidecarCorrupt, a wrong KEK with ErrKEKMismatch, and then serves everything', async () => {
    const end = original.lastIndexOf('}');
    const cuts = [0, 1, Math.floor(end / 4), Math.floor(end / 2), end - 1, end];
    let faults = 0;
    for (const cut of cuts) {
      await expectRefusal(original.slice(0, cut), /ErrSidecarCorrupt/);
      faults++;
    }
    // Bytes flipped into text that is no longer JSON: the first brace, a quote, a colon.
    for (const at of [original.indexOf('{'), original.indexOf('"'), original.indexOf(':')]) {
      const bytes = Buffer.from(original);
      bytes[at]! ^= 0x01;
      await expectRefusal(bytes.toString('latin1'), /ErrSidecarCorrupt/);
      faults++;
    }
    // A wrapped DEK altered (still valid base64): it no longer unwraps under the KEK.
    const parsed = JSON.parse(original) as { keys: Record<string, { wrapped: string }> };
    const first = Object.values(parsed.keys)[0]!;
    const i = Math.floor(first.wrapped.length / 2);
    first.wrapped = first.wrapped.slice(0, i) + (first.wrapped[i] === 'A' ? 'B' : 'A') + first.wrapped.slice(i + 1);
    await expectRefusal(JSON.stringify(parsed, null, 2), /ErrKEKMismatch/);
    faults++;
    // The right file under another KEK.
    const otherKek = path.join(dir, 'other-kek.bin');
    fs.writeFileSync(otherKek, crypto.randomBytes(32), { mode: 0o600 });
    await expectRefusal(original, /ErrKEKMismatch/, otherKek);
    faults++;

    fs.writeFileSync(keysJson(), original, { mode: 0o600 });
    await node.start();
    let anomalies = 0;
    for (const [key, value] of values) {
      const got = await node.client().get(key);
      if (got !== value) anomalies++;
      expect(got, key).toBe(value);
    }
    await setRetrying(node.client(), 'after-refusals', 'ok');
    expect(await node.client().get('after-refusals')).toBe('ok');
    recordFault({ area: 'disk', scenario: 'keys.json cut/flipped/wrapped DEK altered, wrong KEK: refused, data intact', faults, operations: faults + values.size + 2, anomalies });
  }, 180_000);
});
