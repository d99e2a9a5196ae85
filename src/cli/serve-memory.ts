// `sealkv serve-memory`: a single node over the in-memory engine — the RESP
// and admin servers as the real node will run them, without Raft or the
// store (nothing survives a restart). For trying clients and tools now.

import { createLogger } from '../log/index.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_RESP_PORT, loadSecret, serve } from '../server/index.js';

export interface ServeMemoryOptions {
  listen: string;
  adminListen: string;
  requirepassFile?: string;
  adminTokenFile?: string;
}

/** Parses `host:port`, `[v6]:port` or `port` (host defaults to 127.0.0.1). */
function parseListen(text: string, what: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const host = at < 0 ? '127.0.0.1' : text.slice(0, at).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const portText = at < 0 ? text : text.slice(at + 1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new RangeError(`${what}: "${text}" is not host:port`);
  return { host, port };
}

export const SERVE_MEMORY_DEFAULTS = { listen: `127.0.0.1:${DEFAULT_RESP_PORT}`, adminListen: `127.0.0.1:${DEFAULT_ADMIN_PORT}` };

export async function runServeMemory(options: ServeMemoryOptions): Promise<void> {
  const log = createLogger({ base: { component: 'serve-memory' } });
  const password = loadSecret({ file: options.requirepassFile, env: 'SEALKV_REQUIREPASS' }, 'RESP password');
  const token = loadSecret({ file: options.adminTokenFile, env: 'SEALKV_ADMIN_TOKEN' }, 'admin token');
  const admin = parseListen(options.adminListen, '--admin-listen');
  log.warn('in-memory engine: Raft and the store are not wired in this command, and no data survives a restart');
  const running = await serve({
    listen: parseListen(options.listen, '--listen'),
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
