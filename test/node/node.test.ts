// startNode: servers up on the configured addresses, AUTH from a secret file,
// admin API behind its token, and an orderly stop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { resolveStartConfig } from '../../src/node/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startNode } from '../../src/node/index.js';
import { MemoryEngine } from '../../src/server/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('startNode', () => {
  it('serves RESP with AUTH and the admin API, and stops in order', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-node-'));
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, 'pass'), 'sesame\n', { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'token'), 'admin-token-0123456789', { mode: 0o600 });
    const config = resolveStartConfig(
      {
        raftId: 'n1',
        listen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        requirepassFile: path.join(dir, 'pass'),
        adminTokenFile: path.join(dir, 'token'),
      },
      dir,
    );
    const engine = new MemoryEngine();
    let closed = false;
    const close = engine.close.bind(engine);
    engine.close = async () => {
      closed = true;
      await close();
    };
    const node = await startNode(config, async () => engine, silentLogger());
    const client = new Redis({ host: '127.0.0.1', port: node.resp.port, password: 'sesame', maxRetriesPerRequest: 0 });
    expect(await client.set('k', 'v')).toBe('OK');
    expect(await client.get('k')).toBe('v');
    client.disconnect();
    const health = await fetch(`http://127.0.0.1:${node.admin!.port}/health`, {
      headers: { authorization: 'Bearer admin-token-0123456789' },
    });
    expect(health.status).toBe(200);
    await node.stop();
    expect(closed).toBe(true);
  });
});
