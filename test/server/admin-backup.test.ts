// Admin HTTP API: POST /backup?out=<dir> (src/backup does the work; here the
// route's contract with a stand-in backup): token, method, the `out`
// parameter, the answer, and typed refusals as 409 with their code. Without
// a backup provider (the in-memory engine) the route does not exist.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { AdminServer } from '../../src/server/index.js';

const TOKEN = 'admin-backup-token-0123456789';
const servers: AdminServer[] = [];
const asked: string[] = [];
let base: string;
let bare: string;

async function started(options: Partial<ConstructorParameters<typeof AdminServer>[0]>): Promise<string> {
  const server = new AdminServer({ token: TOKEN, metrics: new SealkvMetrics(), port: 0, status: () => ({}), ...options });
  servers.push(server);
  const { port } = await server.start();
  return `http://127.0.0.1:${port}`;
}

beforeAll(async () => {
  base = await started({
    backup: {
      create: async (out) => {
        asked.push(out);
        if (out.endsWith('/busy')) throw sealError('ErrBadRequest', `the backup directory ${out} is not empty`);
        return { out, applied_index: 7 };
      },
    },
  });
  bare = await started({});
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const post = (url: string, token: string | null = TOKEN, method = 'POST') =>
  fetch(url, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` } });

describe('POST /backup', () => {
  it('needs the token, POST and ?out=', async () => {
    expect((await post(`${base}/backup?out=/tmp/b`, null)).status).toBe(401);
    const get = await post(`${base}/backup?out=/tmp/b`, TOKEN, 'GET');
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const noOut = await post(`${base}/backup`);
    expect(noOut.status).toBe(400);
    expect(await noOut.json()).toMatchObject({ code: 'ErrBadRequest' });
    expect(asked).toEqual([]);
  });

  it('answers the backup\'s summary, and a bad request (a non-empty directory) as 400 with its code', async () => {
    const ok = await post(`${base}/backup?out=${encodeURIComponent('/tmp/backups/n1')}`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ out: '/tmp/backups/n1', applied_index: 7 });
    const refused = await post(`${base}/backup?out=/tmp/busy`);
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ code: 'ErrBadRequest', retryable: false });
    expect(asked).toEqual(['/tmp/backups/n1', '/tmp/busy']);
  });

  it('is 404 on an engine without backups', async () => {
    expect((await post(`${bare}/backup?out=/tmp/b`)).status).toBe(404);
  });
});
