// Arbitrary bytes on live connections: the server never crashes, answers or
// closes each connection, and keeps serving everyone else.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordFault } from '../faults/support/report.js';
import { startServer, type Harness } from './helpers.js';

/** SEALKV_FUZZ_SCALE=N multiplies the runs for a longer soak (default 1, kept small for CI; 20 under SEALKV_FAULT_SOAK=1). */
const FUZZ_SCALE = Math.max(1, Number(process.env.SEALKV_FUZZ_SCALE ?? (process.env.SEALKV_FAULT_SOAK === '1' ? 20 : 1)) || 1);

let h: Harness;
beforeAll(async () => {
  h = await startServer({ limits: { maxBulkBytes: 4096, maxArrayLength: 64, maxInlineBytes: 1024, maxRequestBytes: 16_384 } });
});
afterAll(async () => h.stop());

describe('RESP server fuzzing', () => {
  it('survives random and half-valid input on live connections', async () => {
    const healthy = await h.client();
    const fragment = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.constantFrom('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n', '*3\r\n$3\r\nSET\r\n', '$5\r\n', 'PING\r\n', 'SET k "v\r\n', '*-1\r\n', '\r\n', 'INCR k\r\n').map((s) => Buffer.from(s)),
    );
    let inputs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fragment, { minLength: 1, maxLength: 20 }), async (fragments) => {
        inputs++;
        const raw = await h.raw();
        for (const f of fragments) raw.send(f);
        raw.send('\r\nPING\r\n');
        // The connection answers, closes after a protocol error, or still waits
        // for the rest of a bulk the random bytes announced; all are fine.
        const text = await raw.until((t) => t.includes('PONG') || t.includes('Protocol error'), 200);
        if (text.includes('Protocol error')) expect(text).toMatch(/-ERR Protocol error: [^\r\n]+\r\n$/);
        raw.close();
        expect(await healthy.ping()).toBe('PONG');
        expect(await healthy.set('fuzz-probe', 'ok')).toBe('OK');
      }),
      { numRuns: 60 * FUZZ_SCALE },
    );
    recordFault({ area: 'fuzz', scenario: 'RESP server (memory engine): random and half-valid input', faults: inputs, operations: inputs * 3, anomalies: 0 });
  });
});
