// Child process of the state machine's SIGKILL test: applies a seeded kv log
// to a RocksDB store in random-sized groups, printing "ack <index>" after
// each group has been applied (written with its applied index). It resumes
// from the store's applied index, as a restarted node replays its log.
//
// Usage: node apply-child.js <dir> <seed> <length>

import { StateMachine, fsmStoreOver } from '../../src/fsm/index.js';
import { kvExecutor } from '../../src/kv/index.js';
import { openStore } from '../../src/store/index.js';
import { kvLog } from '../support/fsm-logs.js';

const [dir, seedArg, lengthArg] = process.argv.slice(2);
const seed = Number(seedArg);
const log = kvLog(seed, Number(lengthArg));
const store = await openStore(dir!);
const machine = await StateMachine.open(fsmStoreOver(store), kvExecutor);
let group = seed >>> 0;
for (let next = machine.appliedIndex; next < log.length; ) {
  group = (Math.imul(group, 1664525) + 1013904223) >>> 0;
  const n = 1 + (group % 9);
  await machine.applyEntries(log.slice(next, next + n));
  next = machine.appliedIndex;
  process.stdout.write(`ack ${next}\n`);
}
await store.close();
process.stdout.write('done\n');
