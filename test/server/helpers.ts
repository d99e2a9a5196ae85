// Starts a RESP server over a MemoryEngine on 127.0.0.1:0 and gives raw and
// ioredis clients to it; everything started is stopped by `stop()`.

import net from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { MemoryEngine, RespServer, type Engine, type RespServerOptions } from '../../src/server/index.js';

export interface Harness {
  server: RespServer;
  engine: Engine;
  metrics: SealkvMetrics;
  port: number;
  client(options?: RedisOptions): Promise<Redis>;
  raw(): Promise<RawClient>;
  stop(): Promise<void>;
}

export async function startServer(options: Partial<RespServerOptions> = {}): Promise<Harness> {
  const engine = options.engine ?? new MemoryEngine();
  const metrics = options.metrics ?? new SealkvMetrics();
  const server = new RespServer({ port: 0, ...options, engine, metrics });
  const { port } = await server.start();
  const clients: Redis[] = [];
  const raws: RawClient[] = [];
  return {
    server,
    engine,
    metrics,
    port,
    async client(clientOptions = {}) {
      const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...clientOptions });
      client.on('error', () => undefined);
      clients.push(client);
      await client.connect();
      return client;
    },
    async raw() {
      const raw = await RawClient.connect(port);
      raws.push(raw);
      return raw;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      for (const r of raws) r.close();
      await server.close();
      await engine.close();
    },
  };
}

/** A bare socket that collects everything the server sends. */
export class RawClient {
  readonly socket: net.Socket;
  #chunks: Buffer[] = [];
  #length = 0;
  #closed = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#chunks.push(d);
      this.#length += d.length;
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  #text(): string {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]?.toString('latin1') ?? '';
  }

  /** Waits (bounded) until `n` bytes have arrived; returns how many did, and clears them. */
  async untilBytes(n: number, timeoutMs = 5000): Promise<number> {
    await this.#wait(() => this.#length >= n, timeoutMs);
    const received = this.#length;
    this.#chunks = [];
    this.#length = 0;
    return received;
  }

  /** Waits (bounded) until the received text satisfies `done`, then returns it all and clears it. */
  async until(done: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    await this.#wait(() => done(this.#text()), timeoutMs);
    const text = this.#text();
    this.#chunks = [];
    this.#length = 0;
    return text;
  }

  async #wait(done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (this.#closed || Date.now() > deadline) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for `n` CRLF-terminated lines. */
  lines(n: number): Promise<string> {
    return this.until((t) => t.split('\r\n').length > n);
  }

  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    await this.until(() => false, timeoutMs).catch(() => undefined);
    return this.#closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
