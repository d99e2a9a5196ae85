// Runs benchmark suites by name. `all` (or no name) runs every suite
// registered in bench/suites.ts, in order, and writes the run's report
// (bench/lib/report.ts): one JSON with the machine and every suite's results
// and figures, an HTML page with the charts, and the charts as SVG files.
// A suite that fails is recorded as failed and the others still run; the
// exit code is then 1. A named suite alone runs as before (its own JSON).
//
//   sealkv bench [all] [--quick] [--skip a,b]      npm run bench [-- ...]
//   sealkv bench <suite> [suite args]

import os from 'node:os';
import { figuresOf } from './lib/figures.js';
import { machineInfo } from './lib/machine.js';
import { writeReport, machineLine, type SuiteRun } from './lib/report.js';
import { takeWritten } from './lib/results.js';
import { ALL_ARGS, QUICK_ARGS, SUITES } from './suites.js';

const OUTPUT_KEPT = 20_000;

/** Runs `body` while keeping a copy of what it prints to stdout (still printed). */
async function capturing(body: () => Promise<void>): Promise<string> {
  let kept = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    kept += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    if (kept.length > 2 * OUTPUT_KEPT) kept = kept.slice(-OUTPUT_KEPT);
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await body();
  } finally {
    process.stdout.write = write;
  }
  return kept.slice(-OUTPUT_KEPT);
}

async function runAll(flags: string[]): Promise<number> {
  const quick = flags.includes('--quick');
  const skipAt = flags.indexOf('--skip');
  const skip = new Set(skipAt >= 0 ? (flags[skipAt + 1] ?? '').split(',') : []);
  const names = Object.keys(SUITES).filter((n) => !skip.has(n));
  const machine = machineInfo();
  console.log(`bench all${quick ? ' --quick' : ''}: ${names.join(', ')}\nmachine: ${machineLine(machine)}`);
  const started = performance.now();
  const loadBefore = os.loadavg()[0]!;
  const suites: SuiteRun[] = [];
  takeWritten();
  for (const name of names) {
    const args = [...(quick ? ['--quick', ...(QUICK_ARGS[name] ?? [])] : []), ...(ALL_ARGS[name] ?? [])];
    console.log(`\n=== ${name} ${args.join(' ')}`);
    const t0 = performance.now();
    let error: string | undefined;
    const output = await capturing(async () => {
      try {
        await (await SUITES[name]!()).run(args);
      } catch (err) {
        error = err instanceof Error ? (err.stack ?? err.message) : String(err);
        console.log(`${name} failed: ${error}`);
      }
    });
    const written = takeWritten();
    suites.push({
      name,
      args,
      status: error !== undefined ? 'failed' : written.length === 0 ? 'no results' : 'ok',
      seconds: (performance.now() - t0) / 1000,
      ...(error === undefined ? {} : { error: error.split('\n')[0]! }),
      output,
      files: written.map((w) => w.file),
      results: written.map((w) => w.results),
      figures: written.flatMap((w) => figuresOf(w.suite, w.results)),
    });
  }
  const report = writeReport({
    machine,
    quick,
    startedAt: machine.date,
    seconds: (performance.now() - started) / 1000,
    loadAverage: { before: loadBefore, after: os.loadavg()[0]! },
    suites,
  });
  console.log(`\n${suites.map((s) => `${s.name}: ${s.status} (${s.seconds.toFixed(0)} s)`).join('\n')}`);
  console.log(`report: ${report.html}\nresults: ${report.json}\ncharts: ${report.svgs.join(' ')}`);
  return suites.some((s) => s.status === 'failed') ? 1 : 0;
}

/** Runs what argv names; returns the exit code. */
export async function runBench(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'all' || first.startsWith('--')) return runAll(first === undefined || first === 'all' ? rest : argv);
  const load = SUITES[first];
  if (load === undefined) {
    console.error(`unknown bench suite "${first}"; known: ${Object.keys(SUITES).join(', ')}, all`);
    return 2;
  }
  await (await load()).run(rest);
  return 0;
}
