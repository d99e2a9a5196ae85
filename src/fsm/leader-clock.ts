// The leader's side of the replicated HLC ceiling (hlc.ts): arming after an
// election, stamping proposals, and renewing the ceiling ahead of use.
//
// `propose` must resolve only once the entry has been applied on this node
// (that is how the Raft driver resolves proposals), and reject if it cannot
// be committed (lost leadership, dropped). Arming is two entries:
//   1. a barrier ceiling entry: once it has applied here, every entry
//      committed before this term has applied too (log order), so the
//      applied ceiling covers everything earlier leaders could issue;
//   2. `fence()`, then a ceiling above the new floor; timestamps are issued
//      once it has applied.
// A renewal is proposed whenever the applied ceiling comes within the renew
// margin, so a busy leader normally never waits for one.

import { sealError } from '../errors/index.js';
import type { HybridClock } from './hlc.js';
import { encodeCeilingPayload } from './payload.js';

export type ProposeApplied = (payload: Uint8Array) => Promise<unknown>;

export class LeaderClock {
  readonly #clock: HybridClock;
  readonly #propose: ProposeApplied;
  // Bumped on every leadership change, so stale arming and renewals stop.
  #generation = 0;
  #ready = false;
  #renewal: Promise<void> | undefined;

  constructor(clock: HybridClock, propose: ProposeApplied) {
    this.#clock = clock;
    this.#propose = propose;
  }

  /** True once this leader may stamp proposals. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Arms the clock for a new term; rejects if leadership is lost meanwhile. */
  async becomeLeader(): Promise<void> {
    const generation = ++this.#generation;
    this.#ready = false;
    this.#clock.unfence();
    this.#renewal = undefined;
    await this.#propose(encodeCeilingPayload(this.#clock.appliedCeiling));
    this.#checkGeneration(generation);
    this.#clock.fence();
    await this.#propose(encodeCeilingPayload(this.#clock.nextCeiling()));
    this.#checkGeneration(generation);
    this.#ready = true;
  }

  /** Stops stamping (leadership lost or node stopping). */
  stepDown(): void {
    this.#generation += 1;
    this.#ready = false;
    this.#renewal = undefined;
    this.#clock.unfence();
  }

  /** A timestamp for a proposal, waiting for a ceiling renewal if needed. */
  async timestamp(): Promise<bigint> {
    for (;;) {
      if (!this.#ready) throw sealError('ErrNotLeader', 'this node is not an armed leader');
      this.maintain();
      const ts = this.#clock.issue();
      if (ts !== undefined) return ts;
      await (this.#renewal ?? this.#renew());
    }
  }

  /** Proposes a ceiling renewal if one is due and none is in flight. */
  maintain(): void {
    if (this.#ready && this.#renewal === undefined && this.#clock.needsRenewal()) void this.#renew().catch(() => undefined);
  }

  #renew(): Promise<void> {
    const generation = this.#generation;
    const renewal = this.#propose(encodeCeilingPayload(this.#clock.nextCeiling())).then(
      () => {
        if (this.#renewal === renewal) this.#renewal = undefined;
        this.#checkGeneration(generation);
      },
      (err: unknown) => {
        if (this.#renewal === renewal) this.#renewal = undefined;
        throw err;
      },
    );
    this.#renewal = renewal;
    return renewal;
  }

  #checkGeneration(generation: number): void {
    if (generation !== this.#generation) throw sealError('ErrNotLeader', 'leadership changed while arming the clock');
  }
}
