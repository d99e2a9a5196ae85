// What machine a benchmark ran on: every result file carries this, so that
// figures from different hosts are never compared without knowing it.

import os from 'node:os';
import fs from 'node:fs';

export interface MachineInfo {
  host: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  cpuFlags: string[];
  node: string;
  openssl: string;
  opensslIa32cap: string | null;
  date: string;
}

const INTERESTING_FLAGS = ['aes', 'pclmulqdq', 'avx', 'avx2', 'avx512f', 'vaes', 'vpclmulqdq', 'sse4_1', 'ssse3', 'sha_ni'];

export function machineInfo(): MachineInfo {
  let flags: string[] = [];
  try {
    const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const line = cpuinfo.split('\n').find((l) => l.startsWith('flags'));
    const all = new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
    flags = INTERESTING_FLAGS.filter((f) => all.has(f));
  } catch {
    // Not Linux: flags stay unknown rather than guessed.
  }
  return {
    host: os.hostname(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    cpuFlags: flags,
    node: process.versions.node,
    openssl: process.versions.openssl,
    opensslIa32cap: process.env.OPENSSL_ia32cap ?? null,
    date: new Date().toISOString(),
  };
}
