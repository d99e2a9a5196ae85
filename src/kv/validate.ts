// Shape check for requests decoded from the Raft log (msgpack gives back
// `unknown`). The server builds requests itself, so a request that fails
// here was corrupted or written by an incompatible build: ErrBadRequest.

import { sealError } from '../errors/index.js';
import type { KvRequest } from './types.js';

const isBuf = (v: unknown): v is Buffer => Buffer.isBuffer(v);
const isBufs = (v: unknown): v is Buffer[] => Array.isArray(v) && v.every(isBuf);
const isExpiry = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && (Number.isSafeInteger((v as { inMs?: unknown }).inMs) || Number.isSafeInteger((v as { atMs?: unknown }).atMs));

/** Returns `value` typed as a request, or throws ErrBadRequest. */
export function validateRequest(value: unknown): KvRequest {
  const r = value as Record<string, unknown>;
  const ok = ((): boolean => {
    if (typeof r !== 'object' || r === null) return false;
    switch (r.op) {
      case 'get':
      case 'getdel':
      case 'strlen':
      case 'type':
      case 'persist':
        return isBuf(r.key);
      case 'set':
        return (
          isBuf(r.key) &&
          isBuf(r.value) &&
          (r.expire === undefined || isExpiry(r.expire)) &&
          (r.condition === undefined || r.condition === 'nx' || r.condition === 'xx')
        );
      case 'del':
      case 'exists':
      case 'mget':
        return isBufs(r.keys);
      case 'mset':
        return Array.isArray(r.entries) && r.entries.every((e) => Array.isArray(e) && e.length === 2 && isBuf(e[0]) && isBuf(e[1]));
      case 'incrby':
        return isBuf(r.key) && typeof r.delta === 'bigint';
      case 'append':
        return isBuf(r.key) && isBuf(r.value);
      case 'expire':
        return isBuf(r.key) && isExpiry(r.expire);
      case 'ttl':
        return isBuf(r.key) && (r.unit === 's' || r.unit === 'ms');
      case 'scan':
        return (r.after === null || isBuf(r.after)) && (r.match === undefined || isBuf(r.match)) && Number.isSafeInteger(r.count);
      case 'dbsize':
        return true;
      default:
        return false;
    }
  })();
  if (!ok) throw sealError('ErrBadRequest', `malformed request${typeof r?.op === 'string' ? ` (op ${r.op.slice(0, 32)})` : ''}`);
  return r as unknown as KvRequest;
}
