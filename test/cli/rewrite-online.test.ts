// The online rewrite's follower (src/cli/rewrite-online.ts) against a
// scripted admin API: per-member progress bars redrawn in place on a
// terminal, plain lines otherwise (unreachable and stopped members shown), a
// failed member's error and exit 1, and --no-wait.
import { describe, expect, it } from 'vitest';
import { runOnlineRewrite, type AdminCall } from '../../src/cli/rewrite-online.js';

const running = (scanned: number) => ({ target: '77', phase: 'running', rate_mib_s: 1, progress: { scanned, rewritten: scanned, totalEstimate: 100, bytesPerSec: 2 * 1024 * 1024, etaSeconds: 65 } });
const done = { target: '77', phase: 'done', rate_mib_s: 1, progress: null, done: { rewritten: 100, scanned: 100 } };

/** An admin API whose status answers come from `script`, one per poll (the last repeats, 50 polls at most); records the calls. */
function scripted(script: Record<string, unknown>[]): { call: AdminCall; calls: string[] } {
  const calls: string[] = [];
  let poll = 0;
  const call: AdminCall = async (method, path) => {
    calls.push(`${method} ${path}`);
    if (poll > 50) throw new Error('the follower did not stop within 50 polls');
    if (method === 'POST') return { target: '77', nodes: { n1: { node: 'n1', ...running(0) }, n2: { node: 'n2', ...running(0) } } };
    const nodes = script[Math.min(poll++, script.length - 1)]!;
    return { nodes: Object.fromEntries(Object.entries(nodes).map(([n, r]) => [n, 'error' in (r as object) ? r : { node: n, sweeps: [r] }])) };
  };
  return { call, calls };
}

function sink(isTTY: boolean): { write: (t: string) => void; isTTY: boolean; text: () => string } {
  let text = '';
  return { write: (t) => void (text += t), isTTY, text: () => text };
}

const options = { target: '77', rate: 1, wait: true, json: false, intervalMs: 1 };

describe('encryption rewrite (online) progress', () => {
  it('draws one bar per member on a terminal, redrawn in place, until every member is done', async () => {
    const { call, calls } = scripted([{ n1: running(50), n2: running(10) }, { n1: done, n2: done }]);
    const out = sink(true);
    expect(await runOnlineRewrite(options, call, out)).toBe(0);
    expect(calls[0]).toBe('POST /encryption/rewrite?key_id=77&rate=1');
    expect(out.text()).toContain('n1       [##############..............]  50%  2.0 MiB/s  ETA 1:05  running');
    expect(out.text()).toContain('\x1b[2A');
    expect(out.text()).toMatch(/n2: done \(100 versions re-sealed\)\n$/);
  });

  it('prints plain lines without a terminal, an unreachable or stopped member included', async () => {
    const { call, calls } = scripted([{ n1: running(50), n2: { error: 'ErrTimeout: unreachable' } }, { n1: done, n2: { target: '77', phase: 'stopped', progress: null } }, { n1: done, n2: done }]);
    const out = sink(false);
    expect(await runOnlineRewrite({ ...options, rate: null }, call, out)).toBe(0);
    expect(calls[0]).toBe('POST /encryption/rewrite?key_id=77');
    expect(out.text()).not.toContain('\x1b');
    expect(out.text()).toContain('n1: running 50% 50/100 scanned, 50 re-sealed, 2.0 MiB/s, ETA 1:05\n');
    expect(out.text()).toContain('n2: ErrTimeout: unreachable\n');
    expect(out.text()).toContain('n2: stopped 0% 0/? scanned, 0 re-sealed');
    expect(out.text()).toContain('n2: done (100 versions re-sealed)\n');
  });

  it('exits 1 naming the member whose sweep failed', async () => {
    const { call } = scripted([{ n1: running(5), n2: { target: '77', phase: 'failed', progress: null, error: 'ErrRewriteNotSealing: storage sealing is not active' } }]);
    const out = sink(false);
    expect(await runOnlineRewrite(options, call, out)).toBe(1);
    expect(out.text()).toContain('n2: sweep failed: ErrRewriteNotSealing: storage sealing is not active\n');
  });

  it('returns after starting with --no-wait', async () => {
    const { call, calls } = scripted([]);
    const out = sink(false);
    expect(await runOnlineRewrite({ ...options, wait: false }, call, out)).toBe(0);
    expect(calls).toEqual(['POST /encryption/rewrite?key_id=77&rate=1']);
    expect(out.text()).toBe('n1: running 0% 0/100 scanned, 0 re-sealed, 2.0 MiB/s, ETA 1:05\nn2: running 0% 0/100 scanned, 0 re-sealed, 2.0 MiB/s, ETA 1:05\n');
  });
});

describe('encryption rewrite --cleartext (online)', () => {
  it('asks for the cleartext sweep', async () => {
    const calls: string[] = [];
    const call: AdminCall = async (method, path) => {
      calls.push(`${method} ${path}`);
      return { target: 'cleartext', nodes: {} };
    };
    expect(await runOnlineRewrite({ ...options, target: 'cleartext', wait: false }, call, sink(false))).toBe(0);
    expect(calls).toEqual(['POST /encryption/rewrite?cleartext=1&rate=1']);
  });
});
