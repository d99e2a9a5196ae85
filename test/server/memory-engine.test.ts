// MemoryEngine: serialised batches, read-only reads, expiry sweeping, close;
// and loadSecret, which the CLI uses for the password and the admin token.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSecret, MemoryEngine } from '../../src/server/index.js';

const b = (s: string): Buffer => Buffer.from(s);

describe('MemoryEngine', () => {
  it('applies concurrent batches one at a time, in call order', async () => {
    const engine = new MemoryEngine();
    const results = await Promise.all(Array.from({ length: 50 }, () => engine.execute([{ op: 'incrby', key: b('n'), delta: 1n }])));
    expect(results.map((r) => r[0])).toEqual(Array.from({ length: 50 }, (_, i) => ({ kind: 'int', value: BigInt(i + 1) })));
  });

  it('refuses writes on the read path', async () => {
    const engine = new MemoryEngine();
    await expect(engine.read([{ op: 'del', keys: [b('a')] }], { linearizable: true })).rejects.toThrow(TypeError);
  });

  it('frees expired keys over time while reads hide them at once', async () => {
    let now = 1000;
    const engine = new MemoryEngine({ now: () => now });
    await engine.execute([{ op: 'set', key: b('t'), value: b('v'), expire: { inMs: 10 } }]);
    now += 10;
    expect(await engine.read([{ op: 'get', key: b('t') }], { linearizable: true })).toEqual([{ kind: 'nil' }]);
    expect(engine.status().keys_stored).toBe(1);
    for (let i = 0; i < 1024; i++) await engine.execute([{ op: 'set', key: b('other'), value: b('x') }]);
    expect(engine.status().keys_stored).toBe(1);
    expect(await engine.read([{ op: 'dbsize' }], { linearizable: true })).toEqual([{ kind: 'int', value: 1 }]);
  });

  it('fails calls after close with ErrStoreClosed', async () => {
    const engine = new MemoryEngine();
    await engine.close();
    await expect(engine.execute([{ op: 'get', key: b('a') }])).rejects.toMatchObject({ code: 'ErrStoreClosed' });
  });
});

describe('loadSecret', () => {
  it('reads a file without its trailing newline, or an env variable which it then removes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-secret-'));
    try {
      const file = path.join(dir, 'pw');
      fs.writeFileSync(file, 'from-file\n');
      expect(loadSecret({ file, env: 'SEALKV_TEST_SECRET' }, 'password')).toBe('from-file');
      process.env.SEALKV_TEST_SECRET = 'from-env';
      expect(loadSecret({ env: 'SEALKV_TEST_SECRET' }, 'password')).toBe('from-env');
      expect(process.env.SEALKV_TEST_SECRET).toBeUndefined();
      expect(loadSecret({ env: 'SEALKV_TEST_SECRET' }, 'password')).toBeUndefined();
      fs.writeFileSync(file, '\n');
      expect(() => loadSecret({ file }, 'password')).toThrow(expect.objectContaining({ code: 'ErrBadRequest' }));
      expect(() => loadSecret({ file: path.join(dir, 'missing') }, 'password')).toThrow(/ENOENT/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('MemoryEngine atomicity', () => {
  it('never lets a read batch see half of a write batch', async () => {
    const engine = new MemoryEngine();
    const keys = Array.from({ length: 20 }, (_, i) => b(`k${i}`));
    const calls: Promise<unknown>[] = [];
    const seen: string[][] = [];
    for (let i = 0; i < 100; i++) {
      calls.push(
        engine.read([{ op: 'mget', keys }], { linearizable: true }).then(([reply]) => {
          seen.push((reply as { items: { value?: Buffer }[] }).items.map((item) => item.value?.toString() ?? 'nil'));
        }),
      );
      calls.push(engine.execute([{ op: 'mset', entries: keys.map((k): [Buffer, Buffer] => [k, b(String(i))]) }]));
    }
    await Promise.all(calls);
    expect(seen).toHaveLength(100);
    for (const values of seen) expect(new Set(values).size).toBe(1);
  });
});
