#!/usr/bin/env node
// The `sealkv` command line.

import { Command } from 'commander';
import { runDemo } from './demo.js';

const program = new Command('sealkv').description('Encrypted-at-rest, Raft-replicated MVCC key-value store');

program
  .command('demo')
  .description('seal and open a few values with a throwaway key, and show tamper detection')
  .action(() => runDemo());

await program.parseAsync(process.argv);
