// Worker thread for bench/resp.ts: runs a RESP server over a MemoryEngine so
// that the load generator on the main thread does not share its event loop.

import { parentPort } from 'node:worker_threads';
import { SealkvMetrics } from '../../src/metrics/index.js';
import { MemoryEngine, RespServer } from '../../src/server/index.js';

const server = new RespServer({ engine: new MemoryEngine(), port: 0, metrics: new SealkvMetrics() });
const { port } = await server.start();
parentPort!.postMessage({ port });
parentPort!.once('message', async () => {
  await server.close();
  parentPort!.postMessage({ closed: true });
});
