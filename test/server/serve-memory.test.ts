// `sealkv serve-memory` as a real process (from dist/, built by `npm test`):
// a Redis client reads its own writes, AUTH comes from the environment, the
// admin API from a token file, logs are JSON without the secrets, and
// SIGTERM shuts it down cleanly.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { distScript } from '../support/dist.js';


let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-serve-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('sealkv serve-memory', () => {
  it('serves RESP and admin, then stops on SIGTERM', async () => {
    const tokenFile = path.join(tmp, 'admin-token');
    fs.writeFileSync(tokenFile, 'admin-token-for-tests-0123456789\n', { mode: 0o600 });
    const child = spawn(process.execPath, [distScript('src/cli/main.js'), 'serve-memory', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--admin-token-file', tokenFile], {
      env: { ...process.env, SEALKV_REQUIREPASS: 'pw-from-env-123' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    let output = '';
    const ports = new Promise<{ resp: number; admin: number }>((resolve, reject) => {
      let resp = 0;
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        for (const line of d.toString().split('\n').filter(Boolean)) {
          const entry = JSON.parse(line) as Record<string, unknown>;
          lines.push(entry);
          if (entry.msg === 'RESP server listening') resp = entry.port as number;
          if (entry.msg === 'admin API listening') resolve({ resp, admin: entry.port as number });
        }
      });
      child.once('exit', (code) => reject(new Error(`exited early with ${code}: ${output}`)));
      setTimeout(() => reject(new Error(`no listening line in time: ${output}`)), 20_000).unref();
    });
    try {
      const { resp, admin } = await ports;
      const client = new Redis({ host: '127.0.0.1', port: resp, password: 'pw-from-env-123', maxRetriesPerRequest: 0, lazyConnect: true });
      await client.connect();
      expect(await client.set('greeting', 'hello')).toBe('OK');
      expect(await client.get('greeting')).toBe('hello');
      client.disconnect();
      const health = await fetch(`http://127.0.0.1:${admin}/health`, { headers: { authorization: 'Bearer admin-token-for-tests-0123456789' } });
      expect(await health.json()).toEqual({ status: 'ok' });
      expect(lines.some((l) => typeof l.msg === 'string' && /not wired/.test(l.msg))).toBe(true);
      expect(output).not.toContain('pw-from-env-123');
      expect(output).not.toContain('admin-token-for-tests');
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
