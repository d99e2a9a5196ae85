// Child process of the SIGKILL test: appends entries with fsync in a loop,
// compacting now and then (so segments rotate and get deleted), and prints
// "ack <index>" once each save has returned. The parent kills it at a random
// moment and checks that every acknowledged entry survived. Before each
// save it prints "try <first> <last> <term>", after it "ack" (that save was
// fsynced). A suffix is overwritten only under a new term, as in Raft.
//
// Usage: node append-child.js <dir> <seed>

import { SegmentLog } from '../../../src/raft/log/index.js';
import { entryData } from './entry-data.js';

const [dir, seedArg] = process.argv.slice(2);
let seed = Number(seedArg ?? 1) >>> 0;
function rand(n: number): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed % n;
}

const log = await SegmentLog.open({ dir: dir!, segmentBytes: 32 * 1024, cacheBytes: 16 * 1024, bootstrap: { voters: [1], learners: [] } });
let term = log.initialState().hardState.term + 1;
for (;;) {
  const n = 1 + rand(8);
  let first = log.lastIndex() + 1;
  if (rand(10) === 0) {
    // Overwrite a short suffix, as a new leader would.
    term++;
    first = Math.max(log.firstIndex(), log.lastIndex() - rand(3));
  }
  const entries = [];
  for (let i = 0; i < n; i++) entries.push({ index: first + i, term, type: 'normal' as const, data: entryData(first + i, term) });
  process.stdout.write(`try ${first} ${first + n - 1} ${term}\n`);
  await log.save({ entries, hardState: { term, vote: 1, commit: first - 1 } }, true);
  process.stdout.write('ack\n');
  if (rand(15) === 0 && log.lastIndex() > 50) await log.compact(log.lastIndex() - 40, { voters: [1], learners: [] });
}
