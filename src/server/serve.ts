// A single-node server over the MemoryEngine: the RESP server, the admin API
// (when a token is given) and the metrics registry, wired together with a
// logger. What `sealkv serve-memory` runs until the real node (Raft + store)
// is wired in; the node will assemble the same pieces around its own Engine.

import type { Logger } from '../log/index.js';
import { SealkvMetrics } from '../metrics/index.js';
import { AdminServer } from './admin.js';
import type { Engine } from './engine.js';
import { MemoryEngine } from './memory-engine.js';
import { RespServer, type RespServerOptions } from './resp-server.js';

export interface ServeOptions {
  listen: { host: string; port: number };
  /** The admin API starts only with a token. */
  admin?: { host: string; port: number; token: string };
  password?: string;
  engine?: Engine;
  /** The node's registry, so Raft and encryption metrics share `/metrics`; a new one by default. */
  metrics?: SealkvMetrics;
  /** More facts for the admin `/status` (Raft, encryption), merged beside `engine` and `resp`. */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  logger: Logger;
  resp?: Partial<Omit<RespServerOptions, 'engine' | 'host' | 'port' | 'password' | 'metrics' | 'logger'>>;
}

export interface RunningServer {
  resp: { host: string; port: number };
  metrics: SealkvMetrics;
  admin: { host: string; port: number } | null;
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const engine: Engine = options.engine ?? new MemoryEngine();
  const metrics = options.metrics ?? new SealkvMetrics();
  const log = options.logger;
  const resp = new RespServer({ ...options.resp, engine, metrics, logger: log, ...options.listen, password: options.password });
  const respAddress = await resp.start();
  let admin: AdminServer | null = null;
  let adminAddress: { host: string; port: number } | null = null;
  if (options.admin !== undefined) {
    admin = new AdminServer({
      token: options.admin.token,
      host: options.admin.host,
      port: options.admin.port,
      metrics,
      logger: log,
      ...(engine.membership === undefined ? {} : { membership: engine.membership }),
      ...(engine.encryption === undefined ? {} : { encryption: engine.encryption }),
      ...(engine.backup === undefined ? {} : { backup: engine.backup }),
      status: async () => ({ engine: engine.status(), resp: { ...respAddress, ...resp.stats() }, ...(await options.status?.()) }),
    });
    try {
      adminAddress = await admin.start();
    } catch (err) {
      await resp.close();
      throw err;
    }
  } else {
    log.warn('admin API disabled: no admin token given (--admin-token-file or SEALKV_ADMIN_TOKEN)');
  }
  return {
    resp: respAddress,
    metrics,
    admin: adminAddress,
    async close() {
      await resp.close();
      await admin?.close();
      await engine.close();
    },
  };
}
