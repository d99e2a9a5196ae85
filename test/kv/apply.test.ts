// applyRequests: semantics, determinism, batching within one apply, and the
// executor's msgpack round trip (what the Raft log carries).

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  applyRequests,
  decodeCursor,
  encodeCursor,
  globMatcher,
  kvExecutor,
  validateRequest,
  type KvReply,
  type KvRequest,
  type VisibleValue,
} from '../../src/kv/index.js';
import { mapReader } from '../support/kv-reader.js';

const b = (s: string): Buffer => Buffer.from(s);

const v = (value: string, expireAt = 0): VisibleValue => ({ value: b(value), expireAt });
const bulk = (s: string): KvReply => ({ kind: 'bulk', value: b(s) });

describe('applyRequests', () => {
  it('later requests of one apply see earlier writes, and each key is written once', async () => {
    const reader = mapReader([['n', v('5')]]);
    const { replies, writes } = await applyRequests(
      reader,
      [
        { op: 'incrby', key: b('n'), delta: 2n },
        { op: 'incrby', key: b('n'), delta: 3n },
        { op: 'get', key: b('n') },
        { op: 'set', key: b('x'), value: b('1') },
        { op: 'del', keys: [b('x')] },
      ],
      1000,
    );
    expect(replies).toEqual([{ kind: 'int', value: 7n }, { kind: 'int', value: 10n }, bulk('10'), { kind: 'ok' }, { kind: 'int', value: 1 }]);
    expect(writes).toEqual([
      { kind: 'put', key: b('n'), value: b('10'), expireAt: 0 },
      { kind: 'delete', key: b('x') },
    ]);
    expect(reader.data.get('n')).toEqual(v('5')); // the reader is never written
  });

  it('a failing request writes nothing and the others still apply', async () => {
    const { replies, writes } = await applyRequests(
      mapReader([['s', v('abc')]]),
      [
        { op: 'incrby', key: b('s'), delta: 1n },
        { op: 'set', key: b('!encryption|x'), value: b('1') },
        { op: 'mset', entries: [[b('ok'), b('1')], [b('!encryption|y'), b('2')]] },
        { op: 'set', key: b('t'), value: b('1') },
      ],
      0,
    );
    expect(replies.map((r) => (r.kind === 'error' ? r.code : r.kind))).toEqual(['ErrBadRequest', 'ErrReservedKey', 'ErrReservedKey', 'ok']);
    expect(writes).toEqual([{ kind: 'put', key: b('t'), value: b('1'), expireAt: 0 }]);
  });

  it('resolves relative expiry against nowMs and hides expired values', async () => {
    const reader = mapReader([['old', v('x', 500)]]);
    const { replies, writes } = await applyRequests(
      reader,
      [
        { op: 'get', key: b('old') },
        { op: 'set', key: b('k'), value: b('v'), expire: { inMs: 250 } },
        { op: 'ttl', key: b('k'), unit: 'ms' },
        { op: 'expire', key: b('k'), expire: { atMs: 400 } },
      ],
      500,
    );
    expect(replies).toEqual([{ kind: 'nil' }, { kind: 'ok' }, { kind: 'int', value: 250 }, { kind: 'int', value: 1 }]);
    expect(writes).toEqual([{ kind: 'delete', key: b('k') }]);
  });

  it('SCAN pages through keys with a stateless cursor and skips reserved and expired keys', async () => {
    const reader = mapReader([
      ['a', v('1')],
      ['!encryption|writers|1', v('r')],
      ['b', v('2', 10)],
      ['c', v('3')],
      ['d', v('4')],
    ]);
    const seen: string[] = [];
    let after: Buffer | null = null;
    let pages = 0;
    do {
      const { replies, writes } = await applyRequests(reader, [{ op: 'scan', after, count: 2 }], 100);
      expect(writes).toEqual([]);
      const [cursor, keys] = (replies[0] as { items: KvReply[] }).items as [KvReply & { kind: 'bulk' }, { items: (KvReply & { kind: 'bulk' })[] }];
      seen.push(...keys.items.map((k) => k.value.toString()));
      after = decodeCursor(cursor.value.toString());
      pages++;
    } while (after !== null && pages < 10);
    expect(seen).toEqual(['a', 'c', 'd']);
    expect(pages).toBe(3);
  });

  it('a plain SET does not read the current value; NX, XX, GET and KEEPTTL do', async () => {
    // A reader whose stored value fails authentication, as a tampered sealed value does.
    const integrity = Object.assign(new Error('tampered'), { code: 'ErrEncryptedReadIntegrity' });
    const reader = { ...mapReader(), get: async (): Promise<VisibleValue | undefined> => { throw integrity; } };
    const plain = await applyRequests(reader, [{ op: 'set', key: b('k'), value: b('new') }], 1000);
    expect(plain.replies).toEqual([{ kind: 'ok' }]);
    expect(plain.writes).toEqual([{ kind: 'put', key: b('k'), value: b('new'), expireAt: 0 }]);
    const withExpiry = await applyRequests(reader, [{ op: 'set', key: b('k'), value: b('new'), expire: { inMs: 500 } }], 1000);
    expect(withExpiry.writes).toEqual([{ kind: 'put', key: b('k'), value: b('new'), expireAt: 1500 }]);
    for (const request of [
      { op: 'set', key: b('k'), value: b('new'), condition: 'nx' },
      { op: 'set', key: b('k'), value: b('new'), condition: 'xx' },
      { op: 'set', key: b('k'), value: b('new'), returnOld: true },
      { op: 'set', key: b('k'), value: b('new'), keepTtl: true },
    ] as KvRequest[]) {
      await expect(applyRequests(reader, [request], 1000)).rejects.toBe(integrity);
    }
  });

  it('a batch without writes reads its GET and MGET keys in one getMany call, with the same replies', async () => {
    const entries: [string, VisibleValue][] = [['a', v('1')], ['b', v('2')], ['old', v('x', 500)]];
    const calls: { get: string[]; getMany: string[][] } = { get: [], getMany: [] };
    const plain = mapReader(entries);
    const batched = {
      ...mapReader(entries),
      get: async (key: Buffer) => (calls.get.push(key.toString()), plain.data.get(key.toString('latin1'))),
      getMany: async (keys: readonly Buffer[]) => (calls.getMany.push(keys.map(String)), keys.map((k) => plain.data.get(k.toString('latin1')))),
    };
    const reads: KvRequest[] = [
      { op: 'get', key: b('a') },
      { op: 'mget', keys: [b('b'), b('missing'), b('a')] },
      { op: 'get', key: b('old') },
      { op: 'get', key: b('!encryption|x') },
    ];
    const expected = await applyRequests(plain, reads, 1000);
    expect(await applyRequests(batched, reads, 1000)).toEqual(expected);
    expect(expected.replies.slice(0, 3)).toEqual([bulk('1'), { kind: 'array', items: [bulk('2'), { kind: 'nil' }, bulk('1')] }, { kind: 'nil' }]);
    expect(calls).toEqual({ get: [], getMany: [['a', 'b', 'missing', 'old']] });

    // With a write in the batch, reads go one by one and see the batch's own writes.
    calls.getMany = [];
    const mixed = await applyRequests(batched, [{ op: 'set', key: b('a'), value: b('9') }, { op: 'get', key: b('a') }, { op: 'get', key: b('b') }], 1000);
    expect(mixed.replies).toEqual([{ kind: 'ok' }, bulk('9'), bulk('2')]);
    expect(calls.getMany).toEqual([]);
  });

  it('is deterministic: same reader, requests and time give the same outcome', async () => {
    const key = fc.constantFrom('a', 'b', 'c').map(b);
    const request: fc.Arbitrary<KvRequest> = fc.oneof(
      fc.record({ op: fc.constant('set' as const), key, value: fc.string().map(b) }),
      fc.record({ op: fc.constant('incrby' as const), key, delta: fc.bigInt(-5n, 5n) }),
      fc.record({ op: fc.constant('append' as const), key, value: fc.string().map(b) }),
      fc.record({ op: fc.constant('del' as const), keys: fc.array(key, { minLength: 1, maxLength: 3 }) }),
      fc.record({ op: fc.constant('expire' as const), key, expire: fc.integer({ min: -5, max: 50 }).map((inMs) => ({ inMs })) }),
      fc.record({ op: fc.constant('get' as const), key }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(request, { maxLength: 20 }), fc.integer({ min: 0, max: 1e12 }), async (requests, now) => {
        const first = await applyRequests(mapReader([['a', v('1')]]), requests, now);
        const second = await applyRequests(mapReader([['a', v('1')]]), requests, now);
        expect(second).toEqual(first);
        // Applying one by one over the accumulated state gives the same replies as one batch.
        const reader = mapReader([['a', v('1')]]);
        const stepwise: KvReply[] = [];
        for (const r of requests) {
          const out = await applyRequests(reader, [r], now);
          stepwise.push(...out.replies);
          reader.apply(out.writes);
        }
        expect(stepwise).toEqual(first.replies);
      }),
      { numRuns: 200 },
    );
  });
});

describe('kvExecutor over the msgpack the Raft log carries', () => {
  it('round-trips requests (Buffers, bigints) and results', async () => {
    const packr = new Packr({ useRecords: false });
    const requests: KvRequest[] = [
      { op: 'set', key: b('k'), value: Buffer.from([0, 255]), expire: { inMs: 10 }, condition: 'nx' },
      { op: 'incrby', key: b('n'), delta: 9007199254740993n },
      { op: 'mset', entries: [[b('a'), b('1')]] },
    ];
    const decoded = packr.unpack(packr.pack(requests)) as unknown[];
    const { results, writes } = await kvExecutor.execute(mapReader(), decoded, 100);
    expect(results).toEqual([{ kind: 'ok' }, { kind: 'int', value: 9007199254740993n }, { kind: 'ok' }]);
    expect(packr.unpack(packr.pack(results))).toEqual(results);
    expect(writes).toHaveLength(3);
  });

  it('refuses malformed requests with ErrBadRequest', () => {
    for (const bad of [null, 1, {}, { op: 'get' }, { op: 'set', key: b('k') }, { op: 'incrby', key: b('k'), delta: 1 }, { op: 'flushall' }]) {
      expect(() => validateRequest(bad)).toThrow(expect.objectContaining({ code: 'ErrBadRequest' }));
    }
  });
});

describe('SCAN cursors', () => {
  it('encode any key as a decimal integer and decode it back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const cursor = encodeCursor(Buffer.from(bytes));
        expect(cursor).toMatch(/^[1-9][0-9]*$/);
        expect(decodeCursor(cursor)).toEqual(Buffer.from(bytes));
      }),
    );
    expect(decodeCursor('0')).toBeNull();
    for (const bad of ['', '-1', '01', 'abc', '2', '16']) {
      expect(() => decodeCursor(bad)).toThrow(expect.objectContaining({ code: 'ErrBadRequest' }));
    }
  });
});

describe('globMatcher (Redis stringmatchlen)', () => {
  const cases: [string, string, boolean][] = [
    ['*', 'anything', true],
    ['user:*', 'user:1', true],
    ['user:*', 'users', false],
    ['h?llo', 'hello', true],
    ['h?llo', 'hllo', false],
    ['h[ae]llo', 'hallo', true],
    ['h[ae]llo', 'hillo', false],
    ['h[^e]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-b]llo', 'hbllo', true],
    ['h[a-b]llo', 'hcllo', false],
    ['h\\*llo', 'h*llo', true],
    ['h\\*llo', 'hello', false],
    ['*a*b*c*', 'xxaxxbxxcxx', true],
    ['*a*b*c*', 'xxaxxcxxbxx', false],
    ['a*', '', false],
    ['', '', true],
  ];
  it.each(cases)('%s ~ %s → %s', (pattern, key, expected) => {
    expect(globMatcher(b(pattern))(b(key))).toBe(expected);
  });

  it('stays fast on patterns that make naive matchers exponential', () => {
    const match = globMatcher(b('a*a*a*a*a*a*a*a*a*a*a*b'));
    expect(match(b('a'.repeat(5000)))).toBe(false);
  });
});
