/** The benchmarks' statistics. */

/** The value below which p percent of xs lie (the nearest rank). */
export function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The median (for an even count, the upper of the two middle values). */
export const median = (xs: number[]): number => percentile(xs, 50);
