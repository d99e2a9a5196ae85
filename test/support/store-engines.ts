// The engines every store test suite runs on (`describe.each(storeEngines)`),
// and temp-dir helpers. RocksDB stores live under os.tmpdir() and are
// removed by cleanup().

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryEngine, RocksEngine, type Engine } from '../../src/store/index.js';

export interface OpenedEngine {
  engine: Engine;
  /** Closes (if still open) and deletes what the engine left behind. */
  cleanup(): Promise<void>;
}

export const storeEngines: { name: string; open: () => Promise<OpenedEngine> }[] = [
  {
    name: 'memory',
    open: async () => {
      const engine = new MemoryEngine();
      return { engine, cleanup: () => engine.close() };
    },
  },
  {
    name: 'rocksdb',
    open: async () => {
      const dir = tempDir('sealkv-store-');
      const engine = await RocksEngine.open(dir);
      return {
        engine,
        cleanup: async () => {
          await engine.close().catch(() => undefined);
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
