// The report of `bench all`: each suite's results reduced to ratio figures
// (the known suites' shapes, and any suite's `ratios`), and the files it
// writes — JSON, a self-contained HTML page and one SVG chart per suite, each
// naming the machine.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { figuresOf } from '../../bench/lib/figures.js';
import { machineInfo } from '../../bench/lib/machine.js';
import { machineLine, writeReport, type SuiteRun } from '../../bench/lib/report.js';

const e2eResults = {
  rows: [
    { workload: 'set-1k', target: 'cleartext', opsPerSec: 1000, p99ms: 10, cpuUsPerWrite: 200, throughputVsCleartext: 1, p99VsCleartext: 1, cpuPerWriteVsCleartext: 1 },
    { workload: 'set-1k', target: 'phase2', opsPerSec: 900, p99ms: 11, cpuUsPerWrite: 230, throughputVsCleartext: 0.9, p99VsCleartext: 1.1, cpuPerWriteVsCleartext: 1.15 },
    { workload: 'set-1k', target: 'redis-aof-always', reference: true, opsPerSec: 3000, p99ms: 3, cpuUsPerWrite: null, throughputVsCleartext: 3, p99VsCleartext: 0.3, cpuPerWriteVsCleartext: null },
  ],
};

describe('bench report figures', () => {
  it('e2e rows become throughput, p99 and CPU ratios to cleartext; a different system is marked as reference', () => {
    const figures = figuresOf('e2e', e2eResults);
    expect(figures.map((f) => [f.group, f.name, f.ratio, f.reference === true])).toEqual([
      ['set-1k', 'phase2 throughput', 0.9, false],
      ['set-1k', 'phase2 p99', 1.1, false],
      ['set-1k', 'phase2 CPU per write', 1.15, false],
      ['set-1k', 'redis-aof-always throughput', 3, true],
      ['set-1k', 'redis-aof-always p99', 0.3, true],
    ]);
    expect(figures.every((f) => f.baseline === 'sealkv cleartext cluster')).toBe(true);
  });

  it('a suite it does not know gives the numbers under its ratios, named with their baseline', () => {
    const figures = figuresOf('rewrite', { ratios: { twoWorkersVsOneWorker: 1.7, note: 'text is ignored' } });
    expect(figures).toEqual([{ name: 'twoWorkersVsOneWorker', baseline: 'one worker', ratio: 1.7 }]);
    const rows = figuresOf('rewrite', { ratios: [{ op: 'SET', pipelinedOverUnpipelined: 6.2, count: 3 }] });
    expect(rows).toEqual([{ group: 'SET', name: 'SET pipelinedOverUnpipelined', baseline: 'unpipelined', ratio: 6.2 }]);
    expect(figuresOf('rewrite', [1, 2, 3])).toEqual([]);
  });
});

describe('writeReport', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-report-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes the run as JSON, an HTML page with the charts inline, and one SVG per suite with figures', () => {
    const machine = machineInfo();
    const suite = (name: string, results: unknown, extra: Partial<SuiteRun> = {}): SuiteRun => ({
      name, args: [], status: 'ok', seconds: 1, output: '', files: [], results: [results], figures: figuresOf(name, results), ...extra,
    });
    const run = {
      machine,
      quick: true,
      startedAt: machine.date,
      seconds: 3,
      loadAverage: { before: 0.5, after: 0.5 },
      suites: [
        suite('e2e', e2eResults, { output: 'e2e: redis-server is not installed on this machine: the Redis reference run was skipped\n' }),
        suite('redis-compat', undefined, { status: 'no results', results: [], figures: [], output: 'redis-compat: redis-benchmark not found; skipped\n' }),
      ],
    };
    const out = writeReport(run, dir);
    expect(JSON.parse(fs.readFileSync(out.json, 'utf8')).suites.map((s: SuiteRun) => s.name)).toEqual(['e2e', 'redis-compat']);
    expect(out.svgs.map((f) => path.basename(f))).toEqual([`${machine.host}-${machine.date.slice(0, 10)}-e2e.svg`]);
    const svg = fs.readFileSync(out.svgs[0]!, 'utf8');
    expect(svg.startsWith('<svg ')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    const page = fs.readFileSync(out.html, 'utf8');
    const line = machineLine(machine).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    expect(page).toContain(line);
    expect(svg).toContain(line);
    expect(page).toContain(svg.trim().split('\n')[0]);
    expect(page).toContain('the Redis reference run was skipped');
    expect(page).toContain('redis-benchmark not found; skipped');
    expect(page).toContain('<td class="num">0.900</td>');
  });
});
