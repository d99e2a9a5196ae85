// `sealkv start` and `sealkv start --dev`: a node from flags (SPEC §12).
// The encryption flags are accepted and validated now; the rollout issue
// wires them. `--dev` prints how to connect once the node serves.

import { createLogger } from '../log/index.js';
import { openReplicatedEngine, resolveStartConfig, startFailureLine, startNode, stopOnSignals, type StartOptions } from '../node/index.js';

export async function runStart(options: StartOptions): Promise<void> {
  let logger = createLogger();
  try {
    const config = resolveStartConfig(options);
    logger = createLogger({ base: { raft_id: config.raftId } });
    if (config.dev) logger.warn({ data_dir: config.dataDir }, 'development node: single member, data and KEK under ./sealkv-dev, not for production');
    if (config.encryptionEnabled || config.kekUri !== undefined || config.kekFile !== undefined) {
      logger.warn('encryption flags are accepted but not wired yet: values are stored in cleartext');
    }
    const node = await startNode(config, (cfg, { metrics }) => openReplicatedEngine(cfg, { logger, metrics, onHalt: () => process.exit(1) }), logger);
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
