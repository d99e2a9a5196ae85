// The fault campaign's report (issue "fault and bad-input campaign"): every
// fault test records what it ran — scenario, faults injected, operations
// checked, anomalies found — and the suite prints one table at the end
// (test/faults/support/global-report.ts, a vitest global setup).
//
// Test files run in forked workers, so records go to a JSON-lines file
// named by SEALKV_FAULT_REPORT, which the global setup creates fresh for
// each run and reads back in its teardown. A test run without the global
// setup (a single file through another config) records nowhere.
//
// An anomaly is anything the campaign exists to rule out: a lost
// acknowledged write, a non-linearizable history, tampered data served,
// a crash or hang on bad input. A test that finds one also fails; the
// count here is for the report.

import fs from 'node:fs';

export interface FaultRecord {
  /** Group in the report: 'cluster', 'disk', 'fuzz', ... */
  readonly area: string;
  /** One line naming what ran, e.g. 'leader isolated from the majority'. */
  readonly scenario: string;
  /** Faults injected (kills, stops, partitions, flipped bits, bad frames...). */
  readonly faults: number;
  /** Client operations (or decoded inputs) checked afterwards. */
  readonly operations: number;
  /** Anomalies found; must be 0. */
  readonly anomalies: number;
}

export const REPORT_ENV = 'SEALKV_FAULT_REPORT';

export function recordFault(record: FaultRecord): void {
  for (const [name, n] of Object.entries({ faults: record.faults, operations: record.operations, anomalies: record.anomalies })) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`fault record ${name} must be a non-negative integer, got ${n}`);
  }
  const file = process.env[REPORT_ENV];
  if (file === undefined || file === '') return;
  fs.appendFileSync(file, `${JSON.stringify({ ...record, at: new Date().toISOString() })}\n`);
}

/** The records in a report file, in the order they were written. */
export function readFaultRecords(file: string): FaultRecord[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as FaultRecord);
}

/** The printed report: one line per scenario, totals per area and overall. */
export function formatFaultReport(records: readonly FaultRecord[]): string {
  if (records.length === 0) return '';
  const lines = ['', 'fault campaign report', '  area      scenarios  faults  operations  anomalies  scenario'];
  const byArea = new Map<string, FaultRecord[]>();
  for (const r of records) byArea.set(r.area, [...(byArea.get(r.area) ?? []), r]);
  const row = (area: string, scenarios: number, faults: number, ops: number, anomalies: number, what: string): string =>
    `  ${area.padEnd(9)} ${String(scenarios).padStart(9)} ${String(faults).padStart(7)} ${String(ops).padStart(11)} ${String(anomalies).padStart(10)}  ${what}`;
  const sum = (rs: readonly FaultRecord[], k: 'faults' | 'operations' | 'anomalies'): number => rs.reduce((a, r) => a + r[k], 0);
  for (const [area, rs] of byArea) {
    for (const r of rs) lines.push(row(area, 1, r.faults, r.operations, r.anomalies, r.scenario));
    lines.push(row(area, rs.length, sum(rs, 'faults'), sum(rs, 'operations'), sum(rs, 'anomalies'), '(area total)'));
  }
  lines.push(row('all', records.length, sum(records, 'faults'), sum(records, 'operations'), sum(records, 'anomalies'), '(campaign total)'));
  return lines.join('\n');
}
