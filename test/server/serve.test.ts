// serve(): the RESP server and admin API wired around one engine and one
// metrics registry, with extra /status facts from the caller.

import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { silentLogger } from '../../src/log/index.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { serve } from '../../src/server/index.js';

describe('serve', () => {
  it('shares the caller’s metrics registry and merges its status facts', async () => {
    const metrics = new SealkvMetrics();
    metrics.raftTerm.set(7);
    const token = 'serve-test-token-0123456789';
    const running = await serve({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token },
      metrics,
      status: () => ({ raft: { term: 7 } }),
      logger: silentLogger(),
    });
    try {
      expect(running.metrics).toBe(metrics);
      const client = new Redis({ host: '127.0.0.1', port: running.resp.port, lazyConnect: true, maxRetriesPerRequest: 0 });
      await client.connect();
      await client.set('k', 'v');
      client.disconnect();
      const headers = { authorization: `Bearer ${token}` };
      const status = (await (await fetch(`http://127.0.0.1:${running.admin!.port}/status`, { headers })).json()) as Record<string, any>;
      expect(status.raft).toEqual({ term: 7 });
      expect(status.engine.engine).toBe('memory');
      expect(status.resp.port).toBe(running.resp.port);
      const body = await (await fetch(`http://127.0.0.1:${running.admin!.port}/metrics`, { headers })).text();
      expect(body).toMatch(/^sealkv_raft_term 7$/m);
      expect(body).toMatch(/sealkv_requests_total\{command="set"\} 1/);
    } finally {
      await running.close();
    }
  });
});
