// Admin HTTP API: bearer token on every route, loopback default, /health,
// /status, /metrics with the SPEC §12 metric names and request metrics.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { AdminServer, MemoryEngine } from '../../src/server/index.js';
import { startServer, type Harness } from './helpers.js';

const TOKEN = 'admin-token-0123456789abcdef';
let admin: AdminServer;
let base: string;
let h: Harness;

beforeAll(async () => {
  const metrics = new SealkvMetrics();
  h = await startServer({ metrics, engine: new MemoryEngine() });
  admin = new AdminServer({ token: TOKEN, metrics, port: 0, status: () => ({ engine: h.engine.status(), server: h.server.stats() }) });
  const { host, port } = await admin.start();
  expect(host).toBe('127.0.0.1');
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await admin.close();
  await h.stop();
});

const get = (path: string, token: string | null = TOKEN, method = 'GET') =>
  fetch(base + path, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` } });

describe('AdminServer', () => {
  it('refuses requests without the right bearer token', async () => {
    for (const token of [null, 'wrong-token-0123456789']) {
      for (const path of ['/health', '/status', '/metrics', '/nope']) {
        const res = await get(path, token);
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(await res.json()).toEqual({ error: 'a bearer token is required' });
      }
    }
  });

  it('serves /health and /status as JSON', async () => {
    expect(await (await get('/health')).json()).toEqual({ status: 'ok' });
    const status = (await (await get('/status')).json()) as { engine: { engine: string }; server: { connectedClients: number } };
    expect(status.engine.engine).toBe('memory');
    expect(typeof status.server.connectedClients).toBe('number');
  });

  it('serves /metrics with the SPEC §12 metrics and request metrics', async () => {
    const c = await h.client();
    await c.set('a', '1');
    await c.get('a');
    await c.call('nope').catch(() => undefined);
    const res = await get('/metrics');
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const body = await res.text();
    for (const name of [
      'sealkv_encryption_active_dek_id',
      'sealkv_encryption_decrypt_failures_total',
      'sealkv_encryption_writes_per_dek',
      'sealkv_encryption_last_proposed_index_per_raft_dek',
      'sealkv_encryption_value_overhead_bytes',
      'sealkv_encryption_kek_unwrap_seconds',
      'sealkv_encryption_sidecar_raft_index',
      'sealkv_raft_term',
      'sealkv_connections',
    ]) {
      expect(body).toContain(`# TYPE ${name} `);
    }
    expect(body).toMatch(/sealkv_encryption_decrypt_failures_total\{reason="tag_mismatch"\} 0/);
    expect(body).toMatch(/sealkv_requests_total\{command="set"\} [1-9]/);
    expect(body).toMatch(/sealkv_requests_total\{command="get"\} [1-9]/);
    expect(body).toMatch(/sealkv_request_errors_total\{command="unknown",error="unknown_command"\} 1/);
    expect(body).toMatch(/sealkv_request_batch_seconds_count\{path="write"\} [1-9]/);
  });

  it('answers unknown paths with 404 and other methods with 405', async () => {
    expect((await get('/nope')).status).toBe(404);
    const res = await get('/status', TOKEN, 'POST');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });

  it('refuses a short token at construction', () => {
    expect(() => new AdminServer({ token: 'short', metrics: new SealkvMetrics(), status: () => ({}) })).toThrow(RangeError);
  });
});
