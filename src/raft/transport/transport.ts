// TCP transport between Raft peers (SPEC §6): length-prefixed msgpackr
// frames, peers authenticated by the shared cluster secret, one outbound
// connection per peer with reconnection and backoff, bounded send queues,
// and snapshots streamed in chunks on a connection of their own.
//
// Authentication is a mutual HMAC-SHA256 challenge-response: the listener
// sends a fresh nonce, the dialer answers with its own nonce and a MAC over
// both nonces and both ids, the listener answers with its MAC. Until the
// dialer's MAC checks out the listener accepts one small `auth` frame and
// nothing else; anything else closes the connection unprocessed. (Transport
// encryption is out of scope, SPEC §1.)
//
// A slow or partitioned peer never makes a node grow memory: a peer's queue
// is capped in messages and bytes, messages past the cap are dropped and the
// peer is reported unreachable (Raft retransmits from the log, which is on
// disk), and nothing is written to a socket whose buffer is full.

import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Message, NodeId } from '../core/types.js';
import { FrameConn, type Frame } from './frame.js';

export interface TransportHandler {
  /** A message from an authenticated peer. */
  onMessage(m: Message): void;
  /**
   * A whole snapshot arrived: `m` is its MsgSnap and `file` the streamed
   * data, spilled to disk. The file is removed once the returned promise
   * settles; the sender learns whether it resolved.
   */
  onSnapshot(m: Message, file: string): Promise<void>;
  /** Messages to `id` were dropped (queue full, connection lost). */
  onUnreachable(id: NodeId): void;
}

export interface TransportOptions {
  id: NodeId;
  /** Shared cluster secret (at least 16 bytes). */
  secret: Uint8Array;
  host?: string;
  /** 0 picks a free port (see `port` after start()). */
  port?: number;
  /** Where received snapshots are spilled while they stream in. */
  snapshotDir: string;
  handler: TransportHandler;
  /** Per-peer queue cap, in messages (default 4096) and bytes (default 64 MiB). */
  queueMessages?: number;
  queueBytes?: number;
  /** Largest frame accepted from an authenticated peer (default 64 MiB). */
  maxFrameBytes?: number;
  snapshotChunkBytes?: number;
  handshakeTimeoutMs?: number;
  snapshotAckTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

const AUTH_LABEL = Buffer.from('sealkv raft peer auth v1');
/** Before authentication, only the tiny `auth` frame fits. */
const PRE_AUTH_MAX_FRAME = 512;
const BATCH_MESSAGES = 256;
const BATCH_BYTES = 1024 * 1024;

export function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new RangeError(`bad peer address "${addr}"`);
  return { host: addr.slice(0, i), port };
}

function messageBytes(m: Message): number {
  let n = 64;
  for (const e of m.entries) n += e.data.length + 32;
  return n;
}

/** Outbound side of one peer: its queue and its connection. */
class Peer {
  queue: Message[] = [];
  queuedBytes = 0;
  conn: FrameConn | undefined;
  connecting = false;
  flushing = false;
  backoffMs: number;
  timer: NodeJS.Timeout | undefined;
  /** Drops not yet reported to Raft. */
  dropped = 0;
  removed = false;

  constructor(
    readonly id: NodeId,
    public addr: string,
    backoffMs: number,
  ) {
    this.backoffMs = backoffMs;
  }
}

export class Transport {
  readonly id: NodeId;
  private readonly opts: Required<Omit<TransportOptions, 'host' | 'port'>> & { host: string; port: number };
  private server: net.Server | undefined;
  private readonly peers = new Map<NodeId, Peer>();
  private readonly inbound = new Set<FrameConn>();
  private stopped = false;
  /** Counters for tests and metrics. */
  readonly stats = { dropped: 0, rejectedConnections: 0, sentFrames: 0 };

  constructor(opts: TransportOptions) {
    if (opts.secret.length < 16) throw new RangeError('transport: the cluster secret must be at least 16 bytes');
    this.id = opts.id;
    this.opts = {
      host: '127.0.0.1',
      port: 0,
      queueMessages: 4096,
      queueBytes: 64 * 1024 * 1024,
      maxFrameBytes: 64 * 1024 * 1024,
      snapshotChunkBytes: 1024 * 1024,
      handshakeTimeoutMs: 5000,
      snapshotAckTimeoutMs: 120_000,
      backoffInitialMs: 50,
      backoffMaxMs: 2000,
      ...opts,
    };
  }

  /** The listening port (after start()). */
  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  async start(): Promise<void> {
    await fsp.mkdir(this.opts.snapshotDir, { recursive: true });
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Adds or re-addresses a peer ("host:port"). */
  setPeer(id: NodeId, addr: string): void {
    if (id === this.id) return;
    parseAddress(addr);
    const p = this.peers.get(id);
    if (p === undefined) {
      this.peers.set(id, new Peer(id, addr, this.opts.backoffInitialMs));
    } else if (p.addr !== addr) {
      p.addr = addr;
      p.conn?.close('peer re-addressed');
    }
  }

  removePeer(id: NodeId): void {
    const p = this.peers.get(id);
    if (p === undefined) return;
    p.removed = true;
    clearTimeout(p.timer);
    p.conn?.close('peer removed');
    this.peers.delete(id);
  }

  peerAddress(id: NodeId): string | undefined {
    return this.peers.get(id)?.addr;
  }

  /** Queues messages for their peers; never blocks and never grows past the caps. */
  send(msgs: Message[]): void {
    for (const m of msgs) {
      const p = this.peers.get(m.to);
      if (p === undefined) {
        this.opts.handler.onUnreachable(m.to);
        continue;
      }
      const size = messageBytes(m);
      if (p.queue.length >= this.opts.queueMessages || p.queuedBytes + size > this.opts.queueBytes || this.stopped) {
        p.dropped++;
        this.stats.dropped++;
        continue;
      }
      p.queue.push(m);
      p.queuedBytes += size;
    }
    for (const p of this.peers.values()) {
      if (p.dropped > 0) {
        p.dropped = 0;
        this.opts.handler.onUnreachable(p.id);
      }
      if (p.queue.length > 0) this.pump(p);
    }
  }

  /** Bytes and messages queued for `id` (tests, metrics). */
  queued(id: NodeId): { messages: number; bytes: number } {
    const p = this.peers.get(id);
    return { messages: p?.queue.length ?? 0, bytes: p?.queuedBytes ?? 0 };
  }

  /**
   * Streams a snapshot to `m.to` on a connection of its own, chunk by chunk
   * as `data` yields them (never whole in memory). Resolves true once the
   * peer has handled it, false on any failure.
   */
  async sendSnapshot(m: Message, data: AsyncIterable<Uint8Array>): Promise<boolean> {
    const p = this.peers.get(m.to);
    if (p === undefined || this.stopped) return false;
    let conn: FrameConn;
    try {
      conn = await this.dial(p.id, p.addr);
    } catch {
      return false;
    }
    const ack = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.opts.snapshotAckTimeoutMs);
      conn.onFrame = (f) => {
        clearTimeout(timer);
        resolve(f.k === 'snapAck' && f.ok === true);
      };
      conn.socket.once('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    try {
      let bytes = 0;
      conn.send({ k: 'snapBegin', m });
      for await (const chunk of data) {
        for (let off = 0; off < chunk.length; off += this.opts.snapshotChunkBytes) {
          const d = chunk.subarray(off, off + this.opts.snapshotChunkBytes);
          if (!conn.send({ k: 'snapChunk', d })) await conn.drained();
          if (conn.isClosed) return false;
          bytes += d.length;
        }
      }
      conn.send({ k: 'snapEnd', bytes });
      return await ack;
    } catch {
      return false;
    } finally {
      conn.close('snapshot sent');
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const id of [...this.peers.keys()]) this.removePeer(id);
    for (const c of this.inbound) c.close('transport stopped');
    const server = this.server;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- outbound ----

  private pump(p: Peer): void {
    if (this.stopped || p.removed) return;
    if (p.conn === undefined) {
      if (!p.connecting && p.timer === undefined) void this.connect(p);
      return;
    }
    if (p.flushing) return;
    p.flushing = true;
    void this.flush(p, p.conn).finally(() => {
      p.flushing = false;
      if (p.queue.length > 0 && p.conn !== undefined && !p.conn.isClosed) this.pump(p);
    });
  }

  private async flush(p: Peer, conn: FrameConn): Promise<void> {
    while (p.queue.length > 0 && !conn.isClosed) {
      let n = 0;
      let bytes = 0;
      while (n < p.queue.length && n < BATCH_MESSAGES && bytes < BATCH_BYTES) bytes += messageBytes(p.queue[n++]!);
      const ms = p.queue.splice(0, n);
      p.queuedBytes -= bytes;
      this.stats.sentFrames++;
      if (!conn.send({ k: 'msgs', ms })) await conn.drained();
    }
  }

  private async connect(p: Peer): Promise<void> {
    p.connecting = true;
    try {
      const conn = await this.dial(p.id, p.addr);
      if (p.removed || this.stopped) {
        conn.close('peer gone');
        return;
      }
      p.conn = conn;
      p.backoffMs = this.opts.backoffInitialMs;
      // The listener never sends on a message stream after the handshake.
      conn.onFrame = () => conn.close('unexpected frame from listener');
      conn.socket.once('close', () => {
        if (p.conn === conn) p.conn = undefined;
        // Whatever sat in the socket's buffers may be lost with it.
        this.lostPeer(p, true);
      });
      this.pump(p);
    } catch {
      this.lostPeer(p, false);
    } finally {
      p.connecting = false;
    }
  }

  /** Drops what was queued for a peer that cannot be reached and retries later. */
  private lostPeer(p: Peer, wasConnected: boolean): void {
    if (p.removed || this.stopped) return;
    if (p.queue.length > 0 || wasConnected) {
      this.stats.dropped += p.queue.length;
      p.queue = [];
      p.queuedBytes = 0;
      this.opts.handler.onUnreachable(p.id);
    }
    const delay = p.backoffMs / 2 + Math.random() * (p.backoffMs / 2);
    p.backoffMs = Math.min(p.backoffMs * 2, this.opts.backoffMaxMs);
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      p.timer = undefined;
      if (p.conn === undefined && !p.connecting) void this.connect(p);
    }, delay);
    p.timer.unref();
  }

  /** Connects to `addr` and authenticates both ways; rejects on any failure. */
  private dial(peerId: NodeId, addr: string): Promise<FrameConn> {
    const { host, port } = parseAddress(addr);
    return new Promise<FrameConn>((resolve, reject) => {
      const socket = net.connect({ host, port });
      let settled = false;
      const fail = (reason: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        conn.close(reason);
        reject(new Error(`dial ${peerId} at ${addr}: ${reason}`));
      };
      const timer = setTimeout(() => fail('handshake timeout'), this.opts.handshakeTimeoutMs);
      const myNonce = crypto.randomBytes(32);
      let theirNonce: Uint8Array | undefined;
      const conn = new FrameConn(
        socket,
        PRE_AUTH_MAX_FRAME,
        (f) => {
          if (theirNonce === undefined) {
            if (f.k !== 'hello' || f.id !== peerId || !(f.nonce instanceof Uint8Array) || f.nonce.length !== 32) {
              fail('bad hello');
              return;
            }
            theirNonce = f.nonce;
            conn.send({ k: 'auth', from: this.id, to: peerId, nonce: myNonce, mac: this.mac('dialer', theirNonce, myNonce, this.id, peerId) });
            return;
          }
          const expected = this.mac('listener', theirNonce, myNonce, this.id, peerId);
          if (f.k !== 'ok' || !(f.mac instanceof Uint8Array) || !macEqual(f.mac, expected)) {
            fail('listener failed authentication');
            return;
          }
          settled = true;
          clearTimeout(timer);
          conn.maxFrameBytes = this.opts.maxFrameBytes;
          conn.onFrame = () => conn.close('unexpected frame');
          resolve(conn);
        },
        (reason) => fail(reason),
      );
    });
  }

  // ---- inbound ----

  private accept(socket: net.Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    const nonce = crypto.randomBytes(32);
    let peer: NodeId | undefined;
    let snap: SnapshotSpill | undefined;
    const conn = new FrameConn(
      socket,
      PRE_AUTH_MAX_FRAME,
      (f) => {
        if (peer === undefined) {
          peer = this.checkAuth(f, nonce);
          if (peer === undefined) {
            this.stats.rejectedConnections++;
            conn.close('authentication failed');
            return;
          }
          clearTimeout(timer);
          conn.maxFrameBytes = this.opts.maxFrameBytes;
          const auth = f as Extract<Frame, { k: 'auth' }>;
          conn.send({ k: 'ok', mac: this.mac('listener', nonce, auth.nonce, auth.from, this.id) });
          return;
        }
        snap = this.onPeerFrame(conn, peer, f, snap);
      },
      () => {
        clearTimeout(timer);
        this.inbound.delete(conn);
        snap?.abort();
      },
    );
    this.inbound.add(conn);
    const timer = setTimeout(() => {
      if (peer === undefined) conn.close('handshake timeout');
    }, this.opts.handshakeTimeoutMs);
    conn.send({ k: 'hello', id: this.id, nonce });
  }

  /** The dialer's id when `f` is a valid answer to our challenge. */
  private checkAuth(f: Frame, nonce: Uint8Array): NodeId | undefined {
    if (f.k !== 'auth' || f.to !== this.id || !Number.isSafeInteger(f.from) || f.from <= 0) return undefined;
    if (!(f.nonce instanceof Uint8Array) || f.nonce.length !== 32 || !(f.mac instanceof Uint8Array)) return undefined;
    return macEqual(f.mac, this.mac('dialer', nonce, f.nonce, f.from, this.id)) ? f.from : undefined;
  }

  private onPeerFrame(conn: FrameConn, peer: NodeId, f: Frame, snap: SnapshotSpill | undefined): SnapshotSpill | undefined {
    switch (f.k) {
      case 'msgs':
        if (!Array.isArray(f.ms)) break;
        for (const m of f.ms) {
          // An authenticated peer speaks only for itself, and only to us.
          if (m === null || typeof m !== 'object' || m.from !== peer || m.to !== this.id) {
            conn.close('message not from the authenticated peer');
            return snap;
          }
          this.opts.handler.onMessage(m);
        }
        return snap;
      case 'snapBegin':
        if (snap !== undefined || f.m?.type !== 'MsgSnap' || f.m.from !== peer || f.m.to !== this.id) break;
        return new SnapshotSpill(conn, f.m, this.opts.snapshotDir);
      case 'snapChunk':
        if (snap === undefined || !(f.d instanceof Uint8Array)) break;
        snap.write(f.d);
        return snap;
      case 'snapEnd':
        if (snap === undefined) break;
        void snap.finish(f.bytes, this.opts.handler);
        return undefined;
      default:
        break;
    }
    conn.close(`unexpected ${String(f.k)} frame`);
    return snap;
  }

  private mac(role: 'dialer' | 'listener', listenerNonce: Uint8Array, dialerNonce: Uint8Array, dialer: NodeId, listener: NodeId): Buffer {
    const ids = Buffer.allocUnsafe(16);
    ids.writeBigUInt64BE(BigInt(dialer), 0);
    ids.writeBigUInt64BE(BigInt(listener), 8);
    return crypto
      .createHmac('sha256', this.opts.secret)
      .update(AUTH_LABEL)
      .update(role)
      .update(listenerNonce)
      .update(dialerNonce)
      .update(ids)
      .digest();
  }
}

function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** A snapshot streaming in: chunks go straight to a temporary file, with backpressure on the socket. */
class SnapshotSpill {
  readonly file: string;
  private readonly out: fs.WriteStream;
  private bytes = 0;
  private failed = false;

  constructor(
    private readonly conn: FrameConn,
    private readonly m: Message,
    dir: string,
  ) {
    this.file = path.join(dir, `incoming-${m.from}-${crypto.randomBytes(6).toString('hex')}.snap`);
    this.out = fs.createWriteStream(this.file);
    this.out.on('error', () => {
      this.failed = true;
      conn.close('snapshot spill failed');
    });
  }

  write(d: Uint8Array): void {
    this.bytes += d.length;
    if (!this.out.write(d)) {
      this.conn.socket.pause();
      this.out.once('drain', () => this.conn.socket.resume());
    }
  }

  async finish(expected: number, handler: TransportHandler): Promise<void> {
    let ok = false;
    try {
      await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      if (!this.failed && expected === this.bytes) {
        await handler.onSnapshot(this.m, this.file);
        ok = true;
      }
    } catch {
      ok = false;
    } finally {
      await fsp.rm(this.file, { force: true });
    }
    this.conn.send({ k: 'snapAck', ok });
  }

  abort(): void {
    this.out.destroy();
    void fsp.rm(this.file, { force: true });
  }
}
