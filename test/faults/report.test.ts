import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPORT_ENV, formatFaultReport, readFaultRecords, recordFault } from './support/report.js';

describe('fault report', () => {
  const saved = process.env[REPORT_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[REPORT_ENV];
    else process.env[REPORT_ENV] = saved;
  });

  it('appends records to the file named by the environment and totals them per area', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-report-test-'));
    try {
      const file = path.join(dir, 'r.jsonl');
      process.env[REPORT_ENV] = file;
      recordFault({ area: 'disk', scenario: 'a', faults: 2, operations: 10, anomalies: 0 });
      recordFault({ area: 'disk', scenario: 'b', faults: 3, operations: 5, anomalies: 1 });
      recordFault({ area: 'fuzz', scenario: 'c', faults: 7, operations: 7, anomalies: 0 });
      const records = readFaultRecords(file);
      expect(records.map((r) => r.scenario)).toEqual(['a', 'b', 'c']);
      const report = formatFaultReport(records);
      expect(report).toMatch(/disk\s+2\s+5\s+15\s+1\s+\(area total\)/);
      expect(report).toMatch(/all\s+3\s+12\s+22\s+1\s+\(campaign total\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses counts that are not non-negative integers', () => {
    expect(() => recordFault({ area: 'x', scenario: 'y', faults: -1, operations: 0, anomalies: 0 })).toThrow(RangeError);
    expect(() => recordFault({ area: 'x', scenario: 'y', faults: 0, operations: 1.5, anomalies: 0 })).toThrow(RangeError);
  });
});
