// KEK benchmark: DEK unwrap latency (SPEC §4.1: KMS is called only at start
// and on key changes, and unwrap latency is a metric) — the aws-kms://
// provider through the real SDK against the KMS-compatible test server on
// 127.0.0.1, against the file:// provider as the baseline, in the same run.
// Loopback KMS is a floor: a real KMS adds the network round trip.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openKekProvider, timedUnwrap, type KekProvider, type WrapContext } from '../src/kek/index.js';
import { KmsTestServer } from '../test/support/kms-server.js';
import { writeResults } from './lib/results.js';

const CREDENTIALS = { accessKeyId: 'AKIDSEALKVBENCH', secretAccessKey: 'sealkv-bench-secret' };

interface Latency {
  provider: string;
  samples: number;
  coldMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
}

async function measure(name: string, kek: KekProvider, samples: number): Promise<Latency> {
  const context: WrapContext = { keyId: 0x12345678, purpose: 'storage' };
  const wrapped = await kek.wrap(crypto.randomBytes(32), context);
  const cold = await timedUnwrap(kek, wrapped, context);
  for (let i = 0; i < Math.min(50, samples); i++) await kek.unwrap(wrapped, context);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) times.push((await timedUnwrap(kek, wrapped, context)).seconds * 1000);
  times.sort((a, b) => a - b);
  const at = (q: number) => Number(times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(4));
  return { provider: name, samples, coldMs: Number((cold.seconds * 1000).toFixed(3)), p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99) };
}

export async function run(args: string[]): Promise<void> {
  const samples = args.includes('--quick') ? 200 : 2000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-bench-kek-'));
  // The bench process signs with dummy credentials the local server checks.
  process.env.AWS_ACCESS_KEY_ID = CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = CREDENTIALS.secretAccessKey;
  const server = await KmsTestServer.start({ credentials: CREDENTIALS });
  const kekFile = path.join(dir, 'kek.bin');
  fs.writeFileSync(kekFile, crypto.randomBytes(32), { mode: 0o600 });
  const file = openKekProvider({ kekFile });
  const kms = openKekProvider({ kekUri: server.uri(server.createKey().keyId) });
  try {
    const baseline = await measure('file://', file, samples);
    const local = await measure('aws-kms:// (loopback test server)', kms, samples);
    const rows = [baseline, local].map((r) => ({
      ...r,
      p50VsFile: Number((r.p50Ms / baseline.p50Ms).toFixed(1)),
      p99VsFile: Number((r.p99Ms / baseline.p99Ms).toFixed(1)),
    }));
    console.table(rows);
    console.log(`results: ${writeResults('kek', rows)}`);
  } finally {
    file.close();
    kms.close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
