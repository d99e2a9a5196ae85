// The offline rewrite's progress output (src/cli/rewrite.ts): on a terminal
// one bar redrawn in place with percentage, rate and ETA; elsewhere plain
// lines without escape codes, at most one a second, and a last line.

import { describe, expect, it } from 'vitest';
import { ProgressView, type ProgressStream } from '../../src/cli/rewrite.js';
import type { SweepProgress } from '../../src/rewrite/index.js';

function stream(isTTY: boolean): ProgressStream & { text: string } {
  const out = { isTTY, text: '', write: (t: string) => (out.text += t) };
  return out;
}

const at = (scanned: number, done = false): SweepProgress => ({
  target: 'key_id 7',
  scanned,
  rewritten: scanned / 2,
  skipped: 0,
  rewrittenBytes: scanned * 1024,
  totalEstimate: 1000,
  elapsedMs: scanned,
  bytesPerSec: 3 * 1024 * 1024,
  etaSeconds: done ? 0 : 125,
  done,
  activeKeyId: 9,
});

describe('rewrite progress', () => {
  it('redraws one bar with percentage, rate and ETA on a terminal', () => {
    const out = stream(true);
    const view = new ProgressView(out);
    view.update(at(250));
    view.update(at(500));
    view.finish(at(1000, true));
    const frames = out.text.split('\r\x1b[2K').filter((f) => f !== '');
    expect(frames).toHaveLength(3);
    expect(frames[0]).toBe('rewrite key_id 7 [########......................] 25.0% 3.0 MiB/s ETA 2m05s re-sealed 125');
    expect(frames[2]).toBe('rewrite key_id 7 [##############################] 100.0% 3.0 MiB/s ETA 0s re-sealed 500\n');
  });

  it('writes plain lines, no escape codes, at most one a second, off a terminal', () => {
    const out = stream(false);
    let now = 0;
    const view = new ProgressView(out, () => now);
    view.update(at(100));
    now = 500;
    view.update(at(200));
    now = 1200;
    view.update(at(300));
    view.finish(at(1000, true));
    expect(out.text).not.toContain('\x1b');
    expect(out.text).not.toContain('\r');
    expect(out.text.split('\n').filter((l) => l !== '')).toEqual([
      'rewrite key_id 7: scanned 100/1000, re-sealed 50 (0.1 MiB), skipped 0, 3.0 MiB/s, eta 2m05s',
      'rewrite key_id 7: scanned 300/1000, re-sealed 150 (0.3 MiB), skipped 0, 3.0 MiB/s, eta 2m05s',
      'rewrite key_id 7: scanned 1000/1000, re-sealed 500 (1.0 MiB), skipped 0, 3.0 MiB/s, eta 0s, done',
    ]);
  });
});
