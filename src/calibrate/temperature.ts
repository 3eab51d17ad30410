/**
 * Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted by minimising the validation NLL
 * of softmax(z / T) over logits z, or of p^(1/T) renormalised = softmax(log p / T) over the
 * probabilities p of a mixture. The objective and its derivatives in log T are one native pass
 * each (calmoe/temperature.h); the 1-D search is {@link solveLogTemperature}.
 *
 * Plain names return promises and run every pass off the event loop; `*Sync` variants block.
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import { calibration, calibrationSync, type CalibrationReport } from '../metrics/calibration.js';
import { native, type NativeTemperatureEval, type NativeTemperatureOptions } from '../native.js';
import {
  type Device,
  type LabelsInput,
  type Matrix,
  type MatrixInput,
  type VectorInput,
  optChoice,
  optDevice,
  optInt,
  optNumber,
  readOptions,
  toLabels,
  toMatrix,
  toVector,
} from '../validate.js';
import { type Evaluation, type SolverOptions, solveAsync, solveSync } from './log-temperature-solver.js';
import { limits } from '../limits.js';

export type TemperatureInput = 'logits' | 'probabilities';

export interface TemperatureObjectiveOptions {
  /** 'logits' (default): softmax(z / T); 'probabilities': p^(1/T) renormalised (rows must sum to 1). */
  input?: TemperatureInput;
  /** Per-row weights (finite, >= 0); a row of weight 0 is skipped unread. */
  weights?: VectorInput;
  /** Allowed |row sum - 1| for probabilities (default 1e-3). */
  sumTolerance?: number;
  device?: Device;
}

/** The weighted mean NLL at one temperature and its derivatives in log T. */
export interface TemperatureObjective {
  nll: number;
  /** d NLL / d log T */
  gradient: number;
  /** d^2 NLL / d (log T)^2 */
  curvature: number;
  /** Rows with a positive weight. */
  rows: number;
  /** Sum of the weights (the row count when unweighted). */
  weight: number;
}

export interface TemperatureFitOptions extends TemperatureObjectiveOptions {
  /** Starting temperature (default 1; clamped into [min, max]). The result does not depend on it. */
  init?: number;
  /** Smallest temperature allowed (default 0.01). */
  min?: number;
  /** Largest temperature allowed (default 100). */
  max?: number;
  /** Stop when |d NLL / d log T| <= tolerance (default 1e-9). */
  tolerance?: number;
  /** Most objective evaluations (passes over the data), the T = 1 baseline included (default 100). */
  maxIterations?: number;
  /** Bins of the ECE reported before and after (default 15, right-closed). */
  bins?: number;
}

export interface TemperatureFit {
  temperature: number;
  /** Weighted mean NLL (exact, float64) at T = 1 and at the fitted T. */
  nllBefore: number;
  nllAfter: number;
  /**
   * Top-label ECE before and after scaling (equal-width `bins`, over the rows with a positive
   * weight, unweighted), from the package's calibration metrics.
   */
  eceBefore: number;
  eceAfter: number;
  /** d NLL / d log T at the fitted T (about 0 unless the fit stopped at a bound). */
  gradient: number;
  /** Objective evaluations (passes over the data), the T = 1 baseline included. */
  iterations: number;
  converged: boolean;
  /** 'min' or 'max' when the NLL still decreases beyond that bound (e.g. separable data). */
  atBound: 'min' | 'max' | null;
  rows: number;
  weight: number;
}

const OBJECTIVE_OPTIONS = ['input', 'weights', 'sumTolerance', 'device'] as const;
const FIT_OPTIONS = [...OBJECTIVE_OPTIONS, 'init', 'min', 'max', 'tolerance', 'maxIterations', 'bins'] as const;

/** Validated arguments of one native temperature call. */
export interface TemperatureView {
  scores: Float32Array;
  rows: number;
  cols: number;
  labels: Int32Array;
  options: NativeTemperatureOptions;
}

function commonOptions(o: Partial<Record<string, unknown>>, rows: number) {
  const input = optChoice(o.input, 'input', 'logits', ['logits', 'probabilities'] as const);
  const sumTolerance = optNumber(o.sumTolerance, 'sumTolerance', 1e-3, 0, 1);
  const device = optDevice(o.device);
  let weights: Float32Array | undefined;
  if (o.weights !== undefined) {
    weights = toVector(o.weights, 'weights');
    if (weights.length !== rows) throw rangeError(`weights: expected ${rows} weights (one per row), got ${weights.length}`);
  }
  return { input, sumTolerance, device, weights };
}

function objectiveRequest(scores: unknown, labels: unknown, options: unknown, known: readonly string[]) {
  const o = readOptions(options, 'options', known);
  const m = toMatrix(scores, 'scores');
  if (m.rows < 1) throw rangeError('scores: expected at least one row, got 0');
  const y = toLabels(labels, 'labels', m.rows);
  const c = commonOptions(o, m.rows);
  const view: TemperatureView = {
    scores: m.data, rows: m.rows, cols: m.cols, labels: y,
    options: { input: c.input, sumTolerance: c.sumTolerance, device: c.device, weights: c.weights },
  };
  return { o, m, y, c, view };
}

function checkTemperature(t: unknown): number {
  if (typeof t !== 'number') throw typeError(`temperature: expected a number, got ${typeof t}`);
  if (!(Number.isFinite(t) && t > 0)) throw rangeError(`temperature: expected a finite number > 0, got ${t}`);
  return t;
}

export function evalSync(v: TemperatureView, t: number): NativeTemperatureEval {
  return native().temperatureNll(v.scores, v.rows, v.cols, v.labels, t, v.options);
}

export function evalAsync(v: TemperatureView, t: number): Promise<NativeTemperatureEval> {
  return native().temperatureNll(v.scores, v.rows, v.cols, v.labels, t, v.options, true);
}

/** Adds evaluations of several views (in the given order) into the weighted means. */
export function means(parts: NativeTemperatureEval[]): Evaluation & { weight: number; rows: number } {
  let w = 0, nll = 0, d1 = 0, d2 = 0, rows = 0;
  for (const p of parts) {
    w += p.weight;
    nll += p.nll;
    d1 += p.d1;
    d2 += p.d2;
    rows += p.rows;
  }
  return { nll: nll / w, d1: d1 / w, d2: d2 / w, weight: w, rows };
}

function objective(e: NativeTemperatureEval): TemperatureObjective {
  const m = means([e]);
  if (!(m.weight > 0)) throw rangeError('weights: all zero (no row carries weight)');
  return { nll: m.nll, gradient: m.d1, curvature: m.d2, rows: m.rows, weight: m.weight };
}

/**
 * The weighted mean NLL of temperature-scaled scores at `temperature`, with its first two
 * derivatives in log T (one native pass; exact float64).
 *
 * @example
 * const { nll, gradient } = temperatureObjectiveSync(logits, labels, 1.5);
 */
export function temperatureObjectiveSync(scores: MatrixInput, labels: LabelsInput, temperature: number, options?: TemperatureObjectiveOptions): TemperatureObjective {
  const { view } = objectiveRequest(scores, labels, options, OBJECTIVE_OPTIONS);
  return objective(evalSync(view, checkTemperature(temperature)));
}

/** {@link temperatureObjectiveSync} off the event loop. */
export function temperatureObjective(scores: MatrixInput, labels: LabelsInput, temperature: number, options?: TemperatureObjectiveOptions): Promise<TemperatureObjective> {
  return withCallerStack(async () => {
    const { view } = objectiveRequest(scores, labels, options, OBJECTIVE_OPTIONS);
    return objective(await evalAsync(view, checkTemperature(temperature)));
  });
}

/** Solver bounds and stopping rule from the options (shared with per-expert fits). */
export function solverOptions(o: Partial<Record<string, unknown>>, defaults: { min: number; max: number }): SolverOptions {
  const min = optNumber(o.min, 'min', defaults.min, Number.MIN_VALUE, Number.MAX_VALUE);
  const max = optNumber(o.max, 'max', defaults.max, Number.MIN_VALUE, Number.MAX_VALUE);
  if (!(min < max)) throw rangeError(`min: ${min} must be below max = ${max}`);
  if (1 / min === Infinity) throw rangeError(`min: ${min} is too small (1/T overflows)`);
  const init = optNumber(o.init, 'init', 1, Number.MIN_VALUE, Number.MAX_VALUE);
  return {
    init,
    min,
    max,
    tolerance: optNumber(o.tolerance, 'tolerance', 1e-9, 0, 1),
    maxIterations: optInt(o.maxIterations, 'maxIterations', 100, 2, 10000),
  };
}

interface FitRequest {
  view: TemperatureView;
  solver: SolverOptions;
  bins: number;
  /** The scores of the rows with positive weight (all rows when unweighted), for the ECE. */
  eceScores: Matrix;
  eceLabels: Int32Array;
}

function fitRequest(scores: unknown, labels: unknown, options: unknown): FitRequest {
  const { o, m, y, c, view } = objectiveRequest(scores, labels, options, FIT_OPTIONS);
  const solver = solverOptions(o, { min: 0.01, max: 100 });
  const bins = optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins);
  let eceScores = m, eceLabels = y;
  if (c.weights) {
    const keep: number[] = [];
    for (let i = 0; i < m.rows; i++) if (c.weights[i] > 0) keep.push(i);
    if (keep.length === 0) throw rangeError('weights: all zero (no row carries weight)');
    if (keep.length < m.rows) {
      const data = new Float32Array(keep.length * m.cols);
      eceLabels = new Int32Array(keep.length);
      keep.forEach((i, r) => {
        data.set(m.data.subarray(i * m.cols, (i + 1) * m.cols), r * m.cols);
        eceLabels[r] = y[i];
      });
      eceScores = { data, rows: keep.length, cols: m.cols };
    }
  }
  return { view, solver, bins, eceScores, eceLabels };
}

function checkWeight(e: NativeTemperatureEval): Evaluation {
  const m = means([e]);
  if (!(m.weight > 0)) throw rangeError('weights: all zero (no row carries weight)');
  return m;
}

function result(s: ReturnType<typeof solveSync>, first: NativeTemperatureEval, before: CalibrationReport, after: CalibrationReport): TemperatureFit {
  return {
    temperature: s.temperature,
    nllBefore: s.baseline.nll,
    nllAfter: s.at.nll,
    eceBefore: before.ece,
    eceAfter: after.ece,
    gradient: s.at.d1,
    iterations: s.iterations,
    converged: s.converged,
    atBound: s.atBound,
    rows: first.rows,
    weight: first.weight,
  };
}

/**
 * Fits a temperature T > 0 minimising the (weighted) validation NLL: a safeguarded Newton search
 * in log T that converges from any start and stays in [min, max]; the NLL at the result is never
 * above its value at T = 1 (when 1 lies in [min, max]). Reports NLL and ECE before and after.
 *
 * @example
 * const fit = await fitTemperature(valLogits, valLabels);
 * const calibrated = await applyTemperature(testLogits, fit.temperature);
 * console.log(fit.temperature, fit.eceBefore, '->', fit.eceAfter);
 */
export function fitTemperatureSync(scores: MatrixInput, labels: LabelsInput, options?: TemperatureFitOptions): TemperatureFit {
  const r = fitRequest(scores, labels, options);
  let first: NativeTemperatureEval | undefined;
  const s = solveSync(r.solver, (t) => {
    const e = evalSync(r.view, t);
    first ??= e;
    return checkWeight(e);
  });
  const input = r.view.options.input;
  const before = calibrationSync(r.eceScores, r.eceLabels, { bins: r.bins, input, sumTolerance: r.view.options.sumTolerance, device: r.view.options.device });
  const scaled = applyTemperatureSync(r.eceScores, s.temperature, { input, sumTolerance: r.view.options.sumTolerance, device: r.view.options.device });
  const after = calibrationSync(scaled, r.eceLabels, { bins: r.bins, device: r.view.options.device });
  return result(s, first!, before, after);
}

/** {@link fitTemperatureSync} off the event loop (every pass over the data runs natively, async). */
export function fitTemperature(scores: MatrixInput, labels: LabelsInput, options?: TemperatureFitOptions): Promise<TemperatureFit> {
  return withCallerStack(async () => {
    const r = fitRequest(scores, labels, options);
    let first: NativeTemperatureEval | undefined;
    const s = await solveAsync(r.solver, async (t) => {
      const e = await evalAsync(r.view, t);
      first ??= e;
      return checkWeight(e);
    });
    const o = r.view.options;
    const before = await calibration(r.eceScores, r.eceLabels, { bins: r.bins, input: o.input, sumTolerance: o.sumTolerance, device: o.device });
    const scaled = await applyTemperature(r.eceScores, s.temperature, { input: o.input, sumTolerance: o.sumTolerance, device: o.device });
    const after = await calibration(scaled, r.eceLabels, { bins: r.bins, device: o.device });
    return result(s, first!, before, after);
  });
}

export interface ApplyTemperatureOptions {
  /** 'logits' (default) or 'probabilities' (rows must sum to 1; zeros stay zero). */
  input?: TemperatureInput;
  sumTolerance?: number;
  device?: Device;
}

function applyRequest(scores: unknown, temperature: unknown, options: unknown) {
  const o = readOptions(options, 'options', ['input', 'sumTolerance', 'device']);
  const m = toMatrix(scores, 'scores');
  if (m.rows < 1) throw rangeError('scores: expected at least one row, got 0');
  const t = checkTemperature(temperature);
  const opts: NativeTemperatureOptions = {
    input: optChoice(o.input, 'input', 'logits', ['logits', 'probabilities'] as const),
    sumTolerance: optNumber(o.sumTolerance, 'sumTolerance', 1e-3, 0, 1),
    device: optDevice(o.device),
  };
  return { m, t, opts };
}

/**
 * Temperature-scaled probabilities: softmax(z / T) of logits, or p^(1/T) renormalised of
 * probabilities (zeros stay zero). Returns a new rows x classes float32 matrix.
 *
 * @example
 * const probs = applyTemperatureSync(logits, 1.7);
 */
export function applyTemperatureSync(scores: MatrixInput, temperature: number, options?: ApplyTemperatureOptions): Matrix {
  const { m, t, opts } = applyRequest(scores, temperature, options);
  return { data: native().temperatureApply(m.data, m.rows, m.cols, t, opts), rows: m.rows, cols: m.cols };
}

/** {@link applyTemperatureSync} off the event loop. */
export function applyTemperature(scores: MatrixInput, temperature: number, options?: ApplyTemperatureOptions): Promise<Matrix> {
  return withCallerStack(async () => {
    const { m, t, opts } = applyRequest(scores, temperature, options);
    return { data: await native().temperatureApply(m.data, m.rows, m.cols, t, opts, true), rows: m.rows, cols: m.cols };
  });
}
