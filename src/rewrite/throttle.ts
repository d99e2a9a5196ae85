// `--rate` for sweeps: value bytes per second, as a pacing schedule. After n
// bytes the sweep may be no earlier than start + n / rate; a batch that
// comes early waits the difference. The clock is injected, so tests count
// bytes against (fake) time instead of measuring wall time.

export interface SweepClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms`, or early (without error) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: SweepClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
};

export class Throttle {
  readonly #bytesPerMs: number;
  readonly #clock: SweepClock;
  readonly #start: number;
  #bytes = 0;

  /** `rateMiBps` undefined or 0: no limit. */
  constructor(rateMiBps: number | undefined, clock: SweepClock) {
    if (rateMiBps !== undefined && (!Number.isFinite(rateMiBps) || rateMiBps < 0)) throw new RangeError(`rate must be a non-negative number of MiB/s, got ${rateMiBps}`);
    this.#bytesPerMs = rateMiBps === undefined || rateMiBps === 0 ? Infinity : (rateMiBps * 1024 * 1024) / 1000;
    this.#clock = clock;
    this.#start = clock.now();
  }

  /** Counts `bytes` and waits until the schedule allows them. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    this.#bytes += bytes;
    if (this.#bytesPerMs === Infinity) return;
    const due = this.#start + this.#bytes / this.#bytesPerMs;
    const wait = due - this.#clock.now();
    if (wait > 0) await this.#clock.sleep(wait, signal);
  }
}
