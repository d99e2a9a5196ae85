// Admin HTTP/JSON API (SPEC §12): bound to loopback by default, and every
// route needs `Authorization: Bearer <token>` (compared in constant time).
//   GET /health   {"status":"ok"} while the node serves
//   GET /status   JSON: node facts from the status provider (engine, server)
//   GET /metrics  Prometheus text from SealkvMetrics
//   POST /cluster/learners {"id","raft_address"}  add a learner   } replicated
//   POST /cluster/promote  {"id"[,"raft_address"]} learner → voter } engines
//   POST /cluster/remove   {"id"}                  remove a member } only
// Membership routes answer 200 with the new membership, 400 on a bad body,
// 409 with the error code when this node cannot make the change (not the
// leader: ask the leader's admin API), 404 when the engine has no membership.
//   POST /encryption/bootstrap                 } run cluster-wide (SPEC §8; a follower
//   POST /encryption/enable-storage-envelope   } forwards to the leader), 200 with
//   POST /encryption/enable-raft-envelope      } the operation's result
//   POST /encryption/rotate-dek?purpose=       } key lifecycle (SPEC §4.2), on the
//   POST /encryption/rewrap-deks[?kek_uri=]    } leader like the rollout; retire-dek
//   POST /encryption/retire-dek?key_id=N       } answers per-member facts
//   POST /encryption/rewrite?key_id=N|cleartext=1[&rate=MiB/s]   start the online sweep on
//                                              every member (SPEC §11), answers per member
//   GET  /encryption/rewrite/status            every member's sweeps and progress
//   GET  /encryption/status[?verify=1]         this node's encryption status
//   POST /encryption/disable                   always refused: encryption is one-way
// The encryption routes exist on replicated engines only (404 without).
// Their refusals are `{error, code, retryable}`: 400 for a malformed request
// (ErrBadRequest: a bad `purpose`, no `node`), 409 when retrying cannot help,
// 503 when it can (capability poll failed, cutover barrier, no leader).
// An operation may run long (polls, barrier): no server-side deadline.
//   POST /backup?out=<dir>   a consistent backup of this node into <dir> on its
//                            host (absent or empty); 200 with the summary, 409
//                            with the code when refused (replicated engines only)
// Other paths are 404, other methods 405; all errors are JSON.

import http from 'node:http';
import { isSealError, sealError, type SealError } from '../errors/index.js';
import { silentLogger, type Logger } from '../log/index.js';
import type { EncryptionOp, EncryptionOpParams, EngineBackup, EngineEncryption, EngineMembership } from './engine.js';
import { ENCRYPTION_OPS } from '../encryption/index.js';
import { sealErrorDetail } from './errors.js';
import type { SealkvMetrics } from '../metrics/index.js';
import { boundAddress, listen } from './listen.js';
import { matchesSecret, secretDigest } from './secrets.js';

export const DEFAULT_ADMIN_PORT = 8380;

/** Why `encryption disable` is refused, and what to do instead (the admin route and the CLI say the same). */
export const ENCRYPTION_DISABLE_EXPLANATION =
  'encryption is one-way and there is no in-place disable: to get a cleartext store, dump the data with a client ' +
  '(e.g. SCAN + GET) and load it into a new cluster started without --encryption-enabled';


export interface AdminServerOptions {
  token: string;
  metrics: SealkvMetrics;
  /** Facts for `/status`; called per request. */
  status: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Membership changes (replicated engines); the /cluster routes are 404 without. */
  membership?: EngineMembership;
  /** The encryption rollout (replicated engines); the /encryption routes are 404 without. */
  encryption?: EngineEncryption;
  /** Backups (replicated engines); POST /backup is 404 without. */
  backup?: EngineBackup;
  host?: string;
  port?: number;
  logger?: Logger;
}

const MAX_BODY_BYTES = 4096;

export class AdminServer {
  readonly #tokenHash: Buffer;
  readonly #metrics: SealkvMetrics;
  readonly #status: AdminServerOptions['status'];
  readonly #membership: EngineMembership | undefined;
  readonly #encryption: EngineEncryption | undefined;
  readonly #backup: EngineBackup | undefined;
  readonly #host: string;
  readonly #port: number;
  readonly #log: Logger;
  #server: http.Server | null = null;

  constructor(options: AdminServerOptions) {
    if (typeof options.token !== 'string' || options.token.length < 16) {
      throw new RangeError('the admin token must be a string of at least 16 characters');
    }
    this.#tokenHash = secretDigest(options.token);
    this.#metrics = options.metrics;
    this.#status = options.status;
    this.#membership = options.membership;
    this.#encryption = options.encryption;
    this.#backup = options.backup;
    this.#host = options.host ?? '127.0.0.1';
    this.#port = options.port ?? DEFAULT_ADMIN_PORT;
    this.#log = options.logger ?? silentLogger();
  }

  async start(): Promise<{ host: string; port: number }> {
    if (this.#server !== null) throw new Error('AdminServer already started');
    const server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.#server = server;
    await listen(server, this.#port, this.#host);
    const address = this.address();
    this.#log.info(address, 'admin API listening');
    return address;
  }

  address(): { host: string; port: number } {
    return boundAddress(this.#server, 'AdminServer');
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  #authorized(req: http.IncomingMessage): boolean {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer (.+)$/.exec(header) : null;
    return match !== null && matchesSecret(match[1]!, this.#tokenHash);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (!this.#authorized(req)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="sealkv"');
      send(res, 401, { error: 'a bearer token is required' });
      return;
    }
    const routes: Record<string, () => Promise<void>> = {
      '/health': async () => send(res, 200, { status: 'ok' }),
      '/status': async () => send(res, 200, await this.#status()),
      '/metrics': async () => {
        const { contentType, body } = await this.#metrics.render();
        res.writeHead(200, { 'Content-Type': contentType });
        res.end(body);
      },
    };
    const membership = this.#membership;
    if (path.startsWith('/cluster/') && membership !== undefined) {
      await this.#cluster(req, res, path, membership);
      return;
    }
    const encryption = this.#encryption;
    if (path.startsWith('/encryption/') && encryption !== undefined) {
      await this.#encryptionRoute(req, res, url, encryption);
      return;
    }
    const backup = this.#backup;
    if (path === '/backup' && backup !== undefined) {
      await this.#backupRoute(req, res, url, backup);
      return;
    }
    const route = routes[path];
    if (route === undefined) {
      send(res, 404, { error: `no route ${path}` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, { error: `${req.method} is not allowed on ${path}` });
      return;
    }
    await route();
  }

  async #cluster(req: http.IncomingMessage, res: http.ServerResponse, path: string, membership: EngineMembership): Promise<void> {
    const changes: Record<string, (body: Record<string, unknown>) => Promise<Record<string, unknown>>> = {
      '/cluster/learners': (b) => membership.addLearner(field(b, 'id'), field(b, 'raft_address')),
      '/cluster/promote': (b) => membership.promote(field(b, 'id'), b.raft_address === undefined ? undefined : field(b, 'raft_address')),
      '/cluster/remove': (b) => membership.remove(field(b, 'id')),
    };
    const change = changes[path];
    if (change === undefined) {
      send(res, 404, { error: `no route ${path}` });
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      send(res, 405, { error: `${req.method} is not allowed on ${path}` });
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = await readJson(req);
    } catch (err) {
      send(res, 400, { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    let result: Record<string, unknown>;
    try {
      result = await change(body);
    } catch (err) {
      if (err instanceof RangeError) send(res, 400, { error: err.message });
      else if (isSealError(err)) send(res, 409, { error: err.message, code: err.code });
      else throw err;
      return;
    }
    this.#log.info({ path, id: body.id }, 'membership changed');
    send(res, 200, result);
  }

  async #encryptionRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, encryption: EngineEncryption): Promise<void> {
    const verify = ['1', 'true'].includes(url.searchParams.get('verify') ?? '');
    const routes: Record<string, { method: 'GET' | 'POST'; op?: EncryptionOp; run: () => Promise<Record<string, unknown>> }> = {
      '/encryption/status': { method: 'GET', run: () => encryption.status({ verify }) },
      '/encryption/disable': {
        method: 'POST',
        run: () => Promise.reject(sealError('ErrEncryptionDisableUnsupported', ENCRYPTION_DISABLE_EXPLANATION)),
      },
    };
    const params: EncryptionOpParams = {
      ...(url.searchParams.has('purpose') ? { purpose: url.searchParams.get('purpose')! } : {}),
      ...(url.searchParams.has('kek_uri') ? { kek_uri: url.searchParams.get('kek_uri')! } : {}),
      ...(url.searchParams.has('key_id') ? { key_id: Number(url.searchParams.get('key_id')) } : {}),
    };
    for (const op of ENCRYPTION_OPS) routes[`/encryption/${op}`] = { method: 'POST', op, run: () => encryption.run(op, params) };
    const rewrite = encryption.rewrite;
    if (rewrite !== undefined) {
      routes['/encryption/rewrite'] = { method: 'POST', run: () => rewrite.start(...rewriteQuery(url.searchParams)) };
      routes['/encryption/rewrite/status'] = { method: 'GET', run: () => rewrite.status() };
    }
    const sidecarState = encryption.sidecarState?.bind(encryption);
    if (sidecarState !== undefined) {
      routes['/encryption/sidecar-state'] = {
        method: 'GET',
        run: () => {
          const node = url.searchParams.get('node');
          if (node === null || node.length === 0) return Promise.reject(sealError('ErrBadRequest', 'sidecar-state needs ?node=<raft-id>'));
          return sidecarState(node);
        },
      };
    }
    const path = url.pathname;
    const route = routes[path];
    if (route === undefined) {
      send(res, 404, { error: `no route ${path}` });
      return;
    }
    if (req.method !== route.method && !(route.method === 'GET' && req.method === 'HEAD')) {
      res.setHeader('Allow', route.method === 'GET' ? 'GET, HEAD' : 'POST');
      send(res, 405, { error: `${req.method} is not allowed on ${path}` });
      return;
    }
    let result: Record<string, unknown>;
    try {
      if (route.op !== undefined) this.#log.info({ op: route.op }, 'encryption operation requested');
      result = await route.run();
    } catch (err) {
      if (!isSealError(err)) throw err;
      if (route.op !== undefined) this.#log.warn({ op: route.op, code: err.code }, 'encryption operation refused');
      sendSealError(res, err);
      return;
    }
    if (route.op !== undefined) this.#log.info({ op: route.op }, 'encryption operation done');
    send(res, 200, result);
  }

  async #backupRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, backup: EngineBackup): Promise<void> {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      send(res, 405, { error: `${req.method} is not allowed on /backup` });
      return;
    }
    const out = url.searchParams.get('out');
    if (out === null || out.length === 0) {
      send(res, 400, { error: 'POST /backup needs ?out=<directory on the node\'s host>', code: 'ErrBadRequest' });
      return;
    }
    this.#log.info({ out }, 'backup requested');
    let result: Record<string, unknown>;
    try {
      result = await backup.create(out);
    } catch (err) {
      if (!isSealError(err)) throw err;
      this.#log.warn({ out, code: err.code }, 'backup refused');
      sendSealError(res, err);
      return;
    }
    this.#log.info({ out, applied_index: result.applied_index }, 'backup written');
    send(res, 200, result);
  }
}

/** A typed refusal: 400 for a malformed request, 503 when the same request may succeed later, 409 when it cannot. */
function sendSealError(res: http.ServerResponse, err: SealError): void {
  const status = err.code === 'ErrBadRequest' ? 400 : err.retryable ? 503 : 409;
  send(res, status, { error: sealErrorDetail(err), code: err.code, retryable: err.retryable });
}

/** `key_id=N` or `cleartext=1` (exactly one), and an optional positive `rate` in MiB/s. */
function rewriteQuery(q: URLSearchParams): [target: string, rate: number | null] {
  const keyId = q.get('key_id');
  const cleartext = ['1', 'true'].includes(q.get('cleartext') ?? '');
  if ((keyId === null) === !cleartext) throw sealError('ErrBadRequest', 'rewrite needs exactly one of key_id=<N> or cleartext=1');
  const rate = q.get('rate');
  if (rate !== null && !(Number(rate) > 0 && Number.isFinite(Number(rate)))) throw sealError('ErrBadRequest', `rate must be a positive number of MiB/s, not ${JSON.stringify(rate)}`);
  return [keyId ?? 'cleartext', rate === null ? null : Number(rate)];
}

function field(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value.length === 0) throw new RangeError(`"${name}" must be a non-empty string`);
  return value;
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RangeError(`the body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new RangeError('the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(text);
}
