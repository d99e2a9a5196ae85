// Hybrid logical clock with a Raft-replicated ceiling (SPEC §5.1, §7 tag 0x02).
//
// A timestamp is a uint64: physical milliseconds since the epoch in the high
// 48 bits, a logical counter in the low 16 bits. Adding 1 to a packed value
// bumps the counter and, when it overflows, the millisecond: packed values
// compare like (physical, logical) pairs.
//
// Two kinds of timestamps exist, and they must not be confused:
//
// * Issued timestamps (`HybridClock.issue`, leader only). The leader stamps
//   each proposal with one. It issues only values strictly below the applied
//   ceiling, the largest value carried by any applied `0x02` entry. A leader
//   learns that it may issue by `fence()`, which it calls once it has applied
//   every entry committed before its term; the fence raises its floor to that
//   applied ceiling. Every timestamp an earlier leader issued was below a
//   ceiling that earlier leader had applied, i.e. a ceiling committed before
//   the new term, so it is below the new leader's floor: issued timestamps
//   grow strictly across leader changes. After the fence the floor equals the
//   ceiling, so the new leader must propose a higher ceiling (`nextCeiling`)
//   and wait for it to apply before issuing.
//
// * Commit timestamps (`commitTimestamp`, every replica, at apply). They are
//   computed from the applied state and the entry only, so every replica
//   computes the same value for the same log position:
//       commit_ts = max(last_commit_ts + 1, min(proposed_ts, ceiling - 1))
//   (no clamp while no ceiling has been applied yet). They are unique and
//   strictly increasing in log order whatever the leaders' clocks do; the
//   proposed timestamp only keeps them close to real time, and the clamp
//   keeps a proposal from pushing them past the replicated ceiling. The
//   physical part of the commit timestamp is the "now" of the apply (TTL
//   arithmetic), so expiry is decided identically on every replica.
//
// Invariant (leader): floor <= last issued < applied ceiling.

/** Bits of the logical counter in a packed timestamp. */
export const HLC_LOGICAL_BITS = 16n;
/** Largest physical millisecond value a packed timestamp can hold. */
export const HLC_MAX_PHYSICAL_MS = 2 ** 48 - 1;
/** How far ahead of the leader's clock a proposed ceiling reaches. */
export const CEILING_LEAD_MS = 3_000;
/** The leader proposes a new ceiling once the applied one is this close. */
export const CEILING_RENEW_MARGIN_MS = 1_000;

const LOGICAL_MASK = (1n << HLC_LOGICAL_BITS) - 1n;
const MAX_TS = (1n << 64n) - 1n;

/** Packs physical milliseconds and a logical counter into a uint64 timestamp. */
export function packHlc(physicalMs: number, logical = 0): bigint {
  if (!Number.isSafeInteger(physicalMs) || physicalMs < 0 || physicalMs > HLC_MAX_PHYSICAL_MS) {
    throw new RangeError(`physical ms out of range: ${physicalMs}`);
  }
  if (!Number.isInteger(logical) || logical < 0 || logical > Number(LOGICAL_MASK)) {
    throw new RangeError(`logical counter out of range: ${logical}`);
  }
  return (BigInt(physicalMs) << HLC_LOGICAL_BITS) | BigInt(logical);
}

/** Physical milliseconds of a packed timestamp. */
export function hlcPhysicalMs(ts: bigint): number {
  return Number(ts >> HLC_LOGICAL_BITS);
}

/** Logical counter of a packed timestamp. */
export function hlcLogical(ts: bigint): number {
  return Number(ts & LOGICAL_MASK);
}

/** Throws RangeError unless `ts` is a uint64. */
export function checkTimestamp(ts: bigint): bigint {
  if (typeof ts !== 'bigint' || ts < 0n || ts > MAX_TS) throw new RangeError(`not a uint64 timestamp: ${ts}`);
  return ts;
}

/**
 * The commit timestamp of an entry, computed at apply from replicated state
 * only (see the header). `proposedTs` 0 means "not stamped".
 */
export function commitTimestamp(lastCommitTs: bigint, ceiling: bigint, proposedTs: bigint): bigint {
  const proposed = ceiling > 0n && proposedTs >= ceiling ? ceiling - 1n : proposedTs;
  const next = lastCommitTs + 1n;
  return proposed > next ? proposed : next;
}

export interface HybridClockOptions {
  /** Wall clock in ms; injectable for tests. */
  now?: () => number;
  leadMs?: number;
  renewMarginMs?: number;
}

/**
 * One node's clock. Every replica feeds it the applied ceiling and commit
 * timestamps (`observe*`); only the leader calls `fence`, `issue` and
 * `nextCeiling`.
 */
export class HybridClock {
  readonly #now: () => number;
  readonly #leadMs: number;
  readonly #renewMarginMs: number;
  #appliedCeiling = 0n;
  #lastCommitTs = 0n;
  // Invariant: #lastIssued < #appliedCeiling whenever #lastIssued was issued.
  #lastIssued = 0n;
  #floor = 0n;
  #fenced = false;

  constructor(options: HybridClockOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#leadMs = options.leadMs ?? CEILING_LEAD_MS;
    this.#renewMarginMs = options.renewMarginMs ?? CEILING_RENEW_MARGIN_MS;
    if (this.#renewMarginMs >= this.#leadMs) throw new RangeError('renew margin must be below the ceiling lead');
  }

  get appliedCeiling(): bigint {
    return this.#appliedCeiling;
  }

  get lastCommitTs(): bigint {
    return this.#lastCommitTs;
  }

  /** True between `fence()` and `unfence()`: this node may issue. */
  get fenced(): boolean {
    return this.#fenced;
  }

  /** Records an applied ceiling (apply of `0x02`, open, snapshot restore). */
  observeCeiling(ceiling: bigint): void {
    if (ceiling > this.#appliedCeiling) this.#appliedCeiling = ceiling;
  }

  /** Records an applied commit timestamp. */
  observeCommit(ts: bigint): void {
    if (ts > this.#lastCommitTs) this.#lastCommitTs = ts;
  }

  /**
   * Called by a new leader once every entry committed before its term is
   * applied: from now on it issues only above everything earlier leaders
   * could have issued or committed.
   */
  fence(): void {
    const afterCommits = this.#lastCommitTs + 1n;
    this.#floor = this.#appliedCeiling > afterCommits ? this.#appliedCeiling : afterCommits;
    if (this.#lastIssued >= this.#floor) this.#floor = this.#lastIssued + 1n;
    this.#fenced = true;
  }

  /** Called when this node stops being leader. */
  unfence(): void {
    this.#fenced = false;
  }

  /** The ceiling value a leader should propose next (always above the floor). */
  nextCeiling(): bigint {
    const fromClock = packHlc(Math.min(this.#now() + this.#leadMs, HLC_MAX_PHYSICAL_MS));
    const fromFloor = this.#base() + packHlc(this.#leadMs);
    return fromClock > fromFloor ? fromClock : fromFloor;
  }

  /** True when the leader should propose a new ceiling now. */
  needsRenewal(): boolean {
    if (!this.#fenced) return false;
    const horizon = packHlc(Math.min(this.#now() + this.#renewMarginMs, HLC_MAX_PHYSICAL_MS));
    const next = this.#candidate();
    return this.#appliedCeiling <= (horizon > next ? horizon : next);
  }

  /**
   * Issues a timestamp strictly above every one issued before (here or by an
   * earlier leader) and strictly below the applied ceiling, or undefined when
   * the ceiling is exhausted (propose `nextCeiling()` and wait for its apply).
   * Throws if the node has not fenced.
   */
  issue(): bigint | undefined {
    if (!this.#fenced) throw new Error('HybridClock.issue before fence(): only a fenced leader issues timestamps');
    const ts = this.#candidate();
    if (ts >= this.#appliedCeiling) return undefined;
    this.#lastIssued = ts;
    return ts;
  }

  #base(): bigint {
    const next = this.#lastIssued + 1n;
    return this.#floor > next ? this.#floor : next;
  }

  #candidate(): bigint {
    const base = this.#base();
    const wall = packHlc(Math.min(this.#now(), HLC_MAX_PHYSICAL_MS));
    return wall > base ? wall : base;
  }
}
