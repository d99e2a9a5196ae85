// The peer transport: delivery between authenticated peers, refusal of bad
// secrets and of anything sent before authentication, garbage and oversized
// frames, bounded queues behind a peer that stops reading, reconnection, and
// chunked snapshot streaming.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeMessage, type Message, type NodeId } from '../../../src/raft/index.js';
import { Transport, encodeFrame, type TransportOptions } from '../../../src/raft/transport/index.js';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Node {
  t: Transport;
  got: Message[];
  unreachable: NodeId[];
  snapshots: { m: Message; sha: string; bytes: number }[];
}

async function node(id: NodeId, over: Partial<TransportOptions> = {}, rejectSnapshots = false): Promise<Node> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-transport-'));
  const n: Node = { t: undefined as unknown as Transport, got: [], unreachable: [], snapshots: [] };
  n.t = new Transport({
    id,
    secret: SECRET,
    snapshotDir: dir,
    backoffInitialMs: 10,
    backoffMaxMs: 50,
    handler: {
      onMessage: (m) => n.got.push(m),
      onUnreachable: (to) => n.unreachable.push(to),
      onSnapshot: async (m, file) => {
        if (rejectSnapshots) throw new Error('refused');
        const data = fs.readFileSync(file);
        n.snapshots.push({ m, bytes: data.length, sha: crypto.createHash('sha256').update(data).digest('hex') });
      },
    },
    ...over,
  });
  await n.t.start();
  cleanups.push(async () => {
    await n.t.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return n;
}

function msg(from: NodeId, to: NodeId, i: number, bytes = 0): Message {
  return makeMessage({
    type: 'MsgApp',
    from,
    to,
    term: 3,
    index: i,
    entries: bytes > 0 ? [{ index: i + 1, term: 3, type: 'normal', data: new Uint8Array(bytes).fill(i & 0xff) }] : [],
  });
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A raw client socket to `port`; collects whether the server closed it. */
async function rawClient(port: number): Promise<{ s: net.Socket; closed: Promise<void> }> {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.on('error', () => {});
  s.resume(); // read (and ignore) the hello, so the server's close is seen
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  cleanups.push(() => void s.destroy());
  return { s, closed };
}

describe('Transport', () => {
  it('delivers messages in order between authenticated peers, with entry bytes intact', async () => {
    const a = await node(1);
    const b = await node(2);
    a.t.setPeer(2, `127.0.0.1:${b.t.port}`);
    b.t.setPeer(1, `127.0.0.1:${a.t.port}`);
    for (let i = 0; i < 500; i++) a.t.send([msg(1, 2, i, i % 50)]);
    b.t.send([msg(2, 1, 7)]);
    await until(() => b.got.length === 500 && a.got.length === 1, 'delivery');
    expect(b.got.map((m) => m.index)).toEqual([...Array(500).keys()]);
    const e = b.got[49]!.entries[0]!;
    expect(e.index).toBe(50);
    expect(Buffer.from(e.data).equals(Buffer.alloc(49, 49))).toBe(true);
    expect(a.got[0]!.from).toBe(2);
  });

  it('a peer with the wrong secret is refused and delivers nothing', async () => {
    const b = await node(2);
    const bad = await node(1, { secret: Buffer.from('another secret, same length!!!!!') });
    bad.t.setPeer(2, `127.0.0.1:${b.t.port}`);
    bad.t.send([msg(1, 2, 1)]);
    await until(() => b.t.stats.rejectedConnections >= 1 && bad.unreachable.includes(2), 'refusal');
    for (let i = 0; i < 5; i++) bad.t.send([msg(1, 2, i)]);
    await new Promise((r) => setTimeout(r, 100));
    expect(b.got).toEqual([]);
  });

  it('a dialer that reaches the wrong node id gives up', async () => {
    const b = await node(2);
    const a = await node(1);
    a.t.setPeer(3, `127.0.0.1:${b.t.port}`); // node 2 listens there, not 3
    a.t.send([msg(1, 3, 1)]);
    await until(() => a.unreachable.includes(3), 'unreachable report');
    expect(b.got).toEqual([]);
  });

  it('closes, unprocessed, a connection that sends messages, garbage or a huge frame before authenticating', async () => {
    const b = await node(2);
    const attempts: Buffer[] = [
      encodeFrame({ k: 'msgs', ms: [msg(1, 2, 1)] }),
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
      Buffer.concat([Buffer.from([0, 0, 0, 4]), Buffer.from([0xc1, 0xc1, 0xc1, 0xc1])]),
      encodeFrame({ k: 'auth', from: 1, to: 2, nonce: Buffer.alloc(32), mac: Buffer.alloc(32) }),
    ];
    for (const bytes of attempts) {
      const { s, closed } = await rawClient(b.t.port);
      s.write(bytes);
      s.write(encodeFrame({ k: 'msgs', ms: [msg(1, 2, 2)] }));
      await closed;
    }
    expect(b.got).toEqual([]);
    expect(b.t.stats.rejectedConnections).toBeGreaterThanOrEqual(2);
  });

  it('an authenticated peer sending a frame over the limit is cut off, then reconnects', async () => {
    const b = await node(2, { maxFrameBytes: 64 * 1024 });
    const a = await node(1);
    a.t.setPeer(2, `127.0.0.1:${b.t.port}`);
    a.t.send([msg(1, 2, 1)]);
    await until(() => b.got.length === 1, 'first delivery');
    a.t.send([msg(1, 2, 2, 200 * 1024)]);
    await until(() => a.unreachable.includes(2), 'the cut reported');
    expect(b.got.some((m) => m.index === 2)).toBe(false);
    await until(() => {
      a.t.send([msg(1, 2, 3)]);
      return b.got.some((m) => m.index === 3);
    }, 'delivery after reconnect');
  });

  it('closes a connection that never authenticates', async () => {
    const b = await node(2, { handshakeTimeoutMs: 100 });
    const { closed } = await rawClient(b.t.port);
    await closed;
    expect(b.got).toEqual([]);
  });

  it('keeps the queue to a stalled peer capped, drops and reports, then recovers', async () => {
    const b = await node(2);
    // A proxy that forwards the handshake, then stops reading from the sender.
    let stall = false;
    const stalled: net.Socket[] = [];
    const proxy = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: b.t.port });
      client.on('error', () => {});
      upstream.on('error', () => {});
      upstream.pipe(client);
      client.on('data', (d) => {
        upstream.write(d);
        if (stall) {
          client.pause();
          stalled.push(client);
        }
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => proxy.close(() => r())));
    cleanups.push(() => stalled.forEach((s) => s.destroy()));
    const port = (proxy.address() as net.AddressInfo).port;

    const a = await node(1, { queueMessages: 64, queueBytes: 256 * 1024 });
    a.t.setPeer(2, `127.0.0.1:${port}`);
    a.t.send([msg(1, 2, 0)]);
    await until(() => b.got.length === 1, 'first message');
    stall = true;
    let maxQueued = 0;
    for (let i = 1; i <= 20_000; i++) {
      a.t.send([msg(1, 2, i, 1024)]);
      const q = a.t.queued(2);
      maxQueued = Math.max(maxQueued, q.messages);
      expect(q.bytes).toBeLessThanOrEqual(256 * 1024);
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(maxQueued).toBeLessThanOrEqual(64);
    expect(a.t.stats.dropped).toBeGreaterThan(10_000);
    expect(a.unreachable).toContain(2);
    // The stalled connection is cut; after a reconnect messages flow again.
    stall = false;
    stalled.forEach((s) => s.destroy());
    const before = b.got.length;
    await until(() => {
      a.t.send([msg(1, 2, 99_999)]);
      return b.got.slice(before).some((m) => m.index === 99_999);
    }, 'recovery');
  });

  it('reconnects after the peer restarts on the same port', async () => {
    const b = await node(2);
    const port = b.t.port;
    const a = await node(1);
    a.t.setPeer(2, `127.0.0.1:${port}`);
    a.t.send([msg(1, 2, 1)]);
    await until(() => b.got.length === 1, 'first delivery');
    await b.t.stop();
    const b2 = await node(2, { port });
    await until(() => {
      a.t.send([msg(1, 2, 2)]);
      return b2.got.some((m) => m.index === 2);
    }, 'delivery after restart');
  });

  it('streams a snapshot in chunks to a file and reports the outcome', async () => {
    const a = await node(1, { snapshotChunkBytes: 64 * 1024 });
    const b = await node(2);
    const c = await node(3, {}, true);
    a.t.setPeer(2, `127.0.0.1:${b.t.port}`);
    a.t.setPeer(3, `127.0.0.1:${c.t.port}`);
    const total = 24 * 1024 * 1024;
    const hash = crypto.createHash('sha256');
    async function* data(): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < total; off += 300_000) {
        const chunk = crypto.randomBytes(Math.min(300_000, total - off));
        hash.update(chunk);
        yield chunk;
      }
    }
    const snap = { index: 40, term: 2, confState: { voters: [1, 2, 3], learners: [] } };
    const ok = await a.t.sendSnapshot(makeMessage({ type: 'MsgSnap', from: 1, to: 2, term: 2, snapshot: snap }), data());
    expect(ok).toBe(true);
    expect(b.snapshots).toHaveLength(1);
    expect(b.snapshots[0]!.bytes).toBe(total);
    expect(b.snapshots[0]!.sha).toBe(hash.digest('hex'));
    expect(b.snapshots[0]!.m.snapshot).toEqual(snap);
    const refused = await a.t.sendSnapshot(makeMessage({ type: 'MsgSnap', from: 1, to: 3, term: 2, snapshot: snap }), data());
    expect(refused).toBe(false);
  });
});
