// `sealkv serve-memory`: a single node over the in-memory engine — the RESP
// and admin servers as the real node will run them, without Raft or the
// store (nothing survives a restart). For trying clients and tools now.

import { createLogger } from '../log/index.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_RESP_PORT, loadSecret, serve } from '../server/index.js';
import { parseHostPort } from '../node/config.js';

export interface ServeMemoryOptions {
  listen: string;
  adminListen: string;
  requirepassFile?: string;
  adminTokenFile?: string;
}

export const SERVE_MEMORY_DEFAULTS = { listen: `127.0.0.1:${DEFAULT_RESP_PORT}`, adminListen: `127.0.0.1:${DEFAULT_ADMIN_PORT}` };

export async function runServeMemory(options: ServeMemoryOptions): Promise<void> {
  const log = createLogger({ base: { component: 'serve-memory' } });
  const password = loadSecret({ file: options.requirepassFile, env: 'SEALKV_REQUIREPASS' }, 'RESP password');
  const token = loadSecret({ file: options.adminTokenFile, env: 'SEALKV_ADMIN_TOKEN' }, 'admin token');
  const admin = parseHostPort(options.adminListen, '--admin-listen');
  log.warn('in-memory engine: Raft and the store are not wired in this command, and no data survives a restart');
  const running = await serve({
    listen: parseHostPort(options.listen, '--listen'),
    admin: token === undefined ? undefined : { ...admin, token },
    password,
    logger: log,
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
