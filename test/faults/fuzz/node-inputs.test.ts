// Bad input on a real node's three listeners (SPEC §6, §12, §13): one
// encrypted `sealkv start` process in Phase 2 with values stored, then
//   - RESP: random, mutated and oversized frames on fresh connections; each
//     gets an answer, a protocol error and a close, or is still waiting for
//     the bytes it announced after a short bound — and after every input a
//     separate healthy client must still get answers (no hang, no crash);
//     the node's resident memory stays bounded;
//   - admin HTTP: no, wrong and right tokens, random paths, methods, query
//     strings and malformed JSON bodies: 401 without the token, otherwise
//     400/404/405/409/503 with a JSON `error`, never a 5xx other than a
//     typed 503, and the node keeps serving;
//   - Raft transport: unauthenticated and garbage frames (random bytes,
//     msgpack of every frame kind, forged `auth`, a `msgs` frame carrying an
//     append): the connection is dropped, the node keeps running and
//     serving, and nothing forged is processed (term, role and leader
//     unchanged; the forged entry's key never appears).
// Every input is counted in the fault campaign report.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordFault } from '../support/report.js';
import { ADMIN_TOKEN, SingleNode, setRetrying } from '../support/single-node.js';
import { fcParams, mutated } from './support.js';

/** How long a fuzzed connection may take to answer before it counts as waiting for more bytes. */
const ANSWER_BOUND_MS = 300;
/** How long the transport may take to drop a connection that sent bad frames: past its 5 s handshake timeout, every one must be gone. */
const DROP_BOUND_MS = 6_000;
/** Growth of the node's resident memory allowed over the whole RESP fuzz. */
const RSS_GROWTH_BOUND = 256 * 1024 * 1024;

let dir: string;
let node: SingleNode;
const stored = new Map<string, string>();

function nodePid(): number {
  const m = /"pid":(\d+)[^\n]*"msg":"ready"/.exec(node.process.output.slice(node.process.output.lastIndexOf('"msg":"ready"') - 4000));
  if (m === null) throw new Error('no pid in the node output');
  return Number(m[1]);
}

function rssBytes(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) * 1024;
}

/** Raft facts a processed forged message would change: term, role, leader (internal entries keep the applied index moving). */
async function raftFacts(): Promise<{ term?: number; role?: string; leader?: number }> {
  const status = JSON.parse(await node.adminText('/status')) as { engine?: { term?: number; role?: string; leader?: number } };
  const { term, role, leader } = status.engine ?? {};
  return { term, role, leader };
}

/** The node still serves: every stored value reads back, and a write is accepted. */
async function expectServing(tag: string): Promise<void> {
  expect(node.process.running, `${tag}: node exited\n${node.process.output.slice(-2000)}`).toBe(true);
  const keys = [...stored.keys()];
  expect(await node.client().mget(...keys), tag).toEqual(keys.map((k) => stored.get(k)));
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-fault-inputs-'));
  node = await SingleNode.create(dir);
  await node.start();
  await node.encryption('enable-storage-envelope');
  await node.encryption('enable-raft-envelope');
  for (let i = 0; i < 10; i++) {
    const value = crypto.randomBytes(24).toString('base64url');
    await setRetrying(node.client(), `in-${i}`, value);
    stored.set(`in-${i}`, value);
  }
}, 90_000);

afterAll(async () => {
  await node?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- RESP ------------------------------------------------------------------------

/** Sends `chunks` on a fresh connection, then PING; resolves with what came back and whether the server closed it. */
function respExchange(port: number, chunks: Buffer[]): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(done, ANSWER_BOUND_MS);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('+PONG\r\n')) done();
    });
    socket.on('close', () => {
      closed = true;
      done();
    });
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
      socket.write('\r\nPING\r\n');
    });
  });
}

const VALID_FRAMES = ['*3\r\n$3\r\nSET\r\n$4\r\nfz-k\r\n$5\r\nvalue\r\n', '*2\r\n$3\r\nGET\r\n$4\r\nin-1\r\n', 'PING\r\n', '*1\r\n$4\r\nINFO\r\n', 'MGET in-1 in-2\r\n'];
const OVERSIZED = ['*2147483647\r\n', '$999999999999\r\n', '*1\r\n$536870912\r\n', '*-5\r\n', '$-2\r\n', `${'A'.repeat(70_000)}`, `*1\r\n$${64 * 1024 * 1024 + 1}\r\n`];

describe('RESP listener', () => {
  it('answers random, mutated and oversized frames with replies or a protocol error; other clients keep being served; memory stays bounded', async () => {
    const pid = nodePid();
    const rssBefore = rssBytes(pid);
    const healthy = node.newClient();
    let inputs = 0;
    let protocolErrors = 0;
    const fragment = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.constantFrom(...VALID_FRAMES).chain((f) => mutated(Buffer.from(f))).map((a) => Buffer.from(a)),
      fc.constantFrom(...VALID_FRAMES, ...OVERSIZED).map((s) => Buffer.from(s)),
    );
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fragment, { minLength: 1, maxLength: 8 }), async (chunks) => {
          const { text } = await respExchange(node.ports.resp, chunks);
          inputs++;
          if (text.includes('Protocol error')) {
            protocolErrors++;
            expect(text).toMatch(/-ERR Protocol error: [^\r\n]+\r\n$/);
          }
          // Error replies are typed RESP errors, never an internal error.
          expect(text).not.toMatch(/-ERR internal error/);
          expect(await healthy.ping()).toBe('PONG');
        }),
        fcParams(120),
      );
      await expectServing('after RESP fuzz');
      const growth = rssBytes(pid) - rssBefore;
      expect(growth, `RSS grew by ${growth} bytes`).toBeLessThan(RSS_GROWTH_BOUND);
    } finally {
      healthy.disconnect();
    }
    recordFault({ area: 'fuzz', scenario: `RESP on a real node: random/mutated/oversized frames (${protocolErrors} protocol errors)`, faults: inputs, operations: inputs * 2 + stored.size, anomalies: 0 });
  }, 120_000);
});

// ---- admin HTTP ---------------------------------------------------------------------

const ROUTES = ['/health', '/status', '/metrics', '/encryption/status', '/encryption/sidecar-state', '/encryption/rotate-dek', '/encryption/retire-dek', '/encryption/disable', '/cluster/learners', '/cluster/promote', '/cluster/remove', '/nope', '/', '/encryption/', '/cluster'];
/** Routes that change state when asked correctly: fuzzed only with a wrong token or with parameters that must be refused. */
const GUARDED = new Set(['/encryption/rotate-dek', '/encryption/retire-dek', '/cluster/learners', '/cluster/promote', '/cluster/remove']);

interface AdminInput {
  route: string;
  extra: string;
  method: string;
  token: 'none' | 'wrong' | 'right';
  query: string;
  body: string | undefined;
}

const adminInput: fc.Arbitrary<AdminInput> = fc.record({
  route: fc.constantFrom(...ROUTES),
  extra: fc.oneof(fc.constant(''), fc.string({ maxLength: 12 }).map((s) => encodeURIComponent(s))),
  method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 3 }, { arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'HEAD', 'PATCH'), weight: 2 }),
  token: fc.oneof({ arbitrary: fc.constant('right' as const), weight: 3 }, { arbitrary: fc.constantFrom('none' as const, 'wrong' as const), weight: 2 }),
  query: fc.oneof(
    fc.constant(''),
    fc.string({ maxLength: 20 }).map((s) => `purpose=fz-${encodeURIComponent(s)}`),
    fc.string({ maxLength: 20 }).map((s) => `node=fz-${encodeURIComponent(s)}`),
    fc.string({ maxLength: 20 }).map((s) => `verify=${encodeURIComponent(s)}&${encodeURIComponent(s)}`),
  ),
  body: fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 60 }),
    fc.json({ maxDepth: 2 }),
    fc.record({ id: fc.string({ maxLength: 8 }).map((s) => `fz-${s}`), raft_address: fc.string({ maxLength: 10 }).map((s) => s.replace(/:/g, '')) }).map((o) => JSON.stringify(o)),
    fc.constant('{"id": '),
  ),
});

describe('admin HTTP listener', () => {
  it('answers each kind of malformed request with 400 and a JSON error', async () => {
    const cases: { method: string; route: string; body?: string }[] = [
      { method: 'POST', route: '/encryption/rotate-dek?purpose=fz-nonsense' },
      { method: 'POST', route: '/encryption/rotate-dek' },
      { method: 'GET', route: '/encryption/sidecar-state' },
      { method: 'POST', route: '/cluster/learners', body: '{"id": ' },
      { method: 'POST', route: '/cluster/learners', body: '[1, 2]' },
      { method: 'POST', route: '/cluster/remove', body: '{"id": 7}' },
      { method: 'POST', route: '/cluster/promote', body: '"fz"' },
    ];
    for (const { method, route, body } of cases) {
      const res = await fetch(`http://127.0.0.1:${node.ports.admin}${route}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      expect(res.status, `${method} ${route} ${body ?? ''}: ${text}`).toBe(400);
      expect(typeof (JSON.parse(text) as { error?: unknown }).error).toBe('string');
    }
    await expectServing('after malformed admin requests');
    recordFault({ area: 'fuzz', scenario: 'admin API on a real node: malformed queries and JSON bodies answer 400', faults: cases.length, operations: cases.length + stored.size, anomalies: 0 });
  });

  it('answers no/bad tokens with 401 and malformed requests with a JSON 4xx, and keeps serving', async () => {
    let inputs = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(adminInput, async (input) => {
        const route = input.extra === '' ? input.route : `${input.route}${input.extra}`;
        // A right token on a state-changing route only with a body or query that must be refused.
        const token = input.token === 'right' && GUARDED.has(route) && input.query === '' && input.body !== undefined && /"raft_address"/.test(input.body) ? 'wrong' : input.token;
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (token === 'right') headers.authorization = `Bearer ${ADMIN_TOKEN}`;
        if (token === 'wrong') headers.authorization = `Bearer fz-${crypto.randomBytes(8).toString('hex')}`;
        const res = await fetch(`http://127.0.0.1:${node.ports.admin}${route}${input.query === '' ? '' : `?${input.query}`}`, {
          method: input.method,
          headers,
          ...(input.body === undefined || input.method === 'GET' || input.method === 'HEAD' ? {} : { body: input.body }),
          signal: AbortSignal.timeout(10_000),
        });
        inputs++;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const text = input.method === 'HEAD' ? '' : await res.text();
        if (token !== 'right') expect(res.status).toBe(401);
        expect(res.status, `${input.method} ${route}?${input.query}: ${text}`).not.toBe(500);
        if (res.status >= 400 && input.method !== 'HEAD') {
          expect(res.headers.get('content-type')).toMatch(/^application\/json/);
          expect(typeof (JSON.parse(text) as { error?: unknown }).error).toBe('string');
        }
        if (res.status === 503) expect((JSON.parse(text) as { retryable?: unknown }).retryable).toBe(true);
        expect([200, 400, 401, 404, 405, 409, 503]).toContain(res.status);
      }),
      fcParams(250),
    );
    expect(await node.adminText('/health')).toContain('ok');
    await expectServing('after admin fuzz');
    recordFault({ area: 'fuzz', scenario: `admin API on a real node: tokens, routes, queries, bodies (${[...statuses].map(([s, n]) => `${s}x${n}`).join(' ')})`, faults: inputs, operations: inputs + stored.size + 1, anomalies: 0 });
  }, 120_000);
});

// ---- Raft transport ---------------------------------------------------------------------

/**
 * Sends `frames` (raw bytes) to the Raft listener; resolves true when the
 * node drops the connection within the bound: its FIN ('end'), a reset
 * ('error' on our writes) or the close, whichever this side sees first.
 */
function transportExchange(port: number, frames: Buffer[]): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const finish = (dropped: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(dropped);
    };
    const timer = setTimeout(() => finish(false), DROP_BOUND_MS);
    for (const event of ['end', 'close', 'error']) socket.on(event, () => finish(true));
    // Read (and drop) what the node sends: a paused socket never sees the node's FIN.
    socket.resume();
    socket.on('connect', () => {
      for (const f of frames) socket.write(f);
    });
  });
}

function lengthPrefixed(body: Uint8Array): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const forgedFrame: fc.Arbitrary<unknown> = fc.oneof(
  fc.record({ k: fc.constant('auth'), from: fc.nat(), to: fc.nat(), nonce: fc.uint8Array({ minLength: 32, maxLength: 32 }), mac: fc.uint8Array({ minLength: 32, maxLength: 32 }), rpc: fc.boolean() }),
  fc.record({
    k: fc.constant('msgs'),
    ms: fc.constant([{ type: 'MsgApp', to: 1, from: 2, term: 99, logTerm: 1, index: 1, commit: 5, entries: [{ index: 2, term: 99, type: 'normal', data: Buffer.from('\x01fuzz-forged-entry') }] }]),
  }),
  fc.record({ k: fc.constant('rpc'), id: fc.nat(), method: fc.constantFrom('GetCapability', 'GetSidecarState', 'admin'), body: fc.object() }),
  fc.record({ k: fc.constantFrom('ok', 'snapBegin', 'snapChunk', 'snapEnd', 'hello', 'rpcReply'), d: fc.uint8Array({ maxLength: 40 }) }),
  fc.anything({ maxDepth: 2 }),
);

describe('Raft transport listener', () => {
  it('drops unauthenticated and garbage frames; the node keeps running and serving, and nothing is applied', async () => {
    const before = await raftFacts();
    expect(before.role).toBe('leader');
    expect(typeof before.term).toBe('number');
    let inputs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 400 }).map((b) => [lengthPrefixed(b)]),
          forgedFrame.map((f) => [lengthPrefixed(pack(f))]),
          fc.array(forgedFrame, { minLength: 2, maxLength: 4 }).map((fs) => fs.map((f) => lengthPrefixed(pack(f)))),
          fc.integer({ min: 513, max: 0x7fffffff }).map((len) => {
            const head = Buffer.alloc(4);
            head.writeUInt32BE(len);
            return [head, crypto.randomBytes(16)];
          }),
        ),
        async (frames) => {
          inputs++;
          const dropped = await transportExchange(node.ports.raft, frames);
          expect(dropped, `still open: ${frames.map((f) => f.toString('hex').slice(0, 200)).join(' ')}\n${node.process.output.split('\n').filter((l) => !l.includes('"level":30')).slice(-8).join('\n')}`).toBe(true);
        },
      ),
      // Each failing attempt waits out DROP_BOUND_MS: report the first counterexample unshrunk.
      { ...fcParams(150), endOnFailure: true },
    );
    // A forged append or vote at term 99 would have moved the term and unseated the leader.
    expect(await raftFacts()).toEqual(before);
    expect(await node.client().exists('fuzz-forged-entry')).toBe(0);
    await expectServing('after transport fuzz');
    recordFault({ area: 'fuzz', scenario: 'Raft transport on a real node: garbage, forged and oversized frames', faults: inputs, operations: inputs + stored.size + 2, anomalies: 0 });
  }, 120_000);
});
