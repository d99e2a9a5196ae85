// Writes one suite's results as JSON under bench/results/, named by suite,
// host and date, and returns the path.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './machine.js';

/** bench/results in the source tree, whether run from src or from dist. */
export function resultsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`)
    ? path.resolve(here, '../../..')
    : path.resolve(here, '../..');
  return path.join(root, 'bench', 'results');
}

export function writeResults(suite: string, results: unknown): string {
  const dir = resultsDir();
  fs.mkdirSync(dir, { recursive: true });
  const machine = machineInfo();
  const day = machine.date.slice(0, 10);
  const file = path.join(dir, `${suite}-${machine.host}-${day}.json`);
  fs.writeFileSync(file, JSON.stringify({ suite, machine, results }, null, 2) + '\n');
  return file;
}
