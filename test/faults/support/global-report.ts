// vitest global setup: a fresh fault-report file per run, printed at the end
// (see report.ts). Runs in the main vitest process; test workers inherit
// the environment variable set here.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPORT_ENV, formatFaultReport, readFaultRecords } from './report.js';

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-faults-'));
  const file = path.join(dir, 'report.jsonl');
  process.env[REPORT_ENV] = file;
  return () => {
    const report = formatFaultReport(readFaultRecords(file));
    if (report !== '') process.stdout.write(`${report}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
