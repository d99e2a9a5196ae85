// Writes one suite's results as JSON under bench/results/, named by suite,
// host and date, and returns the path. Every write is also kept in memory
// (`takeWritten`), so that `bench all` can gather a run's results into one
// report without knowing each suite's file names.

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

export interface WrittenResults {
  suite: string;
  file: string;
  results: unknown;
}

let written: WrittenResults[] = [];

/** The results written since the last call (in order), and forgets them. */
export function takeWritten(): WrittenResults[] {
  const out = written;
  written = [];
  return out;
}

export function writeResults(suite: string, results: unknown): string {
  const dir = resultsDir();
  fs.mkdirSync(dir, { recursive: true });
  const machine = machineInfo();
  const day = machine.date.slice(0, 10);
  const file = path.join(dir, `${suite}-${machine.host}-${day}.json`);
  fs.writeFileSync(file, JSON.stringify({ suite, machine, results }, null, 2) + '\n');
  written.push({ suite, file, results });
  return file;
}
