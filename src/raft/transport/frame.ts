// Length-prefixed msgpackr frames over a TCP socket (SPEC §6 transport):
//
//   len(4 BE) ‖ msgpack(frame)
//
// and the wire frames peers exchange. A frame over the connection's current
// limit (small before authentication) closes the connection before its body
// is buffered, so a stranger cannot make a node allocate.

import type net from 'node:net';
import { Packr } from 'msgpackr';
import type { Message, NodeId } from '../core/types.js';

/** Everything sent on a peer connection. */
export type Frame =
  /** listener → dialer, first frame: a fresh challenge. */
  | { k: 'hello'; id: NodeId; nonce: Uint8Array }
  /** dialer → listener: proof of the cluster secret over both nonces and both ids. */
  | { k: 'auth'; from: NodeId; to: NodeId; nonce: Uint8Array; mac: Uint8Array; rpc?: boolean }
  /** listener → dialer: the listener's proof (mutual authentication). */
  | { k: 'ok'; mac: Uint8Array }
  /** A batch of Raft messages. */
  | { k: 'msgs'; ms: Message[] }
  /** Snapshot stream: the MsgSnap, then data chunks, then the end; answered by `snapAck`. */
  | { k: 'snapBegin'; m: Message }
  | { k: 'snapChunk'; d: Uint8Array }
  | { k: 'snapEnd'; bytes: number }
  | { k: 'snapAck'; ok: boolean }
  /** Request/response connection (the dialer's `auth` said `rpc`): one call, one reply. */
  | { k: 'rpc'; id: number; method: string; body: unknown }
  | RpcReply;

/** The answer to an `rpc` frame; an error carries a SealError code when the handler threw one. */
export type RpcReply =
  | { k: 'rpcReply'; id: number; ok: true; body: unknown }
  | { k: 'rpcReply'; id: number; ok: false; error: { code?: string; message: string } };

// Records (msgpackr's extension for objects of one shape, ~30% cheaper for a
// batch of messages than plain maps) are defined inside each frame: no
// structure table is shared, so any peer decodes any frame on its own.
// Indexes and terms stay below 2^53, so numbers decode as numbers.
const packr = new Packr({ mapsAsObjects: true });

export function encodeFrame(f: Frame): Buffer {
  const body = packr.pack(f);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/**
 * Wraps a socket: parses frames as they arrive and hands them to `onFrame`;
 * closes the socket on a frame over `maxFrameBytes` or one that does not
 * decode. `maxFrameBytes` can be raised after authentication.
 */
export class FrameConn {
  maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private closed = false;

  /** Receives each frame; swapped by the owner as the connection's protocol advances. */
  onFrame: (f: Frame) => void;

  constructor(
    readonly socket: net.Socket,
    maxFrameBytes: number,
    onFrame: (f: Frame) => void,
    private readonly onClose: (reason: string) => void,
  ) {
    this.maxFrameBytes = maxFrameBytes;
    this.onFrame = onFrame;
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.onData(b));
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close('socket closed'));
  }

  /** Writes a frame; false when the socket buffer is full (wait for `drained()`). */
  send(f: Frame): boolean {
    if (this.closed) return false;
    return this.socket.write(encodeFrame(f));
  }

  drained(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks = [];
    this.socket.destroy();
    this.onClose(reason);
  }

  private onData(b: Buffer): void {
    if (this.closed) return;
    this.chunks.push(b);
    this.buffered += b.length;
    while (!this.closed && this.buffered >= 4) {
      const len = this.peekLength();
      if (len > this.maxFrameBytes) {
        this.close(`frame of ${len} bytes over the limit of ${this.maxFrameBytes}`);
        return;
      }
      // Chunks are joined once a whole frame is here, not on every arrival.
      if (this.buffered < 4 + len) return;
      const all = this.flatten();
      const body = all.subarray(4, 4 + len);
      const rest = all.subarray(4 + len);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      let frame: Frame;
      try {
        frame = packr.unpack(body) as Frame;
      } catch {
        this.close('undecodable frame');
        return;
      }
      if (frame === null || typeof frame !== 'object' || typeof (frame as { k?: unknown }).k !== 'string') {
        this.close('malformed frame');
        return;
      }
      this.onFrame(frame);
    }
  }

  /** The 4-byte length prefix, which may straddle chunks. */
  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.alloc(4);
    let n = 0;
    for (const c of this.chunks) {
      n += c.copy(head, n, 0, Math.min(c.length, 4 - n));
      if (n === 4) break;
    }
    return head.readUInt32BE(0);
  }

  private flatten(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }
}
