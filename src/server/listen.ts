// Listening helpers shared by the RESP and admin servers.

import type net from 'node:net';

/** Listens on host:port; rejects on a bind error (port in use, bad address). */
export function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** The bound address of a listening server. */
export function boundAddress(server: net.Server | null, what: string): { host: string; port: number } {
  const a = server?.address();
  if (a === null || a === undefined || typeof a === 'string') throw new Error(`${what} is not listening`);
  return { host: a.address, port: a.port };
}
