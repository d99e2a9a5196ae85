// Admin API encryption routes through serve() over a MemoryEngine with a
// recording EngineEncryption: token required, each route runs its operation,
// status passes `verify`, typed refusals map to 409/503 with their code,
// `disable` is always refused, and an engine without encryption has no routes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { silentLogger } from '../../src/log/index.js';
import { MemoryEngine, serve, type Engine, type RunningServer } from '../../src/server/index.js';
import { encryptingMemoryEngine, fakeEncryption } from '../support/fake-encryption.js';

const TOKEN = 'admin-token-encryption-0123456789';
const encryption = fakeEncryption({ applied_index: 42 }, (verify) => ({ phases: { storage_envelope: true, raft_envelope: false }, verified: verify }));
const calls = encryption.calls;

const running: RunningServer[] = [];
let withEncryption = '';
let without = '';

beforeAll(async () => {
  for (const engine of [encryptingMemoryEngine(encryption), new MemoryEngine()] as Engine[]) {
    const server = await serve({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: TOKEN },
      engine,
      logger: silentLogger(),
    });
    running.push(server);
    const base = `http://127.0.0.1:${server.admin!.port}`;
    if (engine.encryption !== undefined) withEncryption = base;
    else without = base;
  }
});
afterAll(async () => {
  for (const server of running) await server.close();
});

const request = (base: string, method: string, path: string, token = TOKEN) =>
  fetch(base + path, { method, headers: { authorization: `Bearer ${token}` } });

describe('AdminServer encryption routes', () => {
  it('needs the bearer token', async () => {
    calls.length = 0;
    expect((await request(withEncryption, 'POST', '/encryption/bootstrap', 'wrong-token-0123456789abc')).status).toBe(401);
    expect((await fetch(`${withEncryption}/encryption/status`)).status).toBe(401);
    expect(calls).toEqual([]);
  });

  it('runs each operation and answers its result', async () => {
    calls.length = 0;
    encryption.refusal = null;
    for (const op of ['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope']) {
      const res = await request(withEncryption, 'POST', `/encryption/${op}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ op, applied_index: 42 });
    }
    expect(calls).toEqual(['bootstrap', 'enable-storage-envelope', 'enable-raft-envelope']);
    expect((await request(withEncryption, 'GET', '/encryption/bootstrap')).status).toBe(405);
    expect((await request(withEncryption, 'POST', '/encryption/rotate-everything')).status).toBe(404);
    expect(calls).toHaveLength(3);
  });

  it('passes verify to status', async () => {
    calls.length = 0;
    const plain = await request(withEncryption, 'GET', '/encryption/status');
    expect(plain.status).toBe(200);
    expect(await plain.json()).toEqual({ phases: { storage_envelope: true, raft_envelope: false }, verified: false });
    const verified = await request(withEncryption, 'GET', '/encryption/status?verify=1');
    expect(((await verified.json()) as { verified: boolean }).verified).toBe(true);
    expect(calls).toEqual([{ verify: false }, { verify: true }]);
    expect((await request(withEncryption, 'POST', '/encryption/status')).status).toBe(405);
  });

  it('maps refusals to 409 (final) and 503 (retryable) with the code', async () => {
    encryption.refusal = sealError('ErrEncryptionNotBootstrapped', 'run bootstrap first');
    const final = await request(withEncryption, 'POST', '/encryption/enable-raft-envelope');
    expect(final.status).toBe(409);
    expect(await final.json()).toEqual({ error: 'run bootstrap first', code: 'ErrEncryptionNotBootstrapped', retryable: false });
    encryption.refusal = sealError('ErrCapabilityCheckFailed', 'n3 unreachable');
    const retry = await request(withEncryption, 'POST', '/encryption/enable-storage-envelope');
    expect(retry.status).toBe(503);
    expect(await retry.json()).toMatchObject({ code: 'ErrCapabilityCheckFailed', retryable: true });
    encryption.refusal = null;
  });

  it('refuses disable with the dump-and-reload explanation', async () => {
    calls.length = 0;
    const res = await request(withEncryption, 'POST', '/encryption/disable');
    expect(res.status).toBe(409);
    const body = (await res.json()) as { code: string; error: string; retryable: boolean };
    expect(body.code).toBe('ErrEncryptionDisableUnsupported');
    expect(body.retryable).toBe(false);
    expect(body.error).toMatch(/one-way/);
    expect(body.error).toMatch(/new cluster/);
    expect(calls).toEqual([]);
  });

  it('has no encryption routes on an engine without encryption', async () => {
    for (const [method, path] of [
      ['GET', '/encryption/status'],
      ['POST', '/encryption/bootstrap'],
      ['POST', '/encryption/disable'],
    ] as const) {
      expect((await request(without, method, path)).status).toBe(404);
    }
    expect((await request(without, 'GET', '/health')).status).toBe(200);
  });
});
