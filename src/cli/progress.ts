// Progress arithmetic shared by the rewrite views (offline: one sweep,
// online: one line per member): how far a sweep is and its bar.

/** Share done, 0..1: 1 once done, 0 while the total is unknown. */
export function progressFraction(p: { scanned?: number; totalEstimate?: number } | null | undefined, done: boolean): number {
  if (done) return 1;
  if (p?.totalEstimate === undefined || p.totalEstimate === 0) return 0;
  return Math.min(1, (p.scanned ?? 0) / p.totalEstimate);
}

/** `[#####.....]` of `width` cells for a fraction 0..1. */
export function progressBar(fraction: number, width: number): string {
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}
