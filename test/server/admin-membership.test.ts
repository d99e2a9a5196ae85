// Admin API membership routes over a recording membership: POST only, token
// required, JSON bodies checked, typed refusals (not the leader) as 409.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { AdminServer, type EngineMembership } from '../../src/server/index.js';

const TOKEN = 'admin-token-0123456789abcdef';
const calls: unknown[][] = [];
let leader = true;
const membership: EngineMembership = {
  addLearner: async (id, addr) => {
    if (!leader) throw sealError('ErrNotLeader', 'not the leader');
    calls.push(['addLearner', id, addr]);
    return { voters: [1], learners: [2] };
  },
  promote: async (id, addr) => (calls.push(['promote', id, addr]), { voters: [1, 2], learners: [] }),
  remove: async (id) => (calls.push(['remove', id]), { voters: [1], learners: [] }),
};
const servers: AdminServer[] = [];
let withMembership = '';
let without = '';

beforeAll(async () => {
  for (const m of [membership, undefined]) {
    const admin = new AdminServer({ token: TOKEN, metrics: new SealkvMetrics(), port: 0, status: () => ({}), ...(m ? { membership: m } : {}) });
    servers.push(admin);
    const { port } = await admin.start();
    if (m) withMembership = `http://127.0.0.1:${port}`;
    else without = `http://127.0.0.1:${port}`;
  }
});
afterAll(async () => {
  for (const s of servers) await s.close();
});

const post = (base: string, path: string, body: string, token = TOKEN) =>
  fetch(base + path, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });

describe('AdminServer membership routes', () => {
  it('changes membership and refuses what it must', async () => {
    expect((await post(withMembership, '/cluster/learners', '{}', 'wrong-token-0123456789')).status).toBe(401);
    const added = await post(withMembership, '/cluster/learners', JSON.stringify({ id: 'n4', raft_address: '127.0.0.1:7004' }));
    expect(added.status).toBe(200);
    expect(await added.json()).toEqual({ voters: [1], learners: [2] });
    expect((await post(withMembership, '/cluster/promote', JSON.stringify({ id: 'n4' }))).status).toBe(200);
    expect((await post(withMembership, '/cluster/remove', JSON.stringify({ id: 'n4' }))).status).toBe(200);
    expect(calls).toEqual([
      ['addLearner', 'n4', '127.0.0.1:7004'],
      ['promote', 'n4', undefined],
      ['remove', 'n4'],
    ]);
    expect((await post(withMembership, '/cluster/learners', '{"id":"n5"}')).status).toBe(400);
    expect((await post(withMembership, '/cluster/remove', 'not json')).status).toBe(400);
    expect((await post(withMembership, '/cluster/remove', 'x'.repeat(10_000))).status).toBe(400);
    expect((await fetch(`${withMembership}/cluster/remove`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(405);
    expect((await post(withMembership, '/cluster/nope', '{}')).status).toBe(404);
    leader = false;
    const refused = await post(withMembership, '/cluster/learners', JSON.stringify({ id: 'n5', raft_address: '127.0.0.1:7005' }));
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'ErrNotLeader' });
    expect((await post(without, '/cluster/learners', '{}')).status).toBe(404);
  });
});
