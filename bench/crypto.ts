// Crypto benchmark: node:crypto (`aesni` backend) seal and open of one
// storage envelope per call, at the value sizes of SPEC §14.

import crypto from 'node:crypto';
import { Bench } from 'tinybench';
import { AesniBackend, Keystore, NonceFactory, Sealer, type AadContext } from '../src/crypto/index.js';
import { writeResults } from './lib/results.js';

const SIZES = [64, 1024, 16 * 1024, 1024 * 1024];

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const keystore = new Keystore();
  keystore.install(1, 'storage', crypto.randomBytes(32));
  keystore.setActive('storage', 1);
  const sealer = new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId: 1, localEpoch: 1 }) });
  const aad: AadContext = { kind: 'storage', valueHeader: new Uint8Array(9), storeKey: Buffer.from('bench:key:0000000000') };

  const bench = new Bench({ name: 'crypto', time: quick ? 100 : 500, warmupTime: quick ? 20 : 100 });
  for (const size of SIZES) {
    const plaintext = crypto.randomBytes(size);
    const envelope = sealer.sealOne('storage', plaintext, 0, aad);
    bench.add(`aesni seal ${size} B`, () => void sealer.sealOne('storage', plaintext, 0, aad));
    bench.add(`aesni open ${size} B`, () => void sealer.openOne(envelope, aad));
  }
  await bench.run();

  const rows = bench.tasks.map((task) => {
    const size = Number(/ (\d+) B$/.exec(task.name)![1]);
    const r = task.result;
    const opsPerSec = r.state === 'completed' ? 1000 / r.period : 0;
    return { task: task.name, size, opsPerSec: Math.round(opsPerSec), MBps: Number(((opsPerSec * size) / 1e6).toFixed(1)) };
  });
  console.table(rows);
  console.log(`results: ${writeResults('crypto', rows)}`);
}
