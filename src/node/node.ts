// A running sealkv node: the replication stack (store, Raft, state machine,
// Engine) behind the RESP server and the admin API, with a `ready` log line
// once it serves and a graceful stop on SIGTERM/SIGINT.
//
// Stop order: stop accepting clients (RESP, admin), then close the engine,
// which stops the Raft driver (no more applies) and closes the store
// (RocksDB flushes on close).

import type { NodeConfig } from '../cli/start-config.js';
import type { Logger } from '../log/index.js';
import { SealkvMetrics } from '../metrics/index.js';
import { AdminServer, RespServer, loadSecret, type Engine } from '../server/index.js';

/** Opens the replication stack of a node; returns its Engine. */
export type OpenEngine = (config: NodeConfig, deps: { logger: Logger; metrics: SealkvMetrics }) => Promise<Engine>;

export interface RunningNode {
  resp: { host: string; port: number };
  admin: { host: string; port: number } | undefined;
  stop(): Promise<void>;
}

export async function startNode(config: NodeConfig, openEngine: OpenEngine, logger: Logger): Promise<RunningNode> {
  const metrics = new SealkvMetrics();
  const password = loadSecret({ file: config.requirepassFile, env: 'SEALKV_REQUIREPASS' }, 'RESP password');
  const adminToken = loadSecret({ file: config.adminTokenFile, env: 'SEALKV_ADMIN_TOKEN' }, 'admin token');
  const engine = await openEngine(config, { logger, metrics });
  const resp = new RespServer({
    engine,
    host: config.listen.host,
    port: config.listen.port,
    ...(password === undefined ? {} : { password }),
    metrics,
    logger,
  });
  let admin: AdminServer | undefined;
  try {
    const respAddress = await resp.start();
    let adminAddress: { host: string; port: number } | undefined;
    if (adminToken !== undefined) {
      admin = new AdminServer({
        token: adminToken,
        metrics,
        status: () => engine.status(),
        host: config.adminListen.host,
        port: config.adminListen.port,
        logger,
      });
      adminAddress = await admin.start();
    } else {
      logger.warn('admin API disabled: no --admin-token-file (or SEALKV_ADMIN_TOKEN)');
    }
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        await resp.close();
        await admin?.close();
        await engine.close();
      })());
    return { resp: respAddress, admin: adminAddress, stop };
  } catch (err) {
    await resp.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await engine.close().catch(() => undefined);
    throw err;
  }
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
