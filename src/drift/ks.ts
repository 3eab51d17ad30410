/**
 * Two-sample Kolmogorov-Smirnov test per feature: statistic D = max |F_ref - F_cur| and the
 * two-sided p-value with the semantics of scipy.stats.ks_2samp (method 'auto': exact when
 * max(n1, n2) <= 10000, else kstwo.sf(D, round(n1 n2 / (n1 + n2)))). Ties are allowed (D is exact
 * for tied data; the p-value assumes continuous data, as SciPy). NaN is rejected with a RangeError
 * naming the row and column; +-Infinity are ordinary extreme values; -0 equals +0.
 */
import { typeError, withCallerStack } from '../errors.js';
import { native, type NativeDriftReport } from '../native.js';
import { type Device, type MatrixInput, isInt, optDevice, readOptions } from '../validate.js';
import { type KsMethod, optMethod, toPair } from './inputs.js';
import { rangeError } from '../errors.js';
import { limits } from '../limits.js';

export interface KsTestOptions {
  /** 'auto' (default), 'exact' or 'asymp', as scipy.stats.ks_2samp's `method`. */
  method?: KsMethod;
  /** 'auto' (default: CUDA when a GPU is usable), 'cpu', or 'cuda'. */
  device?: Device;
}

export interface KsTestResult {
  features: number;
  referenceRows: number;
  currentRows: number;
  /** Per feature: D. */
  statistic: Float64Array;
  /** Per feature: two-sided p-value. */
  pValue: Float64Array;
  /** Per feature: +1 when the largest gap has F_ref above F_cur, else -1 (SciPy's statistic_sign). */
  sign: Int8Array;
  /** Per feature: the method used ('exact' may fall back to 'asymp' where SciPy's does). */
  method: Array<'exact' | 'asymp'>;
}

function request(reference: unknown, current: unknown, options: unknown) {
  const o = readOptions(options, 'options', ['method', 'device']);
  const { reference: r, current: c } = toPair(reference, current);
  const opts = { ks: true, bins: 0, method: optMethod(o.method), epsilon: 1e-4, correction: 'none' as const, alpha: 0.05, device: optDevice(o.device) };
  return { r, c, opts };
}

function result(n: NativeDriftReport): KsTestResult {
  return {
    features: n.features,
    referenceRows: n.referenceRows,
    currentRows: n.currentRows,
    statistic: n.statistic,
    pValue: n.pValue,
    sign: n.sign,
    method: n.method.map((m) => (m === 'exact' ? 'exact' : 'asymp')),
  };
}

/**
 * KS test of every feature (column) of `current` against the same feature of `reference`.
 * Per-feature sorting runs natively (parallel over features; CUDA with `device`).
 *
 * @example
 * const r = await ksTest(reference, current);
 * r.statistic[0]; r.pValue[0];
 */
export function ksTest(reference: MatrixInput, current: MatrixInput, options?: KsTestOptions): Promise<KsTestResult> {
  return withCallerStack(async () => {
    const { r, c, opts } = request(reference, current, options);
    return result(await native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts, true));
  });
}

/** Synchronous {@link ksTest}. */
export function ksTestSync(reference: MatrixInput, current: MatrixInput, options?: KsTestOptions): KsTestResult {
  const { r, c, opts } = request(reference, current, options);
  return result(native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts));
}

export interface KsPValueResult {
  pValue: number;
  /** The statistic as used: the exact method rounds it onto the lattice h / lcm(n1, n2), as SciPy. */
  statistic: number;
  method: 'exact' | 'asymp';
}

/**
 * The two-sided p-value of a two-sample KS statistic for sample sizes n1 and n2 (what
 * scipy.stats.ks_2samp computes from its D).
 *
 * @example
 * ksPValue(0.3, 100, 120).pValue; // 7.9e-5 (exact)
 */
export function ksPValue(statistic: number, n1: number, n2: number, options?: { method?: KsMethod }): KsPValueResult {
  if (typeof statistic !== 'number') throw typeError('statistic: expected a number');
  if (!(statistic >= 0 && statistic <= 1)) throw rangeError(`statistic: expected a number in [0, 1], got ${statistic}`);
  for (const [v, name] of [[n1, 'n1'], [n2, 'n2']] as const) {
    if (typeof v !== 'number') throw typeError(`${name}: expected an integer`);
    if (!isInt(v) || v < 1 || v > limits().maxSampleRows) throw rangeError(`${name}: expected a sample size in [1, ${limits().maxSampleRows}], got ${v}`);
  }
  const o = readOptions(options, 'options', ['method']);
  return native().driftKsPValue(statistic, n1, n2, optMethod(o.method));
}
