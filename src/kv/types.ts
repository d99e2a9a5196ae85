// The request model: what a client asked for, as plain data that msgpack
// carries unchanged through the Raft log (Buffers stay Buffers, bigints stay
// bigints), and the replies computed for it.
//
// Times are milliseconds since the epoch. A relative expiry (`{ inMs }`) is
// resolved against the `nowMs` the state machine passes to apply, which is
// replicated with the entry, so every replica computes the same absolute
// expiry.

import type { ErrorCode } from '../errors/index.js';

/** A value visible to a read: body plus absolute expiry (ms, 0 = none). */
export interface VisibleValue {
  value: Buffer;
  expireAt: number;
}

/** A user-visible write produced by applying requests. */
export type KvWrite =
  | { kind: 'put'; key: Buffer; value: Buffer; expireAt: number }
  | { kind: 'delete'; key: Buffer };

/** When a key expires: after a delay from apply time, or at an absolute time. */
export type Expiry = { inMs: number } | { atMs: number };

export type KvRequest =
  | { op: 'get'; key: Buffer }
  | {
      op: 'set';
      key: Buffer;
      value: Buffer;
      /** Absent: the key loses any TTL it had, unless `keepTtl`. */
      expire?: Expiry;
      keepTtl?: boolean;
      condition?: 'nx' | 'xx';
      /** SET ... GET: reply with the old value instead of OK. */
      returnOld?: boolean;
    }
  | { op: 'getdel'; key: Buffer }
  | { op: 'del'; keys: Buffer[] }
  | { op: 'exists'; keys: Buffer[] }
  | { op: 'mget'; keys: Buffer[] }
  | { op: 'mset'; entries: [Buffer, Buffer][] }
  | { op: 'incrby'; key: Buffer; delta: bigint }
  | { op: 'append'; key: Buffer; value: Buffer }
  | { op: 'strlen'; key: Buffer }
  /** TYPE: "string" for a live key, "none" otherwise (strings are the only type). */
  | { op: 'type'; key: Buffer }
  /** EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT; an expiry not in the future deletes the key. */
  | { op: 'expire'; key: Buffer; expire: Expiry }
  | { op: 'persist'; key: Buffer }
  | { op: 'ttl'; key: Buffer; unit: 's' | 'ms' }
  /** `after` is the last key a previous page examined (null = from the start). */
  | { op: 'scan'; after: Buffer | null; match?: Buffer; count: number }
  | { op: 'dbsize' };

export type KvOp = KvRequest['op'];

export type KvReply =
  | { kind: 'ok' }
  /** A simple-string reply other than OK (TYPE). */
  | { kind: 'status'; text: string }
  | { kind: 'nil' }
  | { kind: 'bulk'; value: Buffer }
  | { kind: 'int'; value: number | bigint }
  | { kind: 'array'; items: KvReply[] }
  /** A per-request failure: the other requests of the batch still apply. */
  | { kind: 'error'; code: ErrorCode; message: string };

/** Reads as of the apply in progress. May return expired values; apply hides them. */
export interface KvReader {
  get(key: Buffer): Promise<VisibleValue | undefined>;
  /**
   * Optional: the values of several keys in one call (one store round, and
   * sealed values opened as one batch), in the order given.
   */
  getMany?(keys: readonly Buffer[]): Promise<(VisibleValue | undefined)[]>;
}

/** A reader that can also walk keys in byte order (the read path only). */
export interface KvRangeReader extends KvReader {
  /**
   * Up to `limit` live (not deleted) keys strictly after `after`, in byte
   * order, with their newest values; internal keys are never returned.
   */
  scan(after: Buffer | null, limit: number): Promise<{ key: Buffer; value: VisibleValue }[]>;
}

const WRITE_OPS: ReadonlySet<KvOp> = new Set<KvOp>(['set', 'getdel', 'del', 'mset', 'incrby', 'append', 'expire', 'persist']);

/** True for requests that change state and so must go through the replicated path. */
export function isWriteRequest(request: KvRequest): boolean {
  return WRITE_OPS.has(request.op);
}
