// `sealkv start` and `sealkv start --dev`: a node from flags (SPEC §12).
// `--dev` runs bootstrap and both encryption phases on first start and
// prints how to connect once the node serves. A refusal at start, an apply
// that halts (ErrRaftUnwrapFailed, ErrEncryptionApply, ...) and a refusal
// found once Raft runs (ErrLocalEpochRollback) each print one line naming
// the code and exit non-zero.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger } from '../log/index.js';
import { openReplicatedEngine, resolveStartConfig, startFailureLine, startNode, stopOnSignals, type RunningNode, type StartOptions } from '../node/index.js';

/** How long a halting node waits for its servers to answer requests in flight before it exits. */
const HALT_FLUSH_MS = 3_000;

export async function runStart(options: StartOptions): Promise<void> {
  let logger = createLogger();
  try {
    const config = resolveStartConfig(options);
    logger = createLogger({ base: { raft_id: config.raftId } });
    if (config.dev) logger.warn({ data_dir: config.dataDir }, 'development node: single member, data and KEK under ./sealkv-dev, not for production');
    if (config.dev) ensureDevKek(config.kekFile);
    let node: RunningNode | undefined;
    let exiting = false;
    const exitWith = (what: string) => (err: Error): void => {
      // One line, once: a second failure during the flush below says nothing new.
      if (exiting) return;
      exiting = true;
      process.stderr.write(`sealkv: ${what}: ${withRootCause(err)}\n`);
      // Requests in flight get their typed error (ErrRaftStopped) before the
      // process goes: stop the servers gracefully, within a bound.
      setTimeout(() => process.exit(1), HALT_FLUSH_MS);
      void (node?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
    };
    node = await startNode(config, (cfg, { metrics }) => openReplicatedEngine(cfg, { logger, metrics, onHalt: exitWith('halted'), onFatal: exitWith('cannot start'), ...testWriteCeiling() }), logger);
    stopOnSignals(node, logger);
    logger.info({ resp: node.resp, admin: node.admin, raft: config.raftListen, data_dir: config.dataDir }, 'ready');
    if (config.dev) {
      process.stderr.write(
        `sealkv dev node ready. Connect with any Redis client, e.g.\n  redis-cli -p ${node.resp.port} set hello world\n  redis-cli -p ${node.resp.port} get hello\n`,
      );
    }
  } catch (err) {
    process.stderr.write(`${startFailureLine(err)}\n`);
    process.exit(1);
  }
}

/**
 * `err`'s message, followed by its innermost cause's when that says more
 * (a halt from the store reads "Batch was not applied"; its cause says
 * "No space left on device").
 */
function withRootCause(err: Error): string {
  let root: unknown = err;
  for (let depth = 0; depth < 8 && root instanceof Error && root.cause instanceof Error; depth++) root = root.cause;
  const detail = root instanceof Error ? root.message : '';
  return detail === '' || err.message.includes(detail) ? err.message : `${err.message} (cause: ${detail})`;
}

/** `--dev` keeps a development KEK outside the data dir, created once with mode 0600 (SPEC §12). */
function ensureDevKek(file: string | undefined): void {
  if (file === undefined || fs.existsSync(file)) return;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, crypto.randomBytes(32), { mode: 0o600, flag: 'wx' });
  process.stderr.write(`sealkv: created the development KEK ${file} (for development only: anyone with this file can read the dev node's data)\n`);
}

/**
 * Test-only: SEALKV_TEST_WRITE_CEILING lowers the per-(DEK, process) seal
 * ceiling of SPEC §3.3 (2^32) so that tests reach the 90% rotation and the
 * 100% refusal in a few writes.
 */
function testWriteCeiling(): { writeCeiling?: number } {
  const text = process.env.SEALKV_TEST_WRITE_CEILING;
  if (text === undefined) return {};
  const n = Number(text);
  if (!/^[1-9]\d*$/.test(text) || !Number.isSafeInteger(n)) throw new RangeError(`SEALKV_TEST_WRITE_CEILING: "${text}" is not a positive integer`);
  return { writeCeiling: n };
}
