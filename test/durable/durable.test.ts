// The synchronous durable write (peers.json): same file result as the async one.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TMP_SUFFIX, writeFileDurably, writeFileDurablySync } from '../../src/durable/index.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-durable-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

it('writeFileDurablySync replaces the file (mode 0600) and leaves no tmp file', () => {
  const file = path.join(dir, 'peers.json');
  fs.writeFileSync(file, 'old-and-longer');
  fs.writeFileSync(file + TMP_SUFFIX, 'stale leftover', { mode: 0o644 });
  writeFileDurablySync(file, '{"2":"127.0.0.1:1"}');
  expect(fs.readFileSync(file, 'utf8')).toBe('{"2":"127.0.0.1:1"}');
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dir)).toEqual(['peers.json']);
});

it('writeFileDurably gives mode 0600 even over a leftover tmp file', async () => {
  const file = path.join(dir, 'keys.json');
  fs.writeFileSync(file + TMP_SUFFIX, 'stale leftover', { mode: 0o644 });
  await writeFileDurably(file, 'new');
  expect(fs.readFileSync(file, 'utf8')).toBe('new');
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dir)).toEqual(['keys.json']);
});
