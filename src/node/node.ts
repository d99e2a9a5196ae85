// A running sealkv node: the replication stack (store, Raft, state machine,
// Engine) behind the RESP server and the admin API, with a `ready` log line
// once it serves and a graceful stop on SIGTERM/SIGINT.
//
// Stop order: stop accepting clients (RESP, admin), then close the engine,
// which stops the Raft driver (no more applies) and closes the store
// (RocksDB flushes on close).

import type { NodeConfig } from './config.js';
import type { Logger } from '../log/index.js';
import { SealkvMetrics } from '../metrics/index.js';
import { loadSecret, serve, type Engine, type RunningServer } from '../server/index.js';

/** Opens the replication stack of a node; returns its Engine. */
export type OpenEngine = (config: NodeConfig, deps: { logger: Logger; metrics: SealkvMetrics }) => Promise<Engine>;

export interface RunningNode {
  resp: { host: string; port: number };
  admin: { host: string; port: number } | null;
  stop(): Promise<void>;
}

/** Opens the engine and serves it on the configured RESP and admin addresses. */
export async function startNode(config: NodeConfig, openEngine: OpenEngine, logger: Logger): Promise<RunningNode> {
  const password = loadSecret({ file: config.requirepassFile, env: 'SEALKV_REQUIREPASS' }, 'RESP password');
  const adminToken = loadSecret({ file: config.adminTokenFile, env: 'SEALKV_ADMIN_TOKEN' }, 'admin token');
  const metrics = new SealkvMetrics();
  const engine = await openEngine(config, { logger, metrics });
  let server: RunningServer;
  try {
    server = await serve({
      listen: config.listen,
      admin: adminToken === undefined ? undefined : { ...config.adminListen, token: adminToken },
      password,
      engine,
      metrics,
      logger,
    });
  } catch (err) {
    await engine.close().catch(() => undefined);
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return { resp: server.resp, admin: server.admin, stop: () => (stopping ??= server.close()) };
}

/** Stops `node` on SIGTERM/SIGINT, then exits 0 (1 if stopping failed). */
export function stopOnSignals(node: RunningNode, logger: Logger): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'stopping');
    node.stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

/** The one line a refused start prints (typed errors lead with their code). */
export function startFailureLine(err: unknown): string {
  return `sealkv: cannot start: ${err instanceof Error ? err.message : String(err)}`;
}
