#!/usr/bin/env node
// The `sealkv` command line.

import { Command } from 'commander';
import { runDemo } from './demo.js';
import { runServeMemory, SERVE_MEMORY_DEFAULTS } from './serve-memory.js';

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

await program.parseAsync(process.argv);
