/**
 * Drift summary: per feature the KS statistic and p-value, the corrected p-value across features,
 * PSI and a drifted flag at `alpha`, most severe first. One native pass computes both tests.
 */
import { withCallerStack } from '../errors.js';
import { native } from '../native.js';
import { type Device, type MatrixInput, optDevice, readOptions } from '../validate.js';
import {
  type Correction,
  type DriftReport,
  type KsMethod,
  optAlpha,
  optBins,
  optCorrection,
  optEpsilon,
  optFeatureNames,
  optMethod,
  toPair,
  toReport,
} from './inputs.js';

export interface DriftReportOptions {
  /** Significance level of the drifted flag on the adjusted p-value (default 0.05). */
  alpha?: number;
  /** Correction across features (default 'bh'). */
  correction?: Correction;
  /** KS p-value method (default 'auto'). */
  method?: KsMethod;
  /** PSI bins (default 10). */
  bins?: number;
  /** PSI's replacement for a zero share (default 1e-4). */
  epsilon?: number;
  /** One name per feature, copied into the report. */
  featureNames?: readonly string[];
  device?: Device;
}

function request(reference: unknown, current: unknown, options: unknown) {
  const o = readOptions(options, 'options', ['alpha', 'correction', 'method', 'bins', 'epsilon', 'featureNames', 'device']);
  const { reference: r, current: c } = toPair(reference, current);
  const opts = {
    ks: true,
    bins: optBins(o.bins),
    method: optMethod(o.method),
    epsilon: optEpsilon(o.epsilon),
    correction: optCorrection(o.correction),
    alpha: optAlpha(o.alpha),
    device: optDevice(o.device),
  };
  const names = optFeatureNames(o.featureNames, r.cols);
  return { r, c, opts, names };
}

/**
 * Compares every feature of `current` with `reference` and ranks the features by severity.
 *
 * @example
 * const report = await driftReport(reference, current, { alpha: 0.01, featureNames });
 * for (const f of report.features.filter((f) => f.drifted)) console.log(f.name, f.statistic, f.adjustedPValue, f.psi);
 */
export function driftReport(reference: MatrixInput, current: MatrixInput, options?: DriftReportOptions): Promise<DriftReport> {
  return withCallerStack(async () => {
    const { r, c, opts, names } = request(reference, current, options);
    return toReport(await native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts, true), { ...opts, names });
  });
}

/** Synchronous {@link driftReport}. */
export function driftReportSync(reference: MatrixInput, current: MatrixInput, options?: DriftReportOptions): DriftReport {
  const { r, c, opts, names } = request(reference, current, options);
  return toReport(native().driftCompare(r.data, r.rows, c.data, c.rows, r.cols, opts), { ...opts, names });
}
