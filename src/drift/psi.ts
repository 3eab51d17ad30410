/**
 * Population stability index per feature. With B bins (default 10) the cut points are the
 * reference's inverted-CDF quantiles (the order statistic of rank ceil(k n1 / B), k = 1..B-1),
 * bins are right-closed: (-Inf, c_1], (c_1, c_2], ..., (c_{B-1}, +Inf), and
 * PSI = sum_b (q_b - p_b) ln(q_b / p_b) over the reference (p) and current (q) shares, where a
 * share of 0 is replaced by `epsilon` (default 1e-4; a bin empty in both samples adds 0). Tied
 * reference values repeat cut points and leave empty bins. Common reading: < 0.1 stable,
 * 0.1-0.25 moderate shift, > 0.25 major shift.
 */
import { withCallerStack } from '../errors.js';
import { native, type NativeDriftReport } from '../native.js';
import { type Device, type MatrixInput, optDevice, readOptions } from '../validate.js';
import { optBins, optEpsilon, toPair } from './inputs.js';

export interface PsiOptions {
  /** Quantile bins of the reference (default 10). */
  bins?: number;
  /** Replaces a zero share (default 1e-4), in (0, 1]. */
  epsilon?: number;
  device?: Device;
}

export interface PsiResult {
  features: number;
  referenceRows: number;
  currentRows: number;
  bins: number;
  /** Per feature. */
  psi: Float64Array;
  /** features x (bins - 1) cut points, row-major. */
  cutPoints: Float32Array;
  /** features x bins counts, row-major. */
  referenceCounts: Float64Array;
  currentCounts: Float64Array;
}

function request(reference: unknown, current: unknown, options: unknown) {
  const o = readOptions(options, 'options', ['bins', 'epsilon', 'device']);
  const { reference: r, current: c } = toPair(reference, current);
  const opts = { ks: false, bins: optBins(o.bins), method: 'auto' as const, epsilon: optEpsilon(o.epsilon), correction: 'none' as const, alpha: 0.05, device: optDevice(o.device) };
  return { r, c, opts };
}

function result(n: NativeDriftReport): PsiResult {
  return {
    features: n.features,
    referenceRows: n.referenceRows,
    currentRows: n.currentRows,
    bins: n.psiBins,
    psi: n.psi,
    cutPoints: n.psiEdges,
    referenceCounts: n.psiReferenceCounts,
    currentCounts: n.psiCurrentCounts,
  };
}

/**
 * PSI of every feature of `current` against `reference`.
 *
 * @example
 * const r = await psi(reference, current, { bins: 10 });
 * r.psi[0]; // feature 0's PSI
 */
export function psi(reference: MatrixInput, current: MatrixInput, options?: PsiOptions): Promise<PsiResult> {
  return withCallerStack(async () => {
    const { r, c, opts } = request(reference, current, options);
    return result(await native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts, true));
  });
}

/** Synchronous {@link psi}. */
export function psiSync(reference: MatrixInput, current: MatrixInput, options?: PsiOptions): PsiResult {
  const { r, c, opts } = request(reference, current, options);
  return result(native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts));
}
