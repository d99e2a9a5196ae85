// applyRequests: the deterministic core that the replicated state machine runs
// on apply (and the read path runs for reads). Same reader contents, same
// requests, same `nowMs` → same replies and writes, on every replica: there is
// no clock, randomness or iteration over unordered state in here.
//
// Requests of one call see each other's effects in order (an overlay of the
// writes made so far), and the writes come out as one per touched key — the
// last state — in the order keys were first written, ready for one atomic
// store batch at one commit timestamp. A request that fails (INCR on a
// non-integer, a reserved key) gets an error reply and writes nothing; the
// others still apply.
//
// Expiry: a value is visible while `expireAt === 0 || nowMs < expireAt`.

import { encodeCursor, CURSOR_START } from './cursor.js';
import { INT64_MAX, INT64_MIN, NOT_AN_INTEGER, parseInt64 } from './int64.js';
import { globMatcher } from './match.js';
import { isWriteRequest, type Expiry, type KvRangeReader, type KvReader, type KvReply, type KvRequest, type KvWrite, type VisibleValue } from './types.js';

/** User keys must stay outside the internal keyspace (SPEC §5.1). */
export const RESERVED_KEY_PREFIX = Buffer.from('!encryption|');
/** Upper bound of SCAN COUNT, so one page cannot pin unbounded memory. */
export const MAX_SCAN_COUNT = 100_000;
/** Largest absolute expiry accepted (ms): beyond it arithmetic would lose precision. */
export const MAX_EXPIRE_AT_MS = Number.MAX_SAFE_INTEGER;

const DBSIZE_PAGE = 1024;

const OK: KvReply = { kind: 'ok' };
const NIL: KvReply = { kind: 'nil' };

export interface ApplyOutcome {
  replies: KvReply[];
  writes: KvWrite[];
}

class RequestFailed extends Error {
  constructor(readonly reply: KvReply & { kind: 'error' }) {
    super(reply.message);
  }
}

function fail(code: 'ErrBadRequest' | 'ErrReservedKey', message: string): never {
  throw new RequestFailed({ kind: 'error', code, message });
}

function int(value: number | bigint): KvReply {
  return { kind: 'int', value };
}

function bulk(value: Buffer): KvReply {
  return { kind: 'bulk', value };
}

function checkKey(key: Buffer): void {
  if (isReserved(key)) {
    fail('ErrReservedKey', `keys starting with "${RESERVED_KEY_PREFIX.toString()}" are reserved`);
  }
}

function isReserved(key: Buffer): boolean {
  return key.length >= RESERVED_KEY_PREFIX.length && key.subarray(0, RESERVED_KEY_PREFIX.length).equals(RESERVED_KEY_PREFIX);
}

function visible(value: VisibleValue | undefined, nowMs: number): VisibleValue | undefined {
  if (value === undefined || (value.expireAt !== 0 && value.expireAt <= nowMs)) return undefined;
  return value;
}

function resolveExpiry(expire: Expiry, nowMs: number, command: string): number {
  const at = 'inMs' in expire ? nowMs + expire.inMs : expire.atMs;
  if (!Number.isSafeInteger(at) || at > MAX_EXPIRE_AT_MS) fail('ErrBadRequest', `invalid expire time in '${command}' command`);
  return at;
}

/** Parses a stored value as Redis does for INCR: a canonical base-10 int64. */
function storedInt64(value: Buffer): bigint {
  return parseInt64(value) ?? fail('ErrBadRequest', NOT_AN_INTEGER);
}

/** One apply: the overlay of this call's writes above the reader. */
class ApplyContext {
  readonly #reader: KvReader;
  readonly #nowMs: number;
  readonly #overlay = new Map<string, { key: Buffer; value: VisibleValue | null }>();
  /** Values read ahead for a read-only batch (see prefetch), by latin1 key. */
  #prefetched: Map<string, VisibleValue | undefined> | undefined;

  constructor(reader: KvReader, nowMs: number) {
    this.#reader = reader;
    this.#nowMs = nowMs;
  }

  /**
   * For a batch without writes, reads every GET/MGET key in one getMany
   * call when the reader has one, instead of one read (and one open of a
   * sealed value) per key. A batch with writes reads as it goes, since its
   * requests see each other's writes.
   */
  async prefetch(requests: readonly KvRequest[]): Promise<void> {
    const getMany = this.#reader.getMany?.bind(this.#reader);
    if (getMany === undefined || requests.some(isWriteRequest)) return;
    const keys = new Map<string, Buffer>();
    for (const request of requests) {
      const wanted = request.op === 'get' ? [request.key] : request.op === 'mget' ? request.keys : [];
      for (const key of wanted) if (!isReserved(key)) keys.set(key.toString('latin1'), key);
    }
    if (keys.size < 2) return;
    const values = await getMany([...keys.values()]);
    this.#prefetched = new Map([...keys.keys()].map((id, i) => [id, values[i]]));
  }

  async get(key: Buffer): Promise<VisibleValue | undefined> {
    checkKey(key);
    const id = key.toString('latin1');
    const staged = this.#overlay.get(id);
    if (staged !== undefined) return staged.value ?? undefined;
    const value = this.#prefetched?.has(id) === true ? this.#prefetched.get(id) : await this.#reader.get(key);
    return visible(value, this.#nowMs);
  }

  put(key: Buffer, value: Buffer, expireAt: number): void {
    this.#overlay.set(key.toString('latin1'), { key, value: { value, expireAt } });
  }

  delete(key: Buffer): void {
    this.#overlay.set(key.toString('latin1'), { key, value: null });
  }

  writes(): KvWrite[] {
    const writes: KvWrite[] = [];
    for (const { key, value } of this.#overlay.values()) {
      writes.push(value === null ? { kind: 'delete', key } : { kind: 'put', key, value: value.value, expireAt: value.expireAt });
    }
    return writes;
  }
}

type Staged = { put?: [Buffer, Buffer, number][]; del?: Buffer[] };

/**
 * Computes one request's reply and its writes without touching the overlay,
 * so that a request failing half-way writes nothing.
 */
async function applyOne(ctx: ApplyContext, reader: KvReader, request: KvRequest, nowMs: number): Promise<{ reply: KvReply; staged?: Staged }> {
  switch (request.op) {
    case 'get': {
      const v = await ctx.get(request.key);
      return { reply: v === undefined ? NIL : bulk(v.value) };
    }
    case 'set': {
      // A plain SET depends on nothing stored: the current value is read (and,
      // when sealed, opened) only for NX/XX, GET and KEEPTTL.
      const needsOld = request.condition !== undefined || request.returnOld === true || request.keepTtl === true;
      checkKey(request.key);
      const old = needsOld ? await ctx.get(request.key) : undefined;
      const reply = request.returnOld === true ? (old === undefined ? NIL : bulk(old.value)) : OK;
      if ((request.condition === 'nx' && old !== undefined) || (request.condition === 'xx' && old === undefined)) {
        return { reply: request.returnOld === true ? reply : NIL };
      }
      let expireAt = 0;
      if (request.expire !== undefined) expireAt = resolveExpiry(request.expire, nowMs, 'set');
      else if (request.keepTtl === true && old !== undefined) expireAt = old.expireAt;
      if (expireAt !== 0 && expireAt <= nowMs) return { reply, staged: { del: [request.key] } };
      return { reply, staged: { put: [[request.key, request.value, expireAt]] } };
    }
    case 'getdel': {
      const old = await ctx.get(request.key);
      if (old === undefined) return { reply: NIL };
      return { reply: bulk(old.value), staged: { del: [request.key] } };
    }
    case 'del': {
      // Each key counts once even if named twice: the overlay sees the first delete.
      const seen = new Set<string>();
      const del: Buffer[] = [];
      for (const key of request.keys) {
        const id = key.toString('latin1');
        if (seen.has(id)) continue;
        seen.add(id);
        if ((await ctx.get(key)) !== undefined) del.push(key);
      }
      return { reply: int(del.length), staged: { del } };
    }
    case 'exists': {
      let n = 0;
      for (const key of request.keys) if ((await ctx.get(key)) !== undefined) n++;
      return { reply: int(n) };
    }
    case 'mget': {
      const items: KvReply[] = [];
      for (const key of request.keys) {
        // MGET answers nil for a reserved key, as Redis does for a key of another type.
        const v = isReserved(key) ? undefined : await ctx.get(key);
        items.push(v === undefined ? NIL : bulk(v.value));
      }
      return { reply: { kind: 'array', items } };
    }
    case 'mset': {
      for (const [key] of request.entries) checkKey(key);
      return { reply: OK, staged: { put: request.entries.map(([key, value]) => [key, value, 0]) } };
    }
    case 'incrby': {
      const old = await ctx.get(request.key);
      const current = old === undefined ? 0n : storedInt64(old.value);
      const next = current + request.delta;
      if (next < INT64_MIN || next > INT64_MAX) fail('ErrBadRequest', 'increment or decrement would overflow');
      return { reply: int(next), staged: { put: [[request.key, Buffer.from(next.toString()), old?.expireAt ?? 0]] } };
    }
    case 'append': {
      const old = await ctx.get(request.key);
      const value = old === undefined ? request.value : Buffer.concat([old.value, request.value]);
      return { reply: int(value.length), staged: { put: [[request.key, value, old?.expireAt ?? 0]] } };
    }
    case 'strlen': {
      const v = await ctx.get(request.key);
      return { reply: int(v === undefined ? 0 : v.value.length) };
    }
    case 'type':
      return { reply: { kind: 'status', text: (await ctx.get(request.key)) === undefined ? 'none' : 'string' } };
    case 'expire': {
      const old = await ctx.get(request.key);
      if (old === undefined) return { reply: int(0) };
      const expireAt = resolveExpiry(request.expire, nowMs, 'expire');
      if (expireAt <= nowMs) return { reply: int(1), staged: { del: [request.key] } };
      return { reply: int(1), staged: { put: [[request.key, old.value, expireAt]] } };
    }
    case 'persist': {
      const old = await ctx.get(request.key);
      if (old === undefined || old.expireAt === 0) return { reply: int(0) };
      return { reply: int(1), staged: { put: [[request.key, old.value, 0]] } };
    }
    case 'ttl': {
      const v = await ctx.get(request.key);
      if (v === undefined) return { reply: int(-2) };
      if (v.expireAt === 0) return { reply: int(-1) };
      const ms = v.expireAt - nowMs;
      return { reply: int(request.unit === 'ms' ? ms : Math.floor((ms + 500) / 1000)) };
    }
    case 'scan':
      return { reply: await scanPage(rangeReader(reader), request, nowMs) };
    case 'dbsize':
      return { reply: int(await countKeys(rangeReader(reader), nowMs)) };
  }
}

function rangeReader(reader: KvReader): KvRangeReader {
  if (!('scan' in reader)) fail('ErrBadRequest', 'SCAN and DBSIZE are reads and cannot be applied as writes');
  return reader as KvRangeReader;
}

async function scanPage(reader: KvRangeReader, request: KvRequest & { op: 'scan' }, nowMs: number): Promise<KvReply> {
  const count = Math.min(Math.max(1, request.count), MAX_SCAN_COUNT);
  const matches = request.match === undefined ? () => true : globMatcher(request.match);
  const page = await reader.scan(request.after, count);
  const keys: KvReply[] = [];
  for (const { key, value } of page) {
    if (!isReserved(key) && visible(value, nowMs) !== undefined && matches(key)) keys.push(bulk(key));
  }
  const last = page.at(-1);
  const cursor = page.length < count || last === undefined ? CURSOR_START : encodeCursor(last.key);
  return { kind: 'array', items: [bulk(Buffer.from(cursor)), { kind: 'array', items: keys }] };
}

async function countKeys(reader: KvRangeReader, nowMs: number): Promise<number> {
  let n = 0;
  let after: Buffer | null = null;
  for (;;) {
    const page = await reader.scan(after, DBSIZE_PAGE);
    for (const { key, value } of page) if (!isReserved(key) && visible(value, nowMs) !== undefined) n++;
    if (page.length < DBSIZE_PAGE) return n;
    after = page.at(-1)!.key;
  }
}

/**
 * Applies `requests` in order over `reader` at time `nowMs`. Deterministic;
 * never throws for a bad request (that request gets an error reply), only for
 * a failing reader.
 */
export async function applyRequests(reader: KvReader, requests: readonly KvRequest[], nowMs: number): Promise<ApplyOutcome> {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError(`nowMs must be a non-negative safe integer, got ${nowMs}`);
  const ctx = new ApplyContext(reader, nowMs);
  await ctx.prefetch(requests);
  const replies: KvReply[] = [];
  for (const request of requests) {
    try {
      const { reply, staged } = await applyOne(ctx, reader, request, nowMs);
      for (const key of staged?.del ?? []) ctx.delete(key);
      for (const [key, value, expireAt] of staged?.put ?? []) ctx.put(key, value, expireAt);
      replies.push(reply);
    } catch (err) {
      if (!(err instanceof RequestFailed)) throw err;
      replies.push(err.reply);
    }
  }
  return { replies, writes: ctx.writes() };
}
