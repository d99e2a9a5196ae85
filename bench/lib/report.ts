// The report of one `bench all` run: `bench/results/<host>-<date>.json` (the
// machine, every suite's results and figures), a self-contained HTML page
// with inline SVG charts, and each chart as its own SVG file for the README.
// Every chart and table names the machine (CPU model and flags, Node and
// OpenSSL) and shows figures as ratios to a baseline of the same run.

import fs from 'node:fs';
import path from 'node:path';
import type { Figure } from './figures.js';
import type { MachineInfo } from './machine.js';
import { resultsDir } from './results.js';
import { ratioChartSvg } from './svg.js';

export interface SuiteRun {
  name: string;
  args: string[];
  status: 'ok' | 'failed' | 'no results';
  seconds: number;
  error?: string;
  /** What the suite printed (trimmed), e.g. why it skipped. */
  output: string;
  files: string[];
  results: unknown[];
  figures: Figure[];
}

export interface BenchRun {
  machine: MachineInfo;
  quick: boolean;
  startedAt: string;
  seconds: number;
  /** 1-minute load average before and after: figures on a busy machine are noisier. */
  loadAverage: { before: number; after: number };
  suites: SuiteRun[];
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpuModel} (${m.cores} cores; ${m.cpuFlags.join(' ')}), Node ${m.node}, OpenSSL ${m.openssl}${m.opensslIa32cap === null ? '' : `, OPENSSL_ia32cap=${m.opensslIa32cap}`}`;
}

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Marks drawn on a suite's chart (the targets the project set itself). */
const MARKS: Record<string, { at: number; label: string }[]> = {
  e2e: [
    { at: 0.9, label: 'throughput ≥ 0.9' },
    { at: 1.1, label: 'p99 ≤ 1.1' },
  ],
};

function chartOf(suite: SuiteRun, machine: MachineInfo): string | undefined {
  if (suite.figures.length === 0) return undefined;
  const bars = suite.figures.map((f) => ({ group: f.group ?? suite.name, label: `${f.name} / ${f.baseline}`, ratio: f.ratio, ...(f.reference === true ? { reference: true } : {}) }));
  return ratioChartSvg(`sealkv bench: ${suite.name}`, machineLine(machine), bars, MARKS[suite.name] ?? []);
}

function figureTable(figures: readonly Figure[]): string {
  const rows = figures.map(
    (f) =>
      `<tr${f.reference === true ? ' class="ref"' : ''}><td>${escape(f.group ?? '')}</td><td>${escape(f.name)}</td><td>${escape(f.value ?? '')}</td><td class="num">${f.ratio.toFixed(3)}</td><td>${escape(f.baseline)}</td></tr>`,
  );
  return `<table><thead><tr><th>group</th><th>figure</th><th>value</th><th>ratio</th><th>baseline (same run)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** What a suite said it left out (e.g. a missing tool), shown in its section; the last line when it wrote nothing. */
function notesOf(suite: SuiteRun): string[] {
  const notes = suite.output.split('\n').filter((line) => /skipped|not installed/i.test(line));
  if (notes.length === 0 && suite.status === 'no results') notes.push(suite.output.trim().split('\n').at(-1) ?? '');
  return notes;
}

function html(run: BenchRun, charts: Map<string, string>): string {
  const m = run.machine;
  const busy = run.loadAverage.before > m.cores * 0.75 || run.loadAverage.after > m.cores * 0.75;
  const sections = run.suites.map((s) => {
    const chart = charts.get(s.name);
    return `<section><h2>${escape(s.name)} <small>${s.status}, ${s.seconds.toFixed(0)} s${s.args.length > 0 ? `, args ${escape(s.args.join(' '))}` : ''}</small></h2>
${s.error === undefined ? '' : `<p class="err">${escape(s.error)}</p>`}
${notesOf(s).map((note) => `<p class="warn">${escape(note)}</p>`).join('\n')}
${chart ?? (s.status === 'ok' ? '<p>No ratio figures for this suite: see its JSON.</p>' : '')}
${s.figures.length > 0 ? figureTable(s.figures) : ''}
<p class="files">${s.files.map((f) => escape(path.basename(f))).join(', ')}</p>
<details><summary>output</summary><pre>${escape(s.output)}</pre></details></section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sealkv bench ${escape(m.host)} ${escape(m.date.slice(0, 10))}</title>
<style>
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.ref td{color:#777;font-style:italic}
.err{color:#b00}.warn{background:#fff3cd;padding:.5em}.files{color:#666;font-size:12px}pre{font-size:11px;overflow:auto;max-height:30em}
h2 small{font-weight:normal;color:#666;font-size:60%}
</style></head><body>
<h1>sealkv benchmark report</h1>
<p><b>Machine:</b> ${escape(machineLine(m))}; ${m.memoryGiB} GiB; host ${escape(m.host)}.<br>
<b>Run:</b> ${escape(run.startedAt)}, ${run.quick ? 'quick (short rounds: a smoke run, not figures to quote)' : 'full'}, ${run.seconds.toFixed(0)} s; load average (1 min) ${run.loadAverage.before.toFixed(2)} before, ${run.loadAverage.after.toFixed(2)} after.</p>
${busy ? '<p class="warn">The machine was busy with other work during this run: absolute figures are low and noisy; the ratios (each taken against a baseline measured alternately in the same run) are what to read.</p>' : ''}
<p>Every figure is a ratio to the baseline named next to it, measured in this run on this machine. Grey rows are a different system shown for orientation only.</p>
${sections.join('\n')}
</body></html>
`;
}

/** Writes the run's JSON, HTML and SVGs (into bench/results unless `dir` is given); returns their paths. */
export function writeReport(run: BenchRun, dir = resultsDir()): { json: string; html: string; svgs: string[] } {
  fs.mkdirSync(dir, { recursive: true });
  const stem = `${run.machine.host}-${run.machine.date.slice(0, 10)}`;
  const charts = new Map<string, string>();
  const svgs: string[] = [];
  for (const suite of run.suites) {
    const chart = chartOf(suite, run.machine);
    if (chart === undefined) continue;
    charts.set(suite.name, chart);
    const file = path.join(dir, `${stem}-${suite.name}.svg`);
    fs.writeFileSync(file, chart);
    svgs.push(file);
  }
  const json = path.join(dir, `${stem}.json`);
  fs.writeFileSync(json, JSON.stringify(run, null, 2) + '\n');
  const page = path.join(dir, `${stem}.html`);
  fs.writeFileSync(page, html(run, charts));
  return { json, html: page, svgs };
}
