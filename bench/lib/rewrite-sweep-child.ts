// One offline sweep in a fresh process, for bench/rewrite.ts: opens the
// RocksDB store at <dir> with DEKs A and B (from SEALKV_BENCH_DEKS_HEX,
// "A:B"), makes <to> the active storage DEK, seals on a CryptoPool of
// <workers> threads (0 = in-thread), sweeps <from>, and prints one JSON line:
// MiB/s of value bytes, seconds, the process's RSS high-water (sampled
// every 25 ms: every thread, RocksDB's memory included) and its RSS at start.
//
//   node dist/bench/lib/rewrite-sweep-child.js <dir> <from> <to> <workers> <backend> <epoch>

import os from 'node:os';
import { CryptoPool, Keystore, NonceFactory, Sealer, createBackend, type BackendName } from '../../src/crypto/index.js';
import { OFFLINE_STORE_OPTIONS, runSweep } from '../../src/rewrite/index.js';
import { openStore } from '../../src/store/index.js';

const MIB = 1024 * 1024;

async function main(): Promise<void> {
  const [dir, from, to, workers, backend, epoch] = process.argv.slice(2) as [string, string, string, string, BackendName, string];
  const rssAtStart = process.memoryUsage.rss();
  const [a, b] = process.env.SEALKV_BENCH_DEKS_HEX!.split(':') as [string, string];
  const [idA, idB] = [Number(from) < Number(to) ? from : to, Number(from) < Number(to) ? to : from].map(Number) as [number, number];
  const keystore = new Keystore();
  keystore.install(idA, 'storage', Buffer.from(a, 'hex'));
  keystore.install(idB, 'storage', Buffer.from(b, 'hex'));
  keystore.setActive('storage', Number(to));
  const sealer = new Sealer({ keystore, backend: createBackend(backend), nonceFactory: () => new NonceFactory({ nodeId: 1, localEpoch: Number(epoch) }) });
  const pool = Number(workers) === 0 ? undefined : new CryptoPool({ keys: keystore, threads: Number(workers), backend });
  // RocksDB opened as the offline CLI opens it.
  const store = await openStore(dir, { sealer, active: true, ...(pool === undefined ? {} : { pool }) }, OFFLINE_STORE_OPTIONS);
  // What the RSS is made of at its highest sample: JS heap, ArrayBuffers (values, packed chunks), the rest (RocksDB, code, workers' isolates).
  let peak = process.memoryUsage();
  const sampler = setInterval(() => {
    const now = process.memoryUsage();
    if (now.rss > peak.rss) peak = now;
  }, 25);
  try {
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const result = await runSweep({ store, target: { keyId: Number(from) } });
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    clearInterval(sampler);
    if (!result.done) throw new Error('sweep did not finish');
    peak = process.memoryUsage().rss > peak.rss ? process.memoryUsage() : peak;
    // Sampled, not the kernel's maxRSS: a child starts with its parent's
    // maxRSS (fork), which would report the bench process's memory.
    const maxRssMiB = peak.rss / MIB;
    process.stdout.write(
      `${JSON.stringify({
        mibPerSec: result.bytesPerSec / MIB,
        seconds: result.elapsedMs / 1000,
        versions: result.rewritten,
        maxRssMiB,
        rssAtStartMiB: rssAtStart / MIB,
        // CPU of every thread per value, and the main thread's busy share of the sweep (event-loop utilisation).
        cpuUsPerValue: (cpu.user + cpu.system) / result.rewritten,
        mainBusyUsPerValue: (elu.active * 1000) / result.rewritten,
        guardMs: (globalThis as any).__guardMs, writeMs: (globalThis as any).__writeMs,
        loadAverage: os.loadavg()[0],
        peak: { rssMiB: peak.rss / MIB, heapUsedMiB: peak.heapUsed / MIB, heapTotalMiB: peak.heapTotal / MIB, arrayBuffersMiB: peak.arrayBuffers / MIB },
      })}\n`,
    );
  } finally {
    clearInterval(sampler);
    await store.close();
    await pool?.close();
  }
}

await main();
