// A log-bucketed latency histogram (the idea of HdrHistogram, without the
// dependency): values in microseconds land in buckets whose width is 1/128 of
// their value, so every percentile it reports is within 0.8% of the exact
// one, whatever the range. Histograms of the rounds of one case merge by
// adding counts.

const BUCKETS_PER_DOUBLING = 128;
const GROWTH = Math.log2(1 + 1 / BUCKETS_PER_DOUBLING);

export class LatencyHistogram {
  readonly #counts = new Map<number, number>();
  #total = 0;
  #max = 0;

  get count(): number {
    return this.#total;
  }

  get maxUs(): number {
    return this.#max;
  }

  /** Records one latency in microseconds (values below 1 µs count as 1 µs). */
  record(us: number): void {
    const bucket = Math.floor(Math.log2(Math.max(us, 1)) / GROWTH);
    this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + 1);
    this.#total++;
    if (us > this.#max) this.#max = us;
  }

  merge(other: LatencyHistogram): void {
    for (const [bucket, n] of other.#counts) this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + n);
    this.#total += other.#total;
    this.#max = Math.max(this.#max, other.#max);
  }

  /** The latency (µs, bucket midpoint) at or below which `p` percent of the recorded values fall. */
  percentile(p: number): number {
    if (this.#total === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#total));
    let seen = 0;
    for (const bucket of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(bucket)!;
      if (seen >= rank) return Math.min(this.#max, 2 ** ((bucket + 0.5) * GROWTH));
    }
    return this.#max;
  }
}
