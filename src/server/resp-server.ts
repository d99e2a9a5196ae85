// The RESP2 server: accepts client connections (connection.ts runs each
// one), enforces the connection limit, and holds what connections share:
// the engine, settings, counters, the password check and INFO.

import net from 'node:net';
import { silentLogger, type Logger } from '../log/index.js';
import type { SealkvMetrics } from '../metrics/index.js';
import { Connection, SERVER_VERSION } from './connection.js';
import type { Engine } from './engine.js';
import { boundAddress, listen } from './listen.js';
import { encodeError, type RespLimits } from './resp/index.js';
import { matchesSecret, secretDigest } from './secrets.js';

export const DEFAULT_RESP_PORT = 6380;
/** What INFO reports as redis_version: the Redis command set this server follows. */
const COMPAT_REDIS_VERSION = '7.0.0';

export interface RespServerOptions {
  engine: Engine;
  host?: string;
  port?: number;
  /** When set, clients must AUTH (or HELLO ... AUTH) before anything else. */
  password?: string;
  maxConnections?: number;
  /** Close connections idle this long (ms); 0 = never, like Redis' default `timeout 0`. */
  idleTimeoutMs?: number;
  limits?: Partial<RespLimits>;
  /** Parsed but unanswered commands per connection before reading pauses. */
  maxPendingCommands?: number;
  /** Argument bytes of parsed but unanswered commands per connection before reading pauses. */
  maxPendingBytes?: number;
  /** Unsent reply bytes per connection before reading pauses. */
  maxOutputBytes?: number;
  /** Most commands in one engine call. */
  maxBatch?: number;
  /** Argument bytes after which a batch stops growing (one Raft entry stays moderate). */
  maxBatchBytes?: number;
  /** Reads wait for ReadIndex (default true). */
  linearizableReads?: boolean;
  metrics?: SealkvMetrics;
  logger?: Logger;
}

const MAX_CLIENTS = encodeError('ERR', 'max number of clients reached');

interface ServerCounters {
  connectionsReceived: number;
  connectionsRejected: number;
  commandsProcessed: number;
}

export class RespServer {
  readonly #engine: Engine;
  readonly #host: string;
  readonly #port: number;
  readonly #passwordHash: Buffer | null;
  readonly #limits: Partial<RespLimits>;
  readonly #metrics: SealkvMetrics | undefined;
  readonly #log: Logger;
  readonly #connections = new Set<Connection>();
  /** Settings the connections read on every batch. */
  readonly config: Readonly<{
    idleTimeoutMs: number;
    maxConnections: number;
    maxPending: number;
    maxPendingBytes: number;
    maxOutput: number;
    maxBatch: number;
    maxBatchBytes: number;
    linearizable: boolean;
    authRequired: boolean;
  }>;
  readonly #counters: ServerCounters = { connectionsReceived: 0, connectionsRejected: 0, commandsProcessed: 0 };
  readonly #startedAt = Date.now();
  #server: net.Server | null = null;
  #nextClientId = 1;

  constructor(options: RespServerOptions) {
    if (options.engine === undefined) throw new TypeError('RespServer needs an engine');
    this.#engine = options.engine;
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? DEFAULT_RESP_PORT;
    if (options.password !== undefined && options.password.length === 0) throw new RangeError('password must not be empty');
    this.#passwordHash = options.password === undefined ? null : secretDigest(options.password);
    const idleTimeoutMs = options.idleTimeoutMs ?? 0;
    if (!Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs < 0) throw new RangeError('idleTimeoutMs must be >= 0');
    this.#limits = options.limits ?? {};
    this.config = Object.freeze({
      idleTimeoutMs,
      maxConnections: positive(options.maxConnections ?? 10_000, 'maxConnections'),
      maxPending: positive(options.maxPendingCommands ?? 4096, 'maxPendingCommands'),
      maxPendingBytes: positive(options.maxPendingBytes ?? 64 * 1024 * 1024, 'maxPendingBytes'),
      maxOutput: positive(options.maxOutputBytes ?? 16 * 1024 * 1024, 'maxOutputBytes'),
      maxBatch: positive(options.maxBatch ?? 1024, 'maxBatch'),
      maxBatchBytes: positive(options.maxBatchBytes ?? 4 * 1024 * 1024, 'maxBatchBytes'),
      linearizable: options.linearizableReads ?? true,
      authRequired: this.#passwordHash !== null,
    });
    this.#metrics = options.metrics;
    this.#log = options.logger ?? silentLogger();
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#server !== null) throw new Error('RespServer already started');
    const server = net.createServer({ noDelay: true, keepAlive: true, allowHalfOpen: true }, (socket) => this.#accept(socket));
    this.#server = server;
    await listen(server, this.#port, this.#host);
    server.on('error', (err) => this.#log.error({ err }, 'RESP listener error'));
    const address = this.address();
    this.#log.info({ host: address.host, port: address.port, auth: this.#passwordHash !== null }, 'RESP server listening');
    return address;
  }

  address(): { host: string; port: number } {
    return boundAddress(this.#server, 'RespServer');
  }

  /**
   * Stops accepting and closes every connection: each stops reading, sends
   * the replies of the batch it is running, and closes; after `graceMs` the
   * rest are cut. Resolves when all are gone.
   */
  async close(graceMs = 2000): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of this.#connections) connection.shutdown();
    const grace = setTimeout(() => {
      for (const connection of this.#connections) connection.destroy();
    }, graceMs);
    await closed;
    clearTimeout(grace);
  }

  /** Facts for INFO and the admin `/status`. */
  stats(): { connectedClients: number; uptimeSeconds: number } & ServerCounters {
    return { connectedClients: this.#connections.size, uptimeSeconds: Math.floor((Date.now() - this.#startedAt) / 1000), ...this.#counters };
  }

  #accept(socket: net.Socket): void {
    if (this.#connections.size >= this.config.maxConnections) {
      this.#counters.connectionsRejected++;
      this.countClosed('max_connections');
      this.#log.warn({ remote: socket.remoteAddress, max: this.config.maxConnections }, 'connection refused: max number of clients reached');
      socket.on('error', () => undefined);
      socket.end(MAX_CLIENTS);
      return;
    }
    this.#counters.connectionsReceived++;
    this.#metrics?.connectionsAccepted.inc();
    this.#metrics?.connections.inc();
    const connection = new Connection(this, socket, this.#nextClientId++);
    this.#connections.add(connection);
    socket.once('close', () => {
      this.#connections.delete(connection);
      this.#metrics?.connections.dec();
    });
  }

  // Members the connections use (package-private by convention).
  get engine(): Engine {
    return this.#engine;
  }
  get limits(): Partial<RespLimits> {
    return this.#limits;
  }
  get metrics(): SealkvMetrics | undefined {
    return this.#metrics;
  }
  get log(): Logger {
    return this.#log;
  }
  countCommands(n: number): void {
    this.#counters.commandsProcessed += n;
  }
  /** A connection the server refused or closed: max_connections, idle_timeout, protocol_error. */
  countClosed(reason: string): void {
    this.#metrics?.connectionsClosedByServer.inc({ reason });
  }

  /** Constant-time password check. */
  checkPassword(user: Buffer | undefined, password: Buffer): boolean | 'no-password' {
    if (this.#passwordHash === null) return 'no-password';
    const userOk = user === undefined || user.toString('latin1') === 'default';
    return matchesSecret(password, this.#passwordHash) && userOk;
  }

  infoText(section: string | undefined): string {
    const stats = this.stats();
    const engine = this.#engine.status();
    const sections: Record<string, [string, string | number | boolean][]> = {
      server: [
        ['redis_version', COMPAT_REDIS_VERSION],
        ['sealkv_version', SERVER_VERSION],
        ['redis_mode', 'standalone'],
        ['process_id', process.pid],
        ['tcp_port', this.address().port],
        ['uptime_in_seconds', stats.uptimeSeconds],
      ],
      clients: [
        ['connected_clients', stats.connectedClients],
        ['maxclients', this.config.maxConnections],
      ],
      persistence: [['loading', 0]],
      stats: [
        ['total_connections_received', stats.connectionsReceived],
        ['total_commands_processed', stats.commandsProcessed],
        ['rejected_connections', stats.connectionsRejected],
      ],
      replication: [['role', engine.role === 'follower' ? 'slave' : 'master']],
      sealkv: Object.entries(engine),
    };
    const wanted = section === undefined || section === 'all' || section === 'everything' || section === 'default' ? Object.keys(sections) : [section];
    return wanted
      .filter((name) => sections[name] !== undefined)
      .map((name) => `# ${name[0]!.toUpperCase()}${name.slice(1)}\r\n${sections[name]!.map(([k, v]) => `${k}:${v}\r\n`).join('')}`)
      .join('\r\n');
  }
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${n}`);
  return n;
}
