// A committed log of kv requests as a cluster would produce it — stamped
// requests and batches (some with TTLs), HLC ceilings, re-committed
// duplicates — built from a seed, for state-machine tests and their child
// processes.

import type { KvRequest } from '../../src/kv/index.js';
import { encodeBatchPayload, encodeCeilingPayload, encodeRequestPayload, packHlc, type EntryToApply } from '../../src/fsm/index.js';

const T0 = 1_700_000_000_000;

export function kvLog(seed: number, length: number): EntryToApply[] {
  let s = seed;
  const r = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const key = (): Buffer => Buffer.from(`k${Math.floor(r() * 6)}`);
  const request = (): KvRequest => {
    const roll = r();
    if (roll < 0.3) return { op: 'set', key: key(), value: Buffer.from(`v${Math.floor(r() * 99)}`), ...(r() < 0.4 ? { expire: { inMs: 1 + Math.floor(r() * 3000) } } : {}) };
    if (roll < 0.45) return { op: 'incrby', key: key(), delta: BigInt(Math.floor(r() * 10) - 3) };
    if (roll < 0.55) return { op: 'append', key: key(), value: Buffer.from('z') };
    if (roll < 0.65) return { op: 'mset', entries: [[key(), Buffer.from('m')], [key(), Buffer.from('n')]] };
    if (roll < 0.75) return { op: 'expire', key: key(), expire: { inMs: Math.floor(r() * 2000) } };
    if (roll < 0.82) return { op: 'persist', key: key() };
    if (roll < 0.9) return { op: 'getdel', key: key() };
    return { op: 'del', keys: [key(), key()] };
  };
  const log: EntryToApply[] = [];
  let ms = T0;
  for (let index = 1; index <= length; index++) {
    ms += Math.floor(r() * 800);
    const roll = r();
    if (roll < 0.1) log.push({ index, proposalId: 0n, payload: encodeCeilingPayload(packHlc(ms + 3000)) });
    else if (roll < 0.2 && index > 1) {
      const earlier = log[Math.floor(r() * log.length)]!;
      log.push({ ...earlier, index });
    } else if (roll < 0.35) log.push({ index, proposalId: BigInt(index), payload: encodeBatchPayload([request(), request(), request()], packHlc(ms)) });
    else log.push({ index, proposalId: BigInt(index), payload: encodeRequestPayload(request(), packHlc(ms)) });
  }
  return log;
}
