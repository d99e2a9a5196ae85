// A TCP proxy for one directed Raft link of a real multi-process cluster
// (SPEC §6, §13; the fault campaign): node i's `--peers` entry for node j
// names this proxy, which forwards to j's Raft port. The test cuts, delays
// and heals the link at runtime. Loopback only; `close()` ends everything.
//
// Why one proxy per directed link is a one-way partition: the transport
// (src/raft/transport) opens its own outbound connection to each peer and
// sends its messages, snapshots and RPC calls there; the listener answers on
// that connection only with the handshake, snapshot acks and RPC replies. So
// everything node i says to node j travels on connections i dialled, through
// this proxy, and j's messages to i go through the proxy of the link j→i.
// Cutting this proxy (both byte directions of its connections) silences i
// towards j — messages, snapshots, RPC calls and their replies — while j
// still reaches i. Dropping only the bytes from i to j on every stream
// instead would also cut j's messages to i, because j's connections need
// i's half of the handshake; a byte-level one-way drop is a two-way
// partition for TCP.
//
// A cut either holds bytes (the sockets stop reading, so the senders'
// buffers fill as behind a dead route) or drops them (the proxy reads and
// discards, as a black hole: what the sender wrote is lost), and holds new
// connections un-dialled. A heal either resumes the held streams (late
// delivery, nothing lost or reordered within a stream) or resets them (as
// when TCP gives up), the caller's choice; a stream that lost bytes is
// always reset (its framing is broken). A delay holds every chunk for
// `delayMs` in order.

import net from 'node:net';

export type HealMode = 'resume' | 'reset';
export type CutMode = 'hold' | 'drop';

interface Pipe {
  readonly client: net.Socket;
  upstream: net.Socket | undefined;
  /** Chunks waiting for their delay to pass, per direction, in order. */
  readonly delayed: { up: { due: number; data: Buffer }[]; down: { due: number; data: Buffer }[] };
  timer: NodeJS.Timeout | undefined;
  /** Bytes of this stream were dropped by a cut: it cannot resume. */
  damaged: boolean;
}

export class LinkProxy {
  /** Label for messages, e.g. 'n1→n2'. */
  readonly name: string;
  readonly #target: number;
  readonly #server: net.Server;
  readonly #pipes = new Set<Pipe>();
  #cut: CutMode | undefined;
  #delayMs = 0;
  #closed = false;
  /** What went through and what was cut, for a scenario's summary line. */
  readonly stats = { connections: 0, bytesUp: 0, bytesDown: 0, bytesDropped: 0, cuts: 0, resets: 0 };

  private constructor(name: string, target: number, server: net.Server) {
    this.name = name;
    this.#target = target;
    this.#server = server;
  }

  /** A proxy on a free 127.0.0.1 port forwarding to 127.0.0.1:`target`. */
  static async start(name: string, target: number, port = 0): Promise<LinkProxy> {
    const server = net.createServer();
    const proxy = new LinkProxy(name, target, server);
    server.on('connection', (s) => proxy.#accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Stops all traffic on the link, in both byte directions of its connections: held, or dropped. */
  cut(mode: CutMode = 'hold'): void {
    if (this.#cut !== undefined || this.#closed) return;
    this.#cut = mode;
    this.stats.cuts++;
    if (mode === 'drop') return;
    for (const p of this.#pipes) {
      p.client.pause();
      p.upstream?.pause();
    }
  }

  /** Lets traffic through again: held streams resume, or are reset so the peers reconnect. */
  heal(mode: HealMode = 'resume'): void {
    if (this.#cut === undefined || this.#closed) return;
    this.#cut = undefined;
    for (const p of [...this.#pipes]) {
      if (mode === 'reset' || p.damaged) {
        this.stats.resets++;
        this.#end(p);
      } else if (p.upstream === undefined) {
        this.#dial(p);
      } else {
        p.client.resume();
        p.upstream.resume();
        this.#drain(p);
      }
    }
  }

  /** Holds every chunk, both ways, for `ms` (0 = none) from now on. */
  setDelay(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`delay must be >= 0, got ${ms}`);
    this.#delayMs = ms;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of [...this.#pipes]) this.#end(p);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    if (this.#closed) {
      client.destroy();
      return;
    }
    this.stats.connections++;
    const p: Pipe = { client, upstream: undefined, delayed: { up: [], down: [] }, timer: undefined, damaged: false };
    this.#pipes.add(p);
    client.on('error', () => this.#end(p));
    client.on('close', () => this.#end(p));
    client.on('data', (d: Buffer) => this.#forward(p, 'up', d));
    if (this.#cut === 'hold') client.pause();
    else if (this.#cut === undefined) this.#dial(p);
  }

  #dial(p: Pipe): void {
    const upstream = net.connect({ host: '127.0.0.1', port: this.#target });
    p.upstream = upstream;
    upstream.on('error', () => this.#end(p));
    upstream.on('close', () => this.#end(p));
    upstream.on('data', (d: Buffer) => this.#forward(p, 'down', d));
    p.client.resume();
  }

  #forward(p: Pipe, dir: 'up' | 'down', data: Buffer): void {
    if (this.#cut === 'drop') {
      this.stats.bytesDropped += data.length;
      p.damaged = true;
      return;
    }
    if (dir === 'up') this.stats.bytesUp += data.length;
    else this.stats.bytesDown += data.length;
    const queue = p.delayed[dir];
    if (this.#delayMs === 0 && queue.length === 0) {
      this.#write(p, dir, data);
      return;
    }
    // Never before a chunk queued earlier: order within a stream is kept when the delay changes.
    const due = Math.max(Date.now() + this.#delayMs, queue.at(-1)?.due ?? 0);
    queue.push({ due, data });
    this.#drain(p);
  }

  #drain(p: Pipe): void {
    if (this.#cut !== undefined || p.timer !== undefined) return;
    const now = Date.now();
    for (const dir of ['up', 'down'] as const) {
      const queue = p.delayed[dir];
      while (queue.length > 0 && queue[0]!.due <= now) this.#write(p, dir, queue.shift()!.data);
    }
    const next = Math.min(p.delayed.up[0]?.due ?? Infinity, p.delayed.down[0]?.due ?? Infinity);
    if (next === Infinity) return;
    p.timer = setTimeout(() => {
      p.timer = undefined;
      this.#drain(p);
    }, next - now);
  }

  #write(p: Pipe, dir: 'up' | 'down', data: Buffer): void {
    const to = dir === 'up' ? p.upstream : p.client;
    const from = dir === 'up' ? p.client : p.upstream;
    if (to === undefined || to.destroyed) return;
    // Backpressure: stop reading the sender while the receiver's buffer is full.
    if (!to.write(data) && from !== undefined) {
      from.pause();
      to.once('drain', () => {
        if (this.#cut !== 'hold') from.resume();
      });
    }
  }

  #end(p: Pipe): void {
    if (!this.#pipes.delete(p)) return;
    clearTimeout(p.timer);
    p.client.destroy();
    p.upstream?.destroy();
  }
}
