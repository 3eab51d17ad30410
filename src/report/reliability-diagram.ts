/**
 * Reliability-diagram data: per bin the mean confidence, the accuracy, the row count, the gap and
 * a confidence band for the accuracy (the Wilson score interval at a given level), from a
 * calibration report of the package's metrics (or its bins).
 */
import { rangeError, typeError } from '../errors.js';
import type { ReliabilityBins } from '../metrics/calibration.js';
import { wilsonInterval } from './wilson.js';

export interface ReliabilityBin {
  index: number;
  lower: number;
  upper: number;
  count: number;
  /** Mean confidence of the bin's rows (NaN when empty). */
  confidence: number;
  /** Share of correct rows (NaN when empty). */
  accuracy: number;
  /** accuracy - confidence: negative when over-confident. */
  gap: number;
  /** Wilson score interval of the accuracy at `level` (NaN when empty). */
  low: number;
  high: number;
}

export interface ReliabilityDiagram {
  bins: ReliabilityBin[];
  rows: number;
  /** Expected calibration error sum_b (n_b / N) |acc_b - conf_b|. */
  ece: number;
  /** Largest gap over non-empty bins. */
  mce: number;
  /** Overall accuracy over the bins' rows. */
  accuracy: number;
  /** Confidence level of the bands. */
  level: number;
}

/** A calibration report of the metrics, or anything with its `bins` (and optionally `ece`). */
export interface CalibrationLike {
  bins: ReliabilityBins;
  ece?: number;
}

export interface ReliabilityDiagramOptions {
  /** Confidence level of the per-bin Wilson interval (default 0.95). */
  level?: number;
}

function checkBins(b: unknown): ReliabilityBins {
  if (b === null || typeof b !== 'object') throw typeError('calibration.bins: expected the bins of a calibration report');
  const bins = b as Partial<ReliabilityBins>;
  const keys = ['lower', 'upper', 'count', 'meanConfidence', 'accuracy'] as const;
  for (const k of keys) {
    const v = bins[k];
    if (v === null || typeof v !== 'object' || typeof (v as ArrayLike<number>).length !== 'number')
      throw typeError(`calibration.bins.${k}: expected an array of numbers`);
  }
  const n = bins.count!.length;
  if (n < 1) throw rangeError('calibration.bins: expected at least one bin');
  for (const k of keys) if (bins[k]!.length !== n) throw rangeError(`calibration.bins.${k}: has ${bins[k]!.length} entries but count has ${n}`);
  for (let i = 0; i < n; i++) {
    const c = bins.count![i];
    if (!(Number.isInteger(c) && c >= 0)) throw rangeError(`calibration.bins.count[${i}] = ${c}: expected an integer >= 0`);
    if (c > 0) {
      const a = bins.accuracy![i], m = bins.meanConfidence![i];
      if (!(a >= 0 && a <= 1)) throw rangeError(`calibration.bins.accuracy[${i}] = ${a}: expected a number in [0, 1]`);
      if (!(m >= 0 && m <= 1)) throw rangeError(`calibration.bins.meanConfidence[${i}] = ${m}: expected a number in [0, 1]`);
    }
  }
  return bins as ReliabilityBins;
}

/**
 * Reliability-diagram data of a calibration report, with a Wilson band per bin.
 *
 * @example
 * const d = reliabilityDiagram(await metrics.calibration(probs, labels), { level: 0.9 });
 * d.bins.filter((b) => b.count).map((b) => [b.confidence, b.accuracy, b.low, b.high]);
 */
export function reliabilityDiagram(calibration: CalibrationLike, options?: ReliabilityDiagramOptions): ReliabilityDiagram {
  if (calibration === null || typeof calibration !== 'object') throw typeError('calibration: expected a calibration report (or an object with its bins)');
  if (options !== undefined && (options === null || typeof options !== 'object')) throw typeError('options: expected an object');
  for (const k of Object.keys(options ?? {})) if (k !== 'level') throw rangeError(`options: unknown option '${k}' (known: level)`);
  const level = options?.level ?? 0.95;
  if (typeof level !== 'number') throw typeError('level: expected a number');
  if (!(level > 0 && level < 1)) throw rangeError(`level: expected a number in (0, 1), got ${level}`);
  const b = checkBins(calibration.bins);
  const n = b.count.length;
  let rows = 0, correct = 0, gapSum = 0, mce = 0;
  const bins: ReliabilityBin[] = [];
  for (let i = 0; i < n; i++) {
    const count = b.count[i];
    const empty = count === 0;
    const confidence = empty ? NaN : b.meanConfidence[i];
    const accuracy = empty ? NaN : b.accuracy[i];
    const k = empty ? 0 : Math.round(accuracy * count);
    const ci = wilsonInterval(k, count, level);
    bins.push({ index: i, lower: b.lower[i], upper: b.upper[i], count, confidence, accuracy, gap: accuracy - confidence, low: ci.low, high: ci.high });
    if (!empty) {
      rows += count;
      correct += k;
      gapSum += count * Math.abs(accuracy - confidence);
      mce = Math.max(mce, Math.abs(accuracy - confidence));
    }
  }
  const ece = typeof calibration.ece === 'number' ? calibration.ece : rows ? gapSum / rows : NaN;
  return { bins, rows, ece, mce: rows ? mce : NaN, accuracy: rows ? correct / rows : NaN, level };
}
