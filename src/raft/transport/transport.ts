// TCP transport between Raft peers (SPEC §6): length-prefixed msgpackr
// frames, peers authenticated by the shared cluster secret, one outbound
// connection per peer with reconnection and backoff, bounded send queues,
// snapshots streamed in chunks on a connection of their own, and small
// request/response calls (RPC), also on a connection of their own.
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
//
// RPC: the caller dials the callee by id and address (the callee need not be
// a member: a joining learner is polled before it is added), authenticates
// with the same handshake, its `auth` frame marked `rpc`, sends one `rpc`
// frame and waits for one `rpcReply`, then closes. Such a connection carries
// nothing else, and its frames are held to `rpcMaxFrameBytes` both ways. The
// mark is not covered by the MAC: it only narrows what the connection may
// carry, and an authenticated peer may send any frame anyway. Failures reach
// the caller as SealErrors: ErrTimeout for no answer in time, an unreachable
// or refusing peer (retryable), ErrRequestTooLarge for a request over the
// limit, the handler's own code when it threw a SealError, ErrBadRequest for
// an unknown method, ErrRaftStopped when the caller's transport stops
// first; any other handler error becomes a plain Error with the
// message only (never a stack).

import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ERROR_CODES, isSealError, sealError, type ErrorCode } from '../../errors/index.js';
import type { Message, NodeId } from '../core/types.js';
import { FrameConn, encodeFrame, type Frame, type RpcReply } from './frame.js';

/** Serves one RPC method: `from` is the authenticated caller. A throw becomes an error reply. */
export type RpcHandler = (body: unknown, from: NodeId) => Promise<unknown>;

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
  /** Largest RPC request or reply frame, either way (default 1 MiB). */
  rpcMaxFrameBytes?: number;
  /** RPC calls served at once; past it a call is answered ErrTimeout (retry). Default 64. */
  rpcMaxConcurrent?: number;
}

const AUTH_LABEL = Buffer.from('sealkv raft peer auth v1');
/** Before authentication, only the tiny `auth` frame fits. */
const PRE_AUTH_MAX_FRAME = 512;
const BATCH_MESSAGES = 256;
const BATCH_BYTES = 1024 * 1024;
const RPC_MAX_METHOD = 128;
/** Error messages travelling back to a caller are cut to this length. */
const RPC_MAX_ERROR_MESSAGE = 1024;

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
  private readonly rpcHandlers = new Map<string, RpcHandler>();
  /** Outbound RPC calls in flight (rejected by stop()). */
  private readonly rpcCalls = new Set<(reason: string, code?: 'ErrTimeout' | 'ErrRaftStopped') => void>();
  private rpcServing = 0;
  private nextRpcId = 1;
  private stopped = false;
  /** Counters for tests and metrics. */
  readonly stats = { dropped: 0, rejectedConnections: 0, sentFrames: 0, rpcServed: 0 };

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
      rpcMaxFrameBytes: 1024 * 1024,
      rpcMaxConcurrent: 64,
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

  /** Serves RPC `method` (replacing any earlier handler of it). */
  serveRpc(method: string, handler: RpcHandler): void {
    if (method.length === 0 || method.length > RPC_MAX_METHOD) throw new RangeError(`rpc method name "${method}" is empty or too long`);
    this.rpcHandlers.set(method, handler);
  }

  /**
   * Calls `method` on node `to` at `addr` (a member or not) on a connection
   * of its own, and resolves with the reply body. Everything — connecting,
   * authenticating, the handler — happens within `timeoutMs`.
   */
  async callRpc(to: NodeId, addr: string, method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (!(timeoutMs > 0)) throw new RangeError(`rpc timeout must be positive, got ${timeoutMs}`);
    const what = `rpc ${method} to node ${to} at ${addr}`;
    if (this.stopped) throw sealError('ErrRaftStopped', `${what}: transport stopped`);
    const id = this.nextRpcId++;
    const request = encodeFrame({ k: 'rpc', id, method, body });
    if (request.length - 4 > this.opts.rpcMaxFrameBytes) {
      throw sealError('ErrRequestTooLarge', `${what}: request of ${request.length - 4} bytes over the limit of ${this.opts.rpcMaxFrameBytes}`);
    }
    const deadline = Date.now() + timeoutMs;
    let conn: FrameConn | undefined;
    let cancel: (reason: string, code?: 'ErrTimeout' | 'ErrRaftStopped') => void = () => {};
    const timer = setTimeout(() => cancel(`no reply within ${timeoutMs} ms`), timeoutMs);
    try {
      const reply = await new Promise<RpcReply>((resolve, reject) => {
        let settled = false;
        const settle = (f: () => void): void => {
          if (settled) return;
          settled = true;
          this.rpcCalls.delete(cancel);
          f();
        };
        cancel = (reason, code = 'ErrTimeout') => settle(() => reject(sealError(code, `${what}: ${reason}`)));
        this.rpcCalls.add(cancel);
        this.dial(to, addr, { rpc: true, timeoutMs: Math.min(this.opts.handshakeTimeoutMs, timeoutMs) }).then(
          (c) => {
            if (settled) {
              c.close('rpc abandoned');
              return;
            }
            conn = c;
            c.maxFrameBytes = this.opts.rpcMaxFrameBytes;
            c.onFrame = (f) => {
              if (f.k === 'rpcReply' && f.id === id && typeof f.ok === 'boolean') settle(() => resolve(f));
              else cancel(`unexpected ${String(f.k)} frame in reply`);
            };
            c.socket.once('close', () => cancel('connection closed before the reply'));
            c.socket.write(request);
          },
          (e: Error) => {
            const left = deadline - Date.now();
            cancel(left <= 0 ? `no reply within ${timeoutMs} ms` : `unreachable (${e.message})`);
          },
        );
      });
      if (reply.ok) return reply.body;
      throw replyError(what, reply.error);
    } finally {
      clearTimeout(timer);
      conn?.close('rpc done');
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const cancel of [...this.rpcCalls]) cancel('transport stopped', 'ErrRaftStopped');
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
  private dial(peerId: NodeId, addr: string, how: { rpc?: boolean; timeoutMs?: number } = {}): Promise<FrameConn> {
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
      const timer = setTimeout(() => fail('handshake timeout'), how.timeoutMs ?? this.opts.handshakeTimeoutMs);
      const myNonce = crypto.randomBytes(32);
      let theirNonce: Uint8Array | undefined;
      let sentAuth = false;
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
            const mac = this.mac('dialer', theirNonce, myNonce, this.id, peerId);
            conn.send({ k: 'auth', from: this.id, to: peerId, nonce: myNonce, mac, ...(how.rpc === true ? { rpc: true } : {}) });
            sentAuth = true;
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
        // A listener that closes on our proof refused it: most likely another cluster secret.
        (reason) => fail(sentAuth ? `${reason} after our authentication (refused: wrong cluster secret?)` : reason),
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
    let rpc: RpcServe | undefined;
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
          const auth = f as Extract<Frame, { k: 'auth' }>;
          if (auth.rpc === true) {
            // The handshake timer keeps running until the call arrives.
            rpc = { served: false };
            conn.maxFrameBytes = this.opts.rpcMaxFrameBytes;
          } else {
            clearTimeout(timer);
            conn.maxFrameBytes = this.opts.maxFrameBytes;
          }
          conn.send({ k: 'ok', mac: this.mac('listener', nonce, auth.nonce, auth.from, this.id) });
          return;
        }
        if (rpc !== undefined) {
          if (rpc.served || f.k !== 'rpc') {
            conn.close(`unexpected ${String(f.k)} frame on an rpc connection`);
            return;
          }
          rpc.served = true;
          clearTimeout(timer);
          void this.serveCall(conn, peer, f);
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
      if (peer === undefined || rpc?.served === false) conn.close('handshake timeout');
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

  /** Runs one call and answers it; the caller closes the connection once it has the reply. */
  private async serveCall(conn: FrameConn, from: NodeId, f: Extract<Frame, { k: 'rpc' }>): Promise<void> {
    const id = f.id;
    let reply: RpcReply;
    if (!Number.isSafeInteger(id) || typeof f.method !== 'string') {
      conn.close('malformed rpc frame');
      return;
    }
    const handler = this.rpcHandlers.get(f.method);
    if (handler === undefined) {
      reply = errorReply(id, sealError('ErrBadRequest', `unknown rpc method "${f.method.slice(0, RPC_MAX_METHOD)}"`));
    } else if (this.rpcServing >= this.opts.rpcMaxConcurrent) {
      reply = errorReply(id, sealError('ErrTimeout', `node ${this.id} is serving ${this.rpcServing} rpc calls already; retry`));
    } else {
      this.rpcServing++;
      this.stats.rpcServed++;
      try {
        reply = { k: 'rpcReply', id, ok: true, body: await handler(f.body, from) };
      } catch (e) {
        reply = errorReply(id, e);
      } finally {
        this.rpcServing--;
      }
    }
    if (conn.isClosed) return;
    let out: Buffer;
    try {
      out = encodeFrame(reply);
    } catch (e) {
      out = encodeFrame(errorReply(id, new Error(`reply does not encode: ${(e as Error).message}`)));
    }
    if (out.length - 4 > this.opts.rpcMaxFrameBytes) {
      out = encodeFrame(errorReply(id, new Error(`reply of ${out.length - 4} bytes over the limit of ${this.opts.rpcMaxFrameBytes}`)));
    }
    // Half-close once the reply is out: the caller's side closes, so no call holds a connection open.
    conn.socket.end(out);
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

interface RpcServe {
  /** The connection's one call has arrived. */
  served: boolean;
}

/** A handler's failure as it travels back: the code of a SealError, the message only otherwise. */
function errorReply(id: number, e: unknown): RpcReply {
  if (isSealError(e)) {
    const prefix = `${e.code}: `;
    const message = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    return { k: 'rpcReply', id, ok: false, error: { code: e.code, message: message.slice(0, RPC_MAX_ERROR_MESSAGE) } };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { k: 'rpcReply', id, ok: false, error: { message: message.slice(0, RPC_MAX_ERROR_MESSAGE) } };
}

/** The caller's side of an error reply: a SealError of the same code when it names a known one. */
function replyError(what: string, error: unknown): Error {
  const e = (error ?? {}) as { code?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message.slice(0, RPC_MAX_ERROR_MESSAGE) : 'malformed error reply';
  if (typeof e.code === 'string' && Object.hasOwn(ERROR_CODES, e.code)) return sealError(e.code as ErrorCode, `${what}: ${message}`);
  return new Error(`${what}: ${message}`);
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
