#!/usr/bin/env node
// The `sealkv` command line.

import { Command } from 'commander';
import { backupCommand } from './backup.js';
import { benchCommand } from './bench.js';
import { runDemo } from './demo.js';
import { encryptionCommand } from './encryption.js';
import { runServeMemory, SERVE_MEMORY_DEFAULTS } from './serve-memory.js';
import { runStart } from './start.js';
import { DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_RAFT_LISTEN, DEFAULT_SNAPSHOT_ENTRIES, DEFAULT_GC_INTERVAL_MS, DEFAULT_GC_RETENTION_MS, DEV_HOME } from '../node/index.js';

const program = new Command('sealkv').description('Encrypted-at-rest, Raft-replicated MVCC key-value store');

program
  .command('demo')
  .description('seal and open a few values with a throwaway key, and show tamper detection')
  .action(() => runDemo());

program
  .command('serve-memory')
  .description('run the RESP and admin servers over an in-memory engine (no Raft, no persistence)')
  .option('--listen <host:port>', 'RESP address', SERVE_MEMORY_DEFAULTS.listen)
  .option('--admin-listen <host:port>', 'admin HTTP address', SERVE_MEMORY_DEFAULTS.adminListen)
  .option('--requirepass-file <path>', 'file holding the RESP password (or env SEALKV_REQUIREPASS)')
  .option('--admin-token-file <path>', 'file holding the admin bearer token (or env SEALKV_ADMIN_TOKEN)')
  .action((options) => runServeMemory(options));

program
  .command('start')
  .description('run a node (RESP, Raft and admin servers over the replicated store)')
  .option('--dev', `single encrypted node on defaults: data and a development KEK under ${DEV_HOME}, listening on 127.0.0.1`)
  .option('--data-dir <path>', `data directory (default ${DEFAULT_DATA_DIR})`)
  .option('--raft-id <id>', 'this node\'s Raft id')
  .option('--listen <host:port>', `RESP address (default ${DEFAULT_LISTEN})`)
  .option('--raft-listen <host:port>', `Raft address (default ${DEFAULT_RAFT_LISTEN})`)
  .option('--admin-listen <host:port>', `admin HTTP address (default ${DEFAULT_ADMIN_LISTEN})`)
  .option('--peers <id=host:port,...>', 'Raft addresses of the founding members, this node included')
  .option('--join <host:port>', 'join an existing cluster: start empty, wait for POST /cluster/learners on the leader\'s admin API (needs --peers of the members)')
  .option('--encryption-enabled', 'declare encryption capability (needs --kek-uri or --kek-file); encrypting starts with `sealkv encryption enable-storage-envelope`')
  .option('--encryption-rotate-on-startup', 'rotate each active DEK the first time this node leads after it starts')
  .option('--kek-uri <uri>', 'KEK provider (aws-kms://, file://, env://)')
  .option('--kek-file <path>', 'KEK file (32 raw bytes)')
  .option('--cluster-secret-file <path>', 'shared secret that authenticates Raft peers')
  .option('--admin-token-file <path>', 'admin bearer token (or env SEALKV_ADMIN_TOKEN)')
  .option('--requirepass-file <path>', 'RESP password (or env SEALKV_REQUIREPASS)')
  .option('--crypto-backend <name>', 'aesni | batch | wasm | auto')
  .option('--compression <on|off>', 'Snappy before sealing')
  .option('--raft-segment-bytes <n>', 'Raft log segment size in bytes; compaction deletes whole segments (default 64 MiB)')
  .option('--snapshot-entries <n>', `snapshot and compact the Raft log every n applied entries (default ${DEFAULT_SNAPSHOT_ENTRIES})`)
  .option('--gc-interval-ms <ms>', `remove old versions from the store every <ms> milliseconds (default ${DEFAULT_GC_INTERVAL_MS})`)
  .option('--gc-retention-ms <ms>', `keep every version a read up to <ms> milliseconds behind the last commit can see (default ${DEFAULT_GC_RETENTION_MS})`)
  .action((options) => runStart(options));

program.addCommand(encryptionCommand());
program.addCommand(backupCommand());
program.addCommand(benchCommand());

await program.parseAsync(process.argv);
