import { describe, expect, it } from 'vitest';
import { HybridClock, LeaderClock, decodeCorePayload, hlcPhysicalMs } from '../../src/fsm/index.js';
import { isSealError } from '../../src/errors/index.js';

/** Two nodes sharing one committed log of ceilings; proposing applies on every node. */
function cluster(now: () => number) {
  const clocks = [new HybridClock({ now }), new HybridClock({ now })];
  const proposals: bigint[] = [];
  const propose = async (payload: Uint8Array): Promise<void> => {
    await Promise.resolve();
    const decoded = decodeCorePayload(payload);
    if (decoded.tag !== 0x02) throw new Error('expected a ceiling');
    proposals.push(decoded.ceiling);
    for (const clock of clocks) clock.observeCeiling(decoded.ceiling);
  };
  return { clocks, proposals, leaders: clocks.map((c) => new LeaderClock(c, propose)) };
}

describe('LeaderClock', () => {
  it('arms with a barrier and a ceiling, then stamps increasing timestamps', async () => {
    let now = 1_700_000_000_000;
    const { leaders, proposals } = cluster(() => now);
    const leader = leaders[0]!;
    await expect(leader.timestamp()).rejects.toMatchObject({ code: 'ErrNotLeader' });
    await leader.becomeLeader();
    expect(proposals).toHaveLength(2);
    const a = await leader.timestamp();
    const b = await leader.timestamp();
    expect(b > a).toBe(true);
    expect(hlcPhysicalMs(a)).toBe(now);
    now += 2_500;
    leader.maintain();
    await Promise.resolve();
    await Promise.resolve();
    expect(proposals).toHaveLength(3);
    now += 10_000;
    const c = await leader.timestamp();
    expect(hlcPhysicalMs(c)).toBe(now);
  });

  it('a new leader stamps above everything the old one stamped, even with its clock behind', async () => {
    let now = 1_700_000_000_000;
    const { leaders } = cluster(() => now);
    await leaders[0]!.becomeLeader();
    const old = [await leaders[0]!.timestamp(), await leaders[0]!.timestamp()];
    now -= 60_000;
    await leaders[1]!.becomeLeader();
    const fresh = await leaders[1]!.timestamp();
    expect(old.every((ts) => fresh > ts)).toBe(true);
    leaders[1]!.stepDown();
    const err = await leaders[1]!.timestamp().catch((e: unknown) => e);
    expect(isSealError(err, 'ErrNotLeader')).toBe(true);
  });
});
