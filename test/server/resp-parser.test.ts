// The streaming RESP2 parser: framing, inline quoting, limits, and fuzzing
// (arbitrary bytes never crash it or grow it past its limits; valid command
// streams parse back identically however they are split into chunks).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCommand, RespParser, splitInline, type RespCommand, type RespLimits } from '../../src/server/resp/index.js';
import { recordFault } from '../faults/support/report.js';

/** SEALKV_FUZZ_SCALE=N multiplies the runs for a longer soak (default 1, kept small for CI; 20 under SEALKV_FAULT_SOAK=1). */
const FUZZ_SCALE = Math.max(1, Number(process.env.SEALKV_FUZZ_SCALE ?? (process.env.SEALKV_FAULT_SOAK === '1' ? 20 : 1)) || 1);

const encode = (command: Buffer[]): Buffer => encodeCommand(command);

function parseAll(chunks: Buffer[], limits: Partial<RespLimits> = {}) {
  const parser = new RespParser(limits);
  const out: RespCommand[] = [];
  for (const chunk of chunks) {
    const error = parser.feed(chunk, out);
    if (error !== undefined) return { out, error, parser };
  }
  return { out, error: undefined, parser };
}

const text = (cmds: RespCommand[]): string[][] => cmds.map((c) => c.map((a) => a.toString('latin1')));

describe('RespParser', () => {
  it('parses multibulk commands split at every byte boundary', () => {
    const stream = Buffer.concat([encode([Buffer.from('SET'), Buffer.from('k'), Buffer.from('v\r\n')]), encode([Buffer.from('GET'), Buffer.from('')])]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const { out, error } = parseAll([stream.subarray(0, cut), stream.subarray(cut)]);
      expect(error).toBeUndefined();
      expect(text(out)).toEqual([['SET', 'k', 'v\r\n'], ['GET', '']]);
    }
  });

  it('parses inline commands with Redis quoting', () => {
    expect(text(parseAll([Buffer.from('PING\r\nset  k  "a b\\x41\\n"\nget \'it\\\'s\'\r\n\r\n')]).out)).toEqual([
      ['PING'],
      ['set', 'k', 'a bA\n'],
      ['get', "it's"],
    ]);
    expect(splitInline('"unterminated')).toBeNull();
    expect(splitInline('"closed"x')).toBeNull();
    expect(splitInline('   ')).toEqual([]);
  });

  it('ignores empty multibulk commands as Redis does', () => {
    expect(text(parseAll([Buffer.from('*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n')]).out)).toEqual([['PING']]);
  });

  it.each([
    ['bad multibulk length', '*x\r\n', 'ErrBadRequest', /invalid multibulk length/],
    ['missing $', '*1\r\n:5\r\n', 'ErrBadRequest', /expected '\$', got ':'/],
    ['bad bulk length', '*1\r\n$-3\r\n', 'ErrBadRequest', /invalid bulk length/],
    ['no CRLF after bulk', '*1\r\n$1\r\nabc\r\n', 'ErrBadRequest', /expected CRLF/],
    ['unbalanced quotes', 'SET "k v\r\n', 'ErrBadRequest', /unbalanced quotes/],
  ])('refuses %s', (_name, input, code, message) => {
    const { error, out } = parseAll([Buffer.from('PING\r\n'), Buffer.from(input)]);
    expect(text(out)).toEqual([['PING']]);
    expect(error?.code).toBe(code);
    expect(error?.message).toMatch(message);
  });

  it('enforces the bulk, array, inline and request limits', () => {
    const limits = { maxBulkBytes: 100, maxArrayLength: 10, maxInlineBytes: 50, maxRequestBytes: 1500 };
    expect(parseAll([Buffer.from('*1\r\n$101\r\n')], limits).error?.code).toBe('ErrRequestTooLarge');
    expect(parseAll([Buffer.from('*11\r\n')], limits).error?.code).toBe('ErrRequestTooLarge');
    expect(parseAll([Buffer.from('x'.repeat(51))], limits).error?.code).toBe('ErrRequestTooLarge');
    expect(parseAll([Buffer.from('*1' + '1'.repeat(60))], limits).error?.code).toBe('ErrRequestTooLarge');
    const many = encode(Array.from({ length: 10 }, () => Buffer.alloc(100)));
    expect(parseAll([many], limits).error?.code).toBe('ErrRequestTooLarge');
    expect(parseAll([encode(Array.from({ length: 10 }, () => Buffer.alloc(90)))], { ...limits, maxRequestBytes: 5000 }).error).toBeUndefined();
  });

  it('assembles a large bulk in place from many small chunks', () => {
    const value = Buffer.alloc(300_000, 7);
    const stream = encode([Buffer.from('SET'), Buffer.from('big'), value]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 1000) chunks.push(stream.subarray(i, i + 1000));
    const { out, error } = parseAll(chunks);
    expect(error).toBeUndefined();
    expect(out[0]![2]!.equals(value)).toBe(true);
  });

  it('is dead after a framing error', () => {
    const parser = new RespParser();
    expect(parser.feed(Buffer.from('*x\r\n'), [])).toBeDefined();
    const out: RespCommand[] = [];
    expect(parser.feed(Buffer.from('PING\r\n'), out)).toBeDefined();
    expect(out).toEqual([]);
  });
});

describe('RespParser fuzzing', () => {
  const limits = { maxBulkBytes: 4096, maxArrayLength: 64, maxInlineBytes: 1024, maxRequestBytes: 16_384 };

  it('never throws, and holds no more than its limits, on arbitrary bytes', () => {
    const chunk = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.constantFrom('*', '$', '\r\n', '*3\r\n', '$5\r\n', '$-1\r\n', '*99999999\r\n', '$4097\r\n', '"', "'", '\\x4', ' ').map((s) => Buffer.from(s)),
    );
    let inputs = 0;
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 40 }), (chunks) => {
        inputs++;
        const parser = new RespParser(limits);
        const out: RespCommand[] = [];
        for (const c of chunks) {
          const error = parser.feed(c, out);
          expect(parser.bufferedBytes).toBeLessThanOrEqual(limits.maxRequestBytes + limits.maxInlineBytes + 300 + 2);
          if (error !== undefined) {
            expect(['ErrBadRequest', 'ErrRequestTooLarge']).toContain(error.code);
            break;
          }
        }
        for (const cmd of out) expect(cmd.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 * FUZZ_SCALE },
    );
    recordFault({ area: 'fuzz', scenario: 'RespParser: arbitrary byte chunks (unit)', faults: inputs, operations: inputs, anomalies: 0 });
  });

  it('parses valid command streams identically however they are chunked', () => {
    const arg = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
    const command = fc.array(arg, { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (commands, cutsRaw) => {
        const stream = Buffer.concat(commands.map(encode));
        const cuts = [...new Set(cutsRaw.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const cut of [...cuts, stream.length]) {
          chunks.push(stream.subarray(prev, cut));
          prev = cut;
        }
        const { out, error } = parseAll(chunks, limits);
        expect(error).toBeUndefined();
        expect(out).toEqual(commands);
      }),
      { numRuns: 500 * FUZZ_SCALE },
    );
  });
});
