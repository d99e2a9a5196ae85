// CPU time of other processes, from Linux /proc/<pid>/stat (utime + stime),
// for figures such as "node CPU per write". Elsewhere it reports null.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds the process has used so far; null when /proc cannot tell. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces: count fields after its ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return null;
  }
}

/** Summed CPU seconds of several processes; null when any cannot be read. */
export function processesCpuSeconds(pids: readonly number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    const s = processCpuSeconds(pid);
    if (s === null) return null;
    total += s;
  }
  return total;
}
