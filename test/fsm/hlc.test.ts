import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HybridClock, commitTimestamp, hlcLogical, hlcPhysicalMs, packHlc } from '../../src/fsm/index.js';

describe('HLC packing', () => {
  it('round-trips physical ms and logical counter, and orders like the pair', () => {
    const pair = fc.tuple(fc.integer({ min: 0, max: 2 ** 48 - 1 }), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(pair, pair, ([p1, l1], [p2, l2]) => {
        const a = packHlc(p1, l1);
        const b = packHlc(p2, l2);
        expect(hlcPhysicalMs(a)).toBe(p1);
        expect(hlcLogical(a)).toBe(l1);
        const pairOrder = p1 === p2 ? Math.sign(l1 - l2) : Math.sign(p1 - p2);
        expect(a === b ? 0 : a < b ? -1 : 1).toBe(pairOrder);
      }),
    );
  });

  it('carries a logical overflow into the millisecond', () => {
    expect(packHlc(7, 0xffff) + 1n).toBe(packHlc(8, 0));
  });

  it('rejects out-of-range parts', () => {
    expect(() => packHlc(-1)).toThrow(RangeError);
    expect(() => packHlc(2 ** 48)).toThrow(RangeError);
    expect(() => packHlc(1, 0x10000)).toThrow(RangeError);
  });
});

describe('commitTimestamp (apply-time assignment)', () => {
  it('is strictly increasing in log order whatever the proposed timestamps', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 1n << 40n }), fc.boolean()), { minLength: 1, maxLength: 200 }),
        (log) => {
          let last = 0n;
          let ceiling = 0n;
          for (const [value, isCeiling] of log) {
            if (isCeiling) {
              if (value > ceiling) ceiling = value;
              continue;
            }
            const ts = commitTimestamp(last, ceiling, value);
            expect(ts > last).toBe(true);
            if (ceiling > 0n && last + 1n < ceiling) expect(ts < ceiling).toBe(true);
            last = ts;
          }
        },
      ),
    );
  });

  it('takes the proposed timestamp when it is ahead, clamps it below the ceiling', () => {
    expect(commitTimestamp(10n, 0n, 500n)).toBe(500n);
    expect(commitTimestamp(10n, 100n, 500n)).toBe(99n);
    expect(commitTimestamp(10n, 100n, 5n)).toBe(11n);
    expect(commitTimestamp(200n, 100n, 500n)).toBe(201n);
  });
});

describe('HybridClock', () => {
  it('refuses to issue before fence and until a ceiling above the floor applies', () => {
    let now = 1_000_000;
    const clock = new HybridClock({ now: () => now });
    expect(() => clock.issue()).toThrow(/fence/);
    clock.fence();
    expect(clock.issue()).toBeUndefined();
    expect(clock.needsRenewal()).toBe(true);
    clock.observeCeiling(clock.nextCeiling());
    const a = clock.issue();
    now += 5;
    const b = clock.issue();
    expect(a).toBeDefined();
    expect(b! > a!).toBe(true);
    expect(hlcPhysicalMs(b!)).toBe(now);
    expect(clock.needsRenewal()).toBe(false);
  });

  it('stays monotonic when the wall clock steps back, and stops at the ceiling', () => {
    let now = 5_000_000;
    const clock = new HybridClock({ now: () => now, leadMs: 10, renewMarginMs: 5 });
    clock.fence();
    clock.observeCeiling(clock.nextCeiling());
    const first = clock.issue()!;
    now -= 1_000;
    const second = clock.issue()!;
    expect(second).toBe(first + 1n);
    now += 2_000;
    expect(clock.issue()).toBeUndefined();
    expect(clock.needsRenewal()).toBe(true);
  });

  // A model of leaders over a shared committed log of ceilings. A new leader
  // applies the whole log before fencing; a deposed leader keeps issuing from
  // its stale applied prefix. Every timestamp issued in a later term must be
  // above every timestamp issued in any earlier term, by anyone.
  it('issues strictly increasing timestamps across leader changes with skewed clocks', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.array(fc.integer({ min: -5_000, max: 5_000 }), { minLength: 3, maxLength: 3 }),
        fc.array(
          fc.record({
            leader: fc.integer({ min: 0, max: 2 }),
            steps: fc.array(fc.record({ advance: fc.integer({ min: -50, max: 2_000 }), staleIssue: fc.boolean() }), {
              maxLength: 30,
            }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        (seedTime, skews, terms) => {
          let realNow = 1_700_000_000_000 + seedTime;
          const log: bigint[] = [];
          const nodes = skews.map((skew) => ({
            clock: new HybridClock({ now: () => realNow + skew }),
            appliedUpTo: 0,
          }));
          const catchUp = (n: (typeof nodes)[number], upTo: number): void => {
            for (; n.appliedUpTo < upTo; n.appliedUpTo += 1) n.clock.observeCeiling(log[n.appliedUpTo]!);
          };
          const issuedByTerm: { min: bigint; max: bigint }[] = [];
          let previousLeader: (typeof nodes)[number] | undefined;
          for (const term of terms) {
            const leader = nodes[term.leader]!;
            // The deposed leader may not know yet: it stays fenced and keeps issuing from its stale view.
            const deposed = previousLeader !== leader ? previousLeader : undefined;
            catchUp(leader, log.length);
            leader.clock.fence();
            const range = { min: (1n << 64n) - 1n, max: -1n };
            issuedByTerm.push(range);
            const record = (ts: bigint, termIndex: number): void => {
              const r = issuedByTerm[termIndex]!;
              if (ts < r.min) r.min = ts;
              if (ts > r.max) r.max = ts;
            };
            for (const step of term.steps) {
              realNow += step.advance;
              if (leader.clock.needsRenewal()) {
                log.push(leader.clock.nextCeiling());
                catchUp(leader, log.length);
              }
              const ts = leader.clock.issue();
              if (ts !== undefined) {
                expect(ts < leader.clock.appliedCeiling).toBe(true);
                record(ts, issuedByTerm.length - 1);
              }
              if (deposed && step.staleIssue) {
                const stale = deposed.clock.issue();
                if (stale !== undefined) record(stale, issuedByTerm.length - 2);
              }
            }
            previousLeader = leader;
          }
          let maxBefore = -1n;
          for (const r of issuedByTerm) {
            if (r.max < 0n) continue;
            expect(r.min > maxBefore).toBe(true);
            maxBefore = r.max > maxBefore ? r.max : maxBefore;
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
