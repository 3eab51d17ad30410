/**
 * Summaries of a distribution of per-row values: mean, quantiles and an equal-width histogram.
 * Quantiles interpolate linearly between order statistics (Hyndman-Fan type 7, the default of
 * numpy.quantile and R).
 */

export interface Distribution {
  mean: number;
  min: number;
  max: number;
  /** Quantiles at 0.1, 0.25, 0.5, 0.75 and 0.9. */
  quantiles: { p10: number; p25: number; p50: number; p75: number; p90: number };
  histogram: Histogram;
}

export interface Histogram {
  /** bins + 1 edges; bin b is [edges[b], edges[b+1]) and the last bin includes its upper edge. */
  edges: Float64Array;
  counts: Float64Array;
}

/** Type-7 quantile of ascending-sorted values. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h), hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** Sorted float64 copy of the values. */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values).sort();
}

/** Equal-width histogram on [lo, hi] (values outside are clamped into the end bins). */
export function histogram(values: ArrayLike<number>, bins: number, lo: number, hi: number): Histogram {
  const edges = new Float64Array(bins + 1);
  for (let b = 0; b <= bins; b++) edges[b] = lo + ((hi - lo) * b) / bins;
  const counts = new Float64Array(bins);
  const width = hi - lo;
  for (let i = 0; i < values.length; i++) {
    const t = width > 0 ? ((values[i] - lo) / width) * bins : 0;
    counts[Math.min(bins - 1, Math.max(0, Math.floor(t)))]++;
  }
  return { edges, counts };
}

/** Mean, extremes, quantiles and a histogram on [lo, hi] of the values. */
export function distribution(values: ArrayLike<number>, bins: number, lo: number, hi: number): Distribution {
  const s = sortedCopy(values);
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  return {
    mean: s.length ? sum / s.length : NaN,
    min: s.length ? s[0] : NaN,
    max: s.length ? s[s.length - 1] : NaN,
    quantiles: {
      p10: quantileSorted(s, 0.1), p25: quantileSorted(s, 0.25), p50: quantileSorted(s, 0.5), p75: quantileSorted(s, 0.75), p90: quantileSorted(s, 0.9),
    },
    histogram: histogram(values, bins, lo, hi),
  };
}
