// The server's connection behaviour on the wire: pipelining and reply order,
// malformed input, limits, AUTH, max connections, idle timeout, QUIT, and
// the mapping of engine errors to RESP errors.

import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { sealError } from '../../src/errors/index.js';
import type { KvReply, KvRequest } from '../../src/kv/index.js';
import { encodeCommand, MemoryEngine, type Engine } from '../../src/server/index.js';
import { startServer } from './helpers.js';

const encode = (...args: (string | Buffer)[]): Buffer => encodeCommand(args);

/** A MemoryEngine whose writes first pass through `before` (to record or hold them). */
function wrapEngine(before: (requests: readonly KvRequest[]) => unknown): Engine {
  const memory = new MemoryEngine();
  return {
    execute: async (requests) => {
      await before(requests);
      return memory.execute(requests);
    },
    read: (requests, options) => memory.read(requests, options),
    status: () => memory.status(),
    close: () => memory.close(),
  };
}

/** A MemoryEngine that records the size of every write batch. */
function recordingEngine(): { engine: Engine; batchSizes: number[] } {
  const batchSizes: number[] = [];
  return { engine: wrapEngine((requests) => batchSizes.push(requests.length)), batchSizes };
}

describe('pipelining', () => {
  it('answers a large mixed pipeline in request order, reads seeing earlier writes', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      const parts: Buffer[] = [];
      const expected: string[] = [];
      for (let i = 0; i < 500; i++) {
        parts.push(encode('SET', `k${i % 7}`, `${i}`), encode('GET', `k${i % 7}`), encode('INCR', 'counter'), Buffer.from('PING\r\n'));
        expected.push('+OK', `$${String(i).length}`, `${i}`, `:${i + 1}`, '+PONG');
      }
      const stream = Buffer.concat(parts);
      // Dribble the pipeline in uneven chunks so commands straddle reads.
      for (let i = 0; i < stream.length; i += 997) raw.send(stream.subarray(i, i + 997));
      const text = await raw.until((t) => t.split('\r\n').length > expected.length);
      expect(text.split('\r\n').slice(0, expected.length)).toEqual(expected);
    } finally {
      await h.stop();
    }
  });

  it('batches consecutive writes into one engine call', async () => {
    const { engine, batchSizes: calls } = recordingEngine();
    const h = await startServer({ engine });
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => encode('SET', `k${i}`, 'v'))));
      await raw.until((t) => t.split('\r\n').length > 100);
      expect(calls.reduce((a, b) => a + b, 0)).toBe(100);
      expect(calls.length).toBeLessThan(100);
      const c = await h.client();
      const pipeline = c.pipeline();
      for (let i = 0; i < 50; i++) pipeline.incr('n');
      const results = await pipeline.exec();
      expect(results!.map(([, r]) => r)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    } finally {
      await h.stop();
    }
  });
  it('caps a batch by argument bytes', async () => {
    const { engine, batchSizes: sizes } = recordingEngine();
    const h = await startServer({ engine, maxBatchBytes: 1000 });
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => encode('SET', `k${i}`, 'v'.repeat(200)))));
      await raw.until((t) => t.split('\r\n').length > 100);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(100);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(5);
    } finally {
      await h.stop();
    }
  });
});

describe('malformed input', () => {
  it('answers a framing error after earlier replies, then closes', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat([encode('SET', 'a', '1'), encode('GET', 'a'), Buffer.from('*1\r\n+oops\r\n')]));
      const text = await raw.until((t) => t.includes('Protocol error'));
      expect(text).toBe("+OK\r\n$1\r\n1\r\n-ERR Protocol error: expected '$', got '+'\r\n");
      expect(await raw.waitClosed()).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it('keeps the connection usable after unknown commands, wrong arity and bad arguments', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat([encode('NOPE', 'a'), encode('GET'), encode('INCRBY', 'n', 'x'), encode('SET', 'k', 'v', 'EX', '-1'), encode('PING')]));
      const text = await raw.lines(5);
      expect(text.split('\r\n').slice(0, 5)).toEqual([
        "-ERR unknown command 'NOPE', with args beginning with: 'a' ",
        "-ERR wrong number of arguments for 'get' command",
        '-ERR value is not an integer or out of range',
        "-ERR invalid expire time in 'set' command",
        '+PONG',
      ]);
      expect(raw.closed).toBe(false);
    } finally {
      await h.stop();
    }
  });

  it('refuses an oversized bulk without reading it, and an oversized inline line', async () => {
    const h = await startServer({ limits: { maxBulkBytes: 1024, maxInlineBytes: 256 } });
    try {
      const raw = await h.raw();
      raw.send('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000\r\n');
      expect(await raw.until((t) => t.includes('\r\n'))).toMatch(/^-ERR Protocol error: invalid bulk length/);
      expect(await raw.waitClosed()).toBe(true);
      const inline = await h.raw();
      inline.send('GET ' + 'x'.repeat(300));
      expect(await inline.until((t) => t.includes('\r\n'))).toMatch(/^-ERR Protocol error: too big inline request/);
      expect(await inline.waitClosed()).toBe(true);
      const c = await h.client();
      expect(await c.ping()).toBe('PONG');
      const metrics = await h.metrics.render();
      expect(metrics.body).toMatch(/sealkv_request_errors_total\{command="protocol",error="ErrRequestTooLarge"\} 2/);
      expect(metrics.body).toMatch(/sealkv_connections_closed_by_server_total\{reason="protocol_error"\} 2/);
    } finally {
      await h.stop();
    }
  });
});

describe('AUTH', () => {
  it('requires the password before data commands and accepts ioredis with it', async () => {
    const h = await startServer({ password: 's3cret-pass' });
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat([encode('GET', 'a'), encode('AUTH', 'wrong'), encode('AUTH', 'default', 'wrong'), encode('AUTH', 's3cret-pass'), encode('SET', 'a', '1')]));
      expect((await raw.lines(5)).split('\r\n').slice(0, 5)).toEqual([
        '-NOAUTH Authentication required.',
        '-WRONGPASS invalid username-password pair or user is disabled.',
        '-WRONGPASS invalid username-password pair or user is disabled.',
        '+OK',
        '+OK',
      ]);
      const good = await h.client({ password: 's3cret-pass' });
      expect(await good.get('a')).toBe('1');
      const named = await h.client({ username: 'default', password: 's3cret-pass' });
      expect(await named.get('a')).toBe('1');
      // ioredis treats a failed handshake as fatal and closes.
      await expect(h.client({ password: 'nope' })).rejects.toThrow(/Connection is closed/);
      const anonymous = await h.client({ enableReadyCheck: false });
      await expect(anonymous.get('a')).rejects.toThrow(/NOAUTH/);
    } finally {
      await h.stop();
    }
  });

  it('says so when AUTH is sent to a server without a password', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      raw.send(encode('AUTH', 'x'));
      expect(await raw.lines(1)).toMatch(/^-ERR AUTH <password> called without any password configured/);
    } finally {
      await h.stop();
    }
  });
});

describe('connection limits', () => {
  it('refuses connections past maxConnections with a clear error', async () => {
    const h = await startServer({ maxConnections: 2 });
    try {
      const a = await h.raw();
      const b = await h.raw();
      a.send('PING\r\n');
      b.send('PING\r\n');
      await a.lines(1);
      await b.lines(1);
      const c = await h.raw();
      expect(await c.until((t) => t.includes('\r\n'))).toBe('-ERR max number of clients reached\r\n');
      expect(h.server.stats().connectionsRejected).toBe(1);
      expect(await c.waitClosed()).toBe(true);
      a.close();
      await a.waitClosed();
      for (let i = 0; i < 50 && h.server.stats().connectedClients > 1; i++) await new Promise((r) => setTimeout(r, 10));
      const d = await h.raw();
      d.send('PING\r\n');
      expect(await d.lines(1)).toBe('+PONG\r\n');
    } finally {
      await h.stop();
    }
  });

  it('closes idle connections when an idle timeout is set', async () => {
    const h = await startServer({ idleTimeoutMs: 100 });
    try {
      const raw = await h.raw();
      expect(await raw.waitClosed(3000)).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it('QUIT answers OK and closes, dropping what follows', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      raw.send('PING\r\nQUIT\r\nPING\r\n');
      expect(await raw.until(() => false, 500)).toBe('+PONG\r\n+OK\r\n');
      expect(raw.closed).toBe(true);
    } finally {
      await h.stop();
    }
  });
});

describe('pending input', () => {
  it('stops reading past maxPendingBytes of queued arguments while the engine is busy', async () => {
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const engine = wrapEngine(() => gate);
    const h = await startServer({ engine, maxPendingBytes: 64 * 1024 });
    try {
      const raw = await h.raw();
      const value = Buffer.alloc(16 * 1024, 1);
      // 32 MiB of SETs: more than loopback socket buffers hold, so if the
      // server keeps only ~64 KiB queued, most of it must still be unsent.
      const n = 2048;
      raw.send(Buffer.concat(Array.from({ length: n }, (_, i) => encode('SET', `k${i}`, value))));
      await new Promise((r) => setTimeout(r, 300));
      expect(raw.socket.writableLength).toBeGreaterThan(8 * 1024 * 1024);
      open();
      expect(await raw.untilBytes(n * '+OK\r\n'.length, 30_000)).toBe(n * '+OK\r\n'.length);
    } finally {
      await h.stop();
    }
  });
});

describe('closing', () => {
  it('answers everything a client sent before its FIN', async () => {
    const h = await startServer();
    try {
      const raw = await h.raw();
      raw.send(Buffer.concat([encode('SET', 'a', '1'), encode('GET', 'a'), encode('INCR', 'n')]));
      raw.socket.end();
      expect(await raw.until(() => false, 2000)).toBe('+OK\r\n$1\r\n1\r\n:1\r\n');
      expect(raw.closed).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it('server close lets a running batch answer, then closes the connection', async () => {
    let release: () => void = () => undefined;
    let entered: () => void = () => undefined;
    const inEngine = new Promise<void>((resolve) => (entered = resolve));
    const engine = wrapEngine(async () => {
      const held = new Promise<void>((resolve) => (release = resolve));
      entered();
      await held;
    });
    const h = await startServer({ engine });
    const raw = await h.raw();
    raw.send(encode('SET', 'a', '1'));
    await inEngine;
    const closing = h.server.close();
    release();
    await closing;
    expect(await raw.until(() => false, 1000)).toBe('+OK\r\n');
    expect(raw.closed).toBe(true);
    await h.stop();
  });
});

describe('engine errors', () => {
  it('maps retryable SealErrors to TRYAGAIN and others to ERR with their code; the connection survives', async () => {
    let failWith: Error | null = null;
    const memory = new MemoryEngine();
    const engine: Engine = {
      execute: async (requests: readonly KvRequest[]): Promise<KvReply[]> => {
        if (failWith !== null) throw failWith;
        return memory.execute(requests);
      },
      read: async (requests, options) => {
        if (failWith !== null) throw failWith;
        return memory.read(requests, options);
      },
      status: () => memory.status(),
      close: () => memory.close(),
    };
    const h = await startServer({ engine });
    try {
      const c = await h.client();
      failWith = sealError('ErrNotLeader', 'no leader known');
      await expect(c.set('a', '1')).rejects.toThrow(/^TRYAGAIN ErrNotLeader: no leader known$/);
      failWith = sealError('ErrEnvelopeCutoverInProgress', 'raft envelope cutover in progress');
      await expect(c.get('a')).rejects.toThrow(/^TRYAGAIN ErrEnvelopeCutoverInProgress: /);
      failWith = sealError('ErrEncryptedReadIntegrity', 'value failed authentication');
      await expect(c.get('a')).rejects.toThrow(/^ERR ErrEncryptedReadIntegrity: value failed authentication$/);
      failWith = new Error('boom with secret details');
      await expect(c.get('a')).rejects.toThrow(/^ERR internal error$/);
      failWith = null;
      expect(await c.set('a', '1')).toBe('OK');
    } finally {
      await h.stop();
    }
  });
});

describe('backpressure', () => {
  it('stops processing a client that does not read its replies, and resumes when it does', async () => {
    const h = await startServer({ maxOutputBytes: 256 * 1024, maxBatch: 4 });
    try {
      const c = await h.client();
      await c.set('big', Buffer.alloc(64 * 1024, 1));
      const raw = await h.raw();
      raw.socket.pause();
      const before = h.server.stats().commandsProcessed;
      const n = 400;
      raw.send(Buffer.concat(Array.from({ length: n }, () => encode('GET', 'big'))));
      await new Promise((r) => setTimeout(r, 300));
      expect(h.server.stats().commandsProcessed - before).toBeLessThan(n / 2);
      raw.socket.resume();
      const expected = n * (64 * 1024 + '$65536\r\n\r\n'.length);
      expect(await raw.untilBytes(expected, 30_000)).toBe(expected);
    } finally {
      await h.stop();
    }
  });
});

describe('server-side close', () => {
  it('closes the socket fully after QUIT even if the client keeps its side open', async () => {
    const h = await startServer();
    try {
      const socket = net.connect({ port: h.port, host: '127.0.0.1', allowHalfOpen: true });
      socket.on('error', () => undefined);
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString()));
      const ended = new Promise<void>((resolve) => socket.once('end', resolve));
      socket.write('QUIT\r\n');
      await ended;
      expect(received).toBe('+OK\r\n');
      for (let i = 0; i < 200 && h.server.stats().connectedClients > 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(h.server.stats().connectedClients).toBe(0);
      socket.destroy();
    } finally {
      await h.stop();
    }
  });
});
