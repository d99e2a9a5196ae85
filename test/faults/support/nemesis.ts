// The seeded fault scheduler of the cluster scenarios: one fault at a time
// on a FaultCluster — SIGKILL and restart, SIGSTOP and SIGCONT, a node
// isolated from every peer, one directed link cut (bytes held or dropped,
// streams resumed or reset at the heal), every link of a node delayed —
// each held for a seeded time, then undone, with a seeded gap
// before the next. At most one voter is faulty at a time, so a majority
// always serves (SPEC §13: any minority).
//
// The seed: SEALKV_FAULT_SEED=n, else a random one; `faultSeed` prints it
// with the command that replays the scenario. A seed fixes the schedule —
// which fault, on which node (by role), when and for how long, relative to
// the scenario's start — not the processes' own timing, so a replay runs
// the same faults at the same moments against a cluster that may
// interleave differently.

import { seededRandom } from '../../../src/raft/index.js';
import { sleep, type Member } from '../../support/encrypted-cluster.js';
import type { FaultCluster } from './fault-cluster.js';
import type { CutMode, HealMode } from './link-proxy.js';

export type FaultKind = 'kill' | 'pause' | 'isolate' | 'one-way' | 'delay';

export const ALL_FAULTS: readonly FaultKind[] = ['kill', 'pause', 'isolate', 'one-way', 'delay'];

/** SEALKV_FAULT_SOAK=1: more seeds and longer runs. */
export const SOAK = process.env.SEALKV_FAULT_SOAK === '1';

/** A seeded generator with the few draws the scenarios need. */
export class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = seededRandom(seed);
  }

  float(): number {
    return this.#next();
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#next() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from nothing');
    return items[Math.floor(this.#next() * items.length)]!;
  }
}

/**
 * The seeds a scenario runs: SEALKV_FAULT_SEED alone when set, else one
 * random seed (SEALKV_FAULT_SOAK=1: `soakSeeds` of them).
 */
export function faultSeeds(soakSeeds = 4): number[] {
  const fixed = process.env.SEALKV_FAULT_SEED;
  if (fixed !== undefined && fixed !== '') {
    const seed = Number(fixed);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`SEALKV_FAULT_SEED: "${fixed}" is not a non-negative integer`);
    return [seed];
  }
  return Array.from({ length: SOAK ? soakSeeds : 1 }, () => Math.floor(Math.random() * 2 ** 31));
}

/**
 * Prints the seed of a scenario run and how to replay it; returns its
 * generator (seeded with `seed + stream`, for scenarios that share a seed).
 */
export function faultSeed(seed: number, file: string, scenario: string, stream = 0): Rng {
  console.log(`fault seed ${seed} for "${scenario}" (replay: SEALKV_FAULT_SEED=${seed} npx vitest run ${file} -t "${scenario}")`);
  return new Rng(seed + stream);
}

export interface NemesisOptions {
  kinds?: readonly FaultKind[];
  /** Upper bound on faults (the loop also ends at stop()). */
  maxFaults?: number;
  /** How long a fault is held, [min, max] ms. */
  holdMs?: [number, number];
  /** Quiet time between faults, [min, max] ms. */
  gapMs?: [number, number];
  /** Probability that the target is the leader of the moment (else a random voter). */
  leaderBias?: number;
  /** How a killed node comes back (default: the same start flags); a scenario that changes them (a new KEK) says how. */
  restart?: (m: Member) => Promise<void>;
}

interface LinkFault {
  cut: CutMode;
  heal: HealMode;
}

/** A fault in progress: what was done, and how to undo it. */
interface Injected {
  what: string;
  undo: () => Promise<void>;
}

export class Nemesis {
  /** Faults injected, by kind. */
  readonly counts: Record<FaultKind, number> = { kill: 0, pause: 0, isolate: 0, 'one-way': 0, delay: 0 };
  /** One line per fault (time from start, what), for failure messages. */
  readonly log: string[] = [];
  /** Things that went wrong while injecting or undoing (e.g. a node that would not restart): anomalies. */
  readonly problems: string[] = [];
  /** When each fault was held (Date.now() times), once undone. */
  readonly windows: { what: string; from: number; to: number }[] = [];
  readonly #fc: FaultCluster;
  readonly #rng: Rng;
  readonly #options: Required<NemesisOptions>;
  #stopping = false;
  #running: Promise<void> | undefined;
  /** Set while strike() waits for the fault in progress to end early. */
  #preempt = false;
  /** One fault at a time: each waits for the one before. */
  #turn: Promise<void> = Promise.resolve();
  #t0 = 0;

  constructor(fc: FaultCluster, rng: Rng, options: NemesisOptions = {}) {
    this.#fc = fc;
    this.#rng = rng;
    this.#options = { kinds: ALL_FAULTS, maxFaults: 1000, holdMs: [300, 2500], gapMs: [200, 1500], leaderBias: 0.5, restart: (m) => fc.restart(m), ...options };
  }

  get faults(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }

  start(): void {
    if (this.#running !== undefined) throw new Error('nemesis already running');
    if (this.#t0 !== 0) throw new Error('a nemesis runs once');
    this.#stopping = false;
    this.#t0 = Date.now();
    this.#running = this.#loop();
  }

  /** Ends the loop after undoing the fault in progress. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    this.#running = undefined;
    // A strike in progress ends too.
    await this.#exclusive(async () => undefined);
  }

  /** Sleeps `ms`, waking early when stopping or preempted (bounded: 50 ms steps). */
  async #hold(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!this.#stopping && !this.#preempt && Date.now() < end) await sleep(Math.min(50, end - Date.now()));
  }

  async #loop(): Promise<void> {
    const o = this.#options;
    for (let n = 0; n < o.maxFaults && !this.#stopping; n++) {
      await this.#hold(this.#rng.int(o.gapMs[0], o.gapMs[1]));
      if (this.#stopping) break;
      const kind = this.#rng.pick(o.kinds);
      const wantLeader = this.#rng.float() < o.leaderBias;
      const holdMs = this.#rng.int(o.holdMs[0], o.holdMs[1]);
      // Drawn up front so the schedule does not depend on which branch runs.
      const detail = this.#rng.float();
      const side = this.#rng.float();
      const links = this.#links(this.#rng);
      await this.#exclusive(() => this.#one(kind, wantLeader, holdMs, detail, side, links));
    }
  }

  /**
   * Ends the fault in progress (if any) and injects `kind` now, on the
   * leader of the moment when `wantLeader`, for `holdMs`; resolves once it
   * is undone. For a scenario that needs a fault at a precise moment (e.g.
   * right as a cutover is sent); `draw` supplies the seeded choices.
   */
  async strike(kind: FaultKind, wantLeader: boolean, holdMs: number, draw: Rng): Promise<void> {
    const detail = draw.float();
    const side = draw.float();
    const links = this.#links(draw);
    this.#preempt = true;
    await this.#exclusive(async () => {
      this.#preempt = false;
      await this.#one(kind, wantLeader, holdMs, detail, side, links);
    });
  }

  /** Faults whose hold overlapped the interval [from, to] (Date.now() times). */
  overlapping(from: number, to: number): string[] {
    return this.windows.filter((w) => w.from <= to && w.to >= from).map((w) => w.what);
  }

  async #exclusive(run: () => Promise<void>): Promise<void> {
    const before = this.#turn;
    let release = (): void => undefined;
    this.#turn = new Promise<void>((resolve) => (release = resolve));
    await before;
    try {
      await run();
    } finally {
      release();
    }
  }

  /** How a link fault cuts and heals: bytes held or dropped, held streams resumed or reset. */
  #links(draw: Rng): LinkFault {
    return { cut: draw.float() < 0.5 ? 'hold' : 'drop', heal: draw.float() < 0.5 ? 'resume' : 'reset' };
  }

  async #one(kind: FaultKind, wantLeader: boolean, holdMs: number, detail: number, side: number, links: LinkFault): Promise<void> {
    let injected: Injected;
    try {
      const target = await this.#target(wantLeader, detail);
      if (target === undefined) return;
      injected = await this.#inject(kind, target, detail, side, links);
    } catch (err) {
      this.problems.push(`injecting ${kind}: ${String(err)}`);
      return;
    }
    this.counts[kind]++;
    const from = Date.now();
    this.log.push(`+${from - this.#t0} ms ${injected.what} for ${holdMs} ms`);
    await this.#hold(holdMs);
    try {
      await injected.undo();
    } catch (err) {
      this.problems.push(`undoing ${injected.what}: ${String(err)}`);
    }
    this.windows.push({ what: injected.what, from, to: Date.now() });
  }

  /** The leader of the moment (when wanted and known), else a running voter picked by `detail`. */
  async #target(wantLeader: boolean, detail: number): Promise<Member | undefined> {
    const c = this.#fc.cluster;
    const voters = c.voters.filter((m) => m.process.running);
    if (voters.length === 0) return undefined;
    if (wantLeader) {
      const leader = await c.leader(3_000).catch(() => undefined);
      if (leader !== undefined && !leader.learner) return leader;
    }
    return voters[Math.floor(detail * voters.length)];
  }

  async #inject(kind: FaultKind, m: Member, detail: number, side: number, links: LinkFault): Promise<Injected> {
    const fc = this.#fc;
    switch (kind) {
      case 'kill':
        await fc.kill(m);
        return {
          what: `SIGKILL ${m.id}`,
          undo: () => this.#options.restart(m),
        };
      case 'pause':
        fc.pause(m);
        return { what: `SIGSTOP ${m.id}`, undo: async () => fc.resume(m) };
      case 'isolate':
        fc.isolate(m.id, links.cut);
        return { what: `isolate ${m.id} (${links.cut}, heal: ${links.heal})`, undo: async () => fc.healAll(links.heal) };
      case 'one-way': {
        const others = fc.cluster.voters.filter((o) => o !== m);
        const other = others[Math.floor(detail * others.length)]!;
        // Half the time the target stops hearing a peer, half the time it stops being heard.
        const [from, to] = side < 0.5 ? [m.id, other.id] : [other.id, m.id];
        fc.cut(from, to, links.cut);
        return { what: `cut ${from}→${to} (${links.cut}, heal: ${links.heal})`, undo: async () => fc.healAll(links.heal) };
      }
      case 'delay': {
        const ms = 20 + Math.floor(detail * 180);
        for (const p of fc.linksOf(m.id)) p.setDelay(ms);
        return { what: `delay every link of ${m.id} by ${ms} ms`, undo: async () => fc.healAll() };
      }
    }
  }
}
