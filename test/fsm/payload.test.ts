import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PayloadHandlers,
  TAG_BATCH,
  TAG_HLC_CEILING,
  TAG_REQUEST,
  decodeCorePayload,
  encodeBatchPayload,
  encodeCeilingPayload,
  encodeRequestPayload,
  isEncryptionRelevant,
  payloadTag,
} from '../../src/fsm/index.js';
import { isSealError } from '../../src/errors/index.js';

function expectCode(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(isSealError(thrown) && thrown.code).toBe(code);
}

const request = fc.record({
  op: fc.constantFrom('set', 'del', 'incr'),
  key: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  value: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  n: fc.integer(),
});
const ts = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

describe('payload codecs (SPEC §7)', () => {
  it('round-trips single requests, batches and ceilings', () => {
    fc.assert(
      fc.property(request, fc.array(request, { minLength: 1, maxLength: 8 }), ts, (one, many, stamp) => {
        const single = encodeRequestPayload(one, stamp);
        expect(single[0]).toBe(TAG_REQUEST);
        expect(single[1]).toBe(0x01);
        expect(decodeCorePayload(single)).toEqual({ tag: TAG_REQUEST, proposedTs: stamp, request: one });
        expect(decodeCorePayload(encodeBatchPayload(many, stamp))).toEqual({
          tag: TAG_BATCH,
          proposedTs: stamp,
          requests: many,
        });
        expect(decodeCorePayload(encodeCeilingPayload(stamp))).toEqual({ tag: TAG_HLC_CEILING, ceiling: stamp });
      }),
      { numRuns: 100 },
    );
  });

  it('pins the ceiling layout: 0x02 ‖ 0x01 ‖ ceiling(8 BE)', () => {
    expect(encodeCeilingPayload(0x0102030405060708n).toString('hex')).toBe('02010102030405060708');
  });

  it('halts on an unknown wire version, an unknown tag, or a bad length', () => {
    const single = encodeRequestPayload({ op: 'set' }, 1n);
    single[1] = 0x02;
    expectCode(() => decodeCorePayload(single), 'ErrApplyPayload');
    const ceiling = encodeCeilingPayload(5n);
    ceiling[1] = 0x00;
    expectCode(() => decodeCorePayload(ceiling), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(Buffer.concat([encodeCeilingPayload(5n), Buffer.from([0])])), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(encodeCeilingPayload(5n).subarray(0, 9)), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(Buffer.from([0x07, 0x01])), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(Buffer.from([0x00])), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(encodeRequestPayload('x', 1n).subarray(0, 10)), 'ErrApplyPayload');
    expectCode(() => decodeCorePayload(Buffer.from([0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0x01])), 'ErrApplyPayload');
    expectCode(() => payloadTag(Buffer.alloc(0)), 'ErrApplyPayload');
    expect(() => encodeBatchPayload([], 1n)).toThrow(RangeError);
  });

  it('marks exactly tags 0x04 and 0x05 as encryption-relevant', () => {
    for (let tag = 0; tag < 256; tag++) {
      expect(isEncryptionRelevant(Buffer.from([tag, 0x01, 0x01]))).toBe(tag === 0x04 || tag === 0x05);
    }
    expect(isEncryptionRelevant(Buffer.alloc(0))).toBe(false);
  });
});

describe('PayloadHandlers', () => {
  it('accepts handlers for 0x03..0x05 once each and halts on missing ones', () => {
    const handlers = new PayloadHandlers<null>();
    expectCode(() => handlers.lookup(0x04), 'ErrEncryptionApply');
    expectCode(() => handlers.lookup(0x09), 'ErrApplyPayload');
    const handler = (): string => 'ok';
    handlers.register(0x04, handler);
    expect(handlers.lookup(0x04)).toBe(handler);
    expect(() => handlers.register(0x04, handler)).toThrow(/already/);
    expect(() => handlers.register(0x00, handler)).toThrow(RangeError);
    expect(() => handlers.register(0x06, handler)).toThrow(RangeError);
  });
});
