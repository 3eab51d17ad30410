/**
 * Calibration metrics: histogram-binned ECE / MCE / RMSCE with reliability-diagram bins, plus
 * accuracy, NLL and Brier score from the same native pass. Definitions (bin edges included):
 * shared/DESIGN.md "Calibration metrics".
 *
 * Plain names return promises and run off the event loop; `*Sync` variants block (use them for
 * small inputs or inside worker threads).
 */
import { withCallerStack } from '../errors.js';
import { native, type NativeBins, type NativeCalibKind, type NativeSummary } from '../native.js';
import {
  type OptionOf,
  type Device,
  type LabelsInput,
  type MatrixInput,
  type VectorInput,
  optBool,
  optChoice,
  optDevice,
  optInt,
  optNumber,
  readOptions,
  toFlags,
  toLabels,
  toMatrix,
  toVector,
} from '../validate.js';
import { rangeError, typeError } from '../errors.js';
import { type WordStateJSON, wordsFromJSON, wordsToJSON } from '../word-state.js';
import { limits } from '../limits.js';

export type BinEdges = 'right-closed' | 'left-closed';
export type Binning = 'equal-width' | 'equal-mass';
export type ScoreInput = 'probabilities' | 'logits';

export interface CalibrationOptions {
  /** Number of bins (default 15). */
  bins?: number;
  /**
   * Equal-width bin edges (default 'right-closed', as Guo et al., sklearn and the paper's code:
   * bin = ceil(c*M) - 1; 'left-closed' as torchmetrics / netcal: floor(c*M)). c = 0 and c = 1
   * always land in the first and last bin.
   */
  edges?: BinEdges;
  /** 'equal-width' (default) or 'equal-mass' (adaptive: each bin holds N/M rows). */
  binning?: Binning;
  /** Whether scores are probabilities (default; rows must sum to 1) or logits (softmax first). */
  input?: ScoreInput;
  /** Allowed |row sum - 1| for probabilities (default 1e-3). */
  sumTolerance?: number;
  /**
   * 'auto' (default: the CPU -- one pass over host memory beats copying the rows to a GPU), 'cpu',
   * or 'cuda' (an error without a GPU).
   */
  device?: Device;
  /**
   * Per-row weights (importance weights for a shift; finite, in [0, 2^24], taken to 2^-32
   * resolution; equal-width bins, CPU only). Every metric becomes a weighted one: with W_b the
   * weight in bin b and W the total, acc_b and conf_b are weighted means, ECE =
   * sum_b (W_b / W) |acc_b - conf_b|, RMSCE = sqrt(sum_b (W_b / W) (acc_b - conf_b)^2), MCE = the
   * largest gap over bins with W_b > 0, accuracy / NLL / Brier weighted means. Rows of weight 0
   * are still validated but count for nothing (a bin with only such rows is empty); the weights
   * need not sum to 1 (scaling them all changes nothing); all weights 0 is a RangeError.
   */
  weights?: VectorInput;
}

/** Per-bin statistics for a reliability diagram. Empty bins have NaN confidence and accuracy. */
export interface ReliabilityBins {
  lower: Float64Array;
  upper: Float64Array;
  count: Float64Array;
  /** Total weight in the bin (= count without weights). */
  weight: Float64Array;
  meanConfidence: Float64Array;
  /** Share of correct predictions (binary mode: share of positives) in the bin. */
  accuracy: Float64Array;
}

export interface CalibrationReport {
  rows: number;
  /** Total weight of the rows (= rows without weights). */
  weight: number;
  /** Top-label accuracy (binary mode: prediction p > 0.5). */
  accuracy: number;
  /** Mean -log(max(p[y], 1e-12)); null when computed from (confidence, correct) pairs. */
  nll: number | null;
  /** Mean sum_j (p_j - [j = y])^2; null when computed from (confidence, correct) pairs. */
  brier: number | null;
  ece: number;
  mce: number;
  rmsce: number;
  bins: ReliabilityBins;
}

/** One group's slice of a {@link GroupCalibrationReport}; NaN metrics when the group is empty. */
export interface GroupStats {
  group: number;
  rows: number;
  /** Total weight of its rows (= rows without weights). */
  weight: number;
  /** Share of correct rows (binary mode: share of positives). */
  accuracy: number;
  ece: number;
  mce: number;
  rmsce: number;
  bins: ReliabilityBins;
}

export interface GroupCalibrationReport {
  /** All rows together (NLL and Brier are over all rows). */
  overall: CalibrationReport;
  groups: GroupStats[];
  /** The non-empty groups with the highest ECE and the lowest accuracy (null when all are empty). */
  worst: { ece: GroupStats | null; accuracy: GroupStats | null };
}

export interface GroupCalibrationOptions extends CalibrationOptions {
  /** Number of groups (default: the largest id + 1); ids must lie in [0, numGroups). */
  numGroups?: number;
}

export interface ClasswiseCalibrationReport {
  rows: number;
  /** Total weight of the rows (= rows without weights); each (row, class) pair weighs its row's weight. */
  weight: number;
  accuracy: number;
  nll: number;
  brier: number;
  /** Classwise ECE: the mean over classes of each class's ECE (Kull et al. 2019). */
  ece: number;
  mce: number;
  rmsce: number;
  classes: Array<{ ece: number; mce: number; rmsce: number; bins: ReliabilityBins }>;
}

const ROW_OPTIONS = ['bins', 'edges', 'binning', 'input', 'sumTolerance', 'device', 'weights'] as const;
const VEC_OPTIONS = ['bins', 'edges', 'binning', 'device', 'weights'] as const;

interface Parsed {
  bins: number;
  edges: BinEdges;
  binning: Binning;
  input: ScoreInput;
  sumTolerance: number;
  device: Device;
  /** Unchecked: rowWeights() validates them against the row count. */
  weights?: unknown;
}

function parse(options: unknown, known: readonly string[]): Parsed {
  const o = readOptions(options, 'options', known);
  return {
    weights: o.weights,
    bins: optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins),
    edges: optChoice(o.edges, 'edges', 'right-closed', ['right-closed', 'left-closed'] as const),
    binning: optChoice(o.binning, 'binning', 'equal-width', ['equal-width', 'equal-mass'] as const),
    input: optChoice(o.input, 'input', 'probabilities', ['probabilities', 'logits'] as const),
    sumTolerance: optNumber(o.sumTolerance, 'sumTolerance', 1e-3, 0, 1),
    device: optDevice(o.device),
  };
}

/** A report of scores with labels (calibration, binaryCalibration): NLL and Brier are there. */
export type ScoredCalibrationReport = CalibrationReport & { nll: number; brier: number };

function scored(s: NativeSummary): ScoredCalibrationReport {
  return report(s, true) as ScoredCalibrationReport;
}

function report(s: NativeSummary, extras: boolean): CalibrationReport {
  const g = s.groups[0];
  return {
    rows: s.rows,
    weight: s.weight,
    accuracy: s.accuracy,
    nll: extras ? s.nll : null,
    brier: extras ? s.brier : null,
    ece: s.ece,
    mce: s.mce,
    rmsce: s.rmsce,
    bins: g.bins as NativeBins,
  };
}

// ---- requests: validated inputs, ready for the sync or async native call ----------------------

interface Request {
  kind: NativeCalibKind;
  opts: Parsed;
  extras: boolean;
  classes: number;
  /** Grouped requests: the number of groups (every row names its group). */
  groups?: number;
  /** Rows carry weights (a one-shot request then needs a weighted state). */
  weighted: boolean;
  /** Feeds the inputs into `state` (sync or async). */
  update(state: BigUint64Array, async: boolean): void | Promise<void>;
  equalMass(async: boolean): NativeSummary | Promise<NativeSummary>;
}

/** Group ids of a grouped request: validated integers in [0, numGroups). */
interface GroupArg {
  ids: Int32Array;
  count: number;
}

function groupArg(ids: unknown, n: number, count: unknown): GroupArg {
  const g = toLabels(ids, 'groups', n);
  let max = -1;
  for (let i = 0; i < g.length; i++) {
    if (g[i] < 0) throw rangeError(`groups[${i}] = ${g[i]}: expected a group id >= 0`);
    if (g[i] > max) max = g[i];
  }
  const c = optInt(count, 'numGroups', max + 1, 1, limits().maxIds);
  if (max >= c) throw rangeError(`groups: contains id ${max} but numGroups is ${c}`);
  return { ids: g, count: c };
}

function noEqualMass(opts: Parsed, g: GroupArg | undefined) {
  if (g && opts.binning === 'equal-mass') throw rangeError('binning: equal-mass bins are not available with groups');
}

// The request's weights: one finite number per row (range checked natively), or undefined.
function rowWeights(opts: Parsed, rows: number): Float32Array | undefined {
  if (opts.weights === undefined) return undefined;
  const w = toVector(opts.weights, 'weights');
  if (w.length !== rows) throw rangeError(`weights: expected ${rows} weights (one per row), got ${w.length}`);
  if (opts.binning === 'equal-mass') throw rangeError('binning: equal-mass bins are not available with weights');
  return w;
}

function rowsRequest(kind: 'top-label' | 'classwise', scores: unknown, labels: unknown, options: unknown, extras = true, groups?: GroupArg): Request {
  const opts = parse(options, ROW_OPTIONS);
  const m = toMatrix(scores, 'scores');
  const y = toLabels(labels, 'labels', m.rows);
  if (kind === 'classwise' && opts.binning === 'equal-mass') throw rangeError('binning: equal-mass bins are not available for classwise calibration');
  noEqualMass(opts, groups);
  if (groups && groups.ids.length !== m.rows) throw rangeError(`groups: expected ${m.rows} group ids (one per row), got ${groups.ids.length}`);
  const weights = rowWeights(opts, m.rows);
  const rowOpts = { input: opts.input, sumTolerance: opts.sumTolerance, device: opts.device, groups: groups?.ids, weights };
  return {
    kind, opts, extras, classes: m.cols, groups: groups?.count, weighted: weights !== undefined,
    update: (state, async) =>
      async ? native().calibUpdateRows(state, m.data, m.rows, m.cols, y, rowOpts, true)
        : native().calibUpdateRows(state, m.data, m.rows, m.cols, y, rowOpts),
    equalMass: (async) => {
      const a = { kind, bins: opts.bins, extras, device: opts.device, scores: m.data, rows: m.rows, cols: m.cols, labels: y, input: opts.input, sumTolerance: opts.sumTolerance };
      return async ? native().calibEqualMass(a, true) : native().calibEqualMass(a);
    },
  };
}

function binaryRequest(scores: unknown, labels: unknown, options: unknown, groups?: GroupArg): Request {
  const opts = parse(options, VEC_OPTIONS);
  const p = toVector(scores, 'scores');
  const y = toLabels(labels, 'labels', p.length);
  noEqualMass(opts, groups);
  if (groups && groups.ids.length !== p.length) throw rangeError(`groups: expected ${p.length} group ids (one per row), got ${groups.ids.length}`);
  const weights = rowWeights(opts, p.length);
  const o = { device: opts.device, groups: groups?.ids, weights };
  return {
    kind: 'binary', opts, extras: true, classes: 1, groups: groups?.count, weighted: weights !== undefined,
    update: (state, async) => (async ? native().calibUpdateBinary(state, p, y, o, true) : native().calibUpdateBinary(state, p, y, o)),
    equalMass: (async) => {
      const a = { kind: 'binary' as const, bins: opts.bins, extras: true, device: opts.device, scores: p, rows: p.length, cols: 1, labels: y, input: 'probabilities' as const, sumTolerance: 1 };
      return async ? native().calibEqualMass(a, true) : native().calibEqualMass(a);
    },
  };
}

function confidenceRequest(confidence: unknown, correct: unknown, options: unknown, groups?: GroupArg): Request {
  const opts = parse(options, VEC_OPTIONS);
  const c = toVector(confidence, 'confidence');
  const ok = toFlags(correct, 'correct', c.length);
  noEqualMass(opts, groups);
  if (groups && groups.ids.length !== c.length) throw rangeError(`groups: expected ${c.length} group ids (one per row), got ${groups.ids.length}`);
  const weights = rowWeights(opts, c.length);
  const o = { device: opts.device, groups: groups?.ids, weights };
  return {
    kind: 'confidence', opts, extras: false, classes: 1, groups: groups?.count, weighted: weights !== undefined,
    update: (state, async) => (async ? native().calibUpdateConfidence(state, c, ok, o, true) : native().calibUpdateConfidence(state, c, ok, o)),
    equalMass: (async) => {
      const a = { kind: 'confidence' as const, bins: opts.bins, extras: false, device: opts.device, confidence: c, correct: ok };
      return async ? native().calibEqualMass(a, true) : native().calibEqualMass(a);
    },
  };
}

function newState(r: Request): BigUint64Array {
  return native().calibStateNew({ kind: r.kind, bins: r.opts.bins, classes: r.classes, groups: r.groups, edges: r.opts.edges, extras: r.extras, weighted: r.weighted });
}

function runSync(r: Request): NativeSummary {
  if (r.opts.binning === 'equal-mass') return r.equalMass(false) as NativeSummary;
  const state = newState(r);
  r.update(state, false);
  return native().calibFinalize(state);
}

async function runAsync(r: Request): Promise<NativeSummary> {
  if (r.opts.binning === 'equal-mass') return r.equalMass(true);
  const state = newState(r);
  await r.update(state, true);
  return native().calibFinalize(state);
}

function grouped(s: NativeSummary, extras: boolean): GroupCalibrationReport {
  const overall: CalibrationReport = {
    rows: s.rows, weight: s.weight, accuracy: s.accuracy, nll: extras ? s.nll : null, brier: extras ? s.brier : null,
    ece: s.ece, mce: s.mce, rmsce: s.rmsce, bins: s.overall.bins,
  };
  const groups: GroupStats[] = s.groups.map((g, i) => ({ group: i, rows: g.rows, weight: g.weight, accuracy: g.accuracy, ece: g.ece, mce: g.mce, rmsce: g.rmsce, bins: g.bins }));
  const nonEmpty = groups.filter((g) => g.weight > 0);
  const worst = (key: 'ece' | 'accuracy', higherIsWorse: boolean) =>
    nonEmpty.length ? nonEmpty.reduce((a, b) => ((higherIsWorse ? b[key] > a[key] : b[key] < a[key]) ? b : a)) : null;
  return { overall, groups, worst: { ece: worst('ece', true), accuracy: worst('accuracy', false) } };
}

function classwise(s: NativeSummary): ClasswiseCalibrationReport {
  return {
    rows: s.rows, weight: s.weight, accuracy: s.accuracy, nll: s.nll, brier: s.brier, ece: s.ece, mce: s.mce, rmsce: s.rmsce,
    classes: s.groups.map((g) => ({ ece: g.ece, mce: g.mce, rmsce: g.rmsce, bins: g.bins })),
  };
}

// ---- public functions ---------------------------------------------------------------------------

/**
 * Top-label calibration of a rows x classes matrix of probabilities (or logits, with
 * `input: 'logits'`): confidence = row max, prediction = first index of the max.
 *
 * @example
 * const r = await calibration([[0.9, 0.1], [0.4, 0.6]], [0, 0], { bins: 10 });
 * r.ece; r.bins.accuracy; r.nll;
 */
export function calibration(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): Promise<ScoredCalibrationReport> {
  return withCallerStack(async () => scored(await runAsync(rowsRequest('top-label', scores, labels, options))));
}

/** Synchronous {@link calibration}. */
export function calibrationSync(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): ScoredCalibrationReport {
  return scored(runSync(rowsRequest('top-label', scores, labels, options)));
}

/** Expected calibration error alone (skips NLL and Brier, so the single pass is cheaper). */
export function ece(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): Promise<number> {
  return withCallerStack(async () => (await runAsync(rowsRequest('top-label', scores, labels, options, false))).ece);
}

/** Synchronous {@link ece}. */
export function eceSync(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): number {
  return runSync(rowsRequest('top-label', scores, labels, options, false)).ece;
}

/** Classwise calibration: one histogram per class over every p_ij with "correct" = (y_i = j). */
export function classwiseCalibration(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): Promise<ClasswiseCalibrationReport> {
  return withCallerStack(async () => classwise(await runAsync(rowsRequest('classwise', scores, labels, options))));
}

/** Synchronous {@link classwiseCalibration}. */
export function classwiseCalibrationSync(scores: MatrixInput, labels: LabelsInput, options?: CalibrationOptions): ClasswiseCalibrationReport {
  return classwise(runSync(rowsRequest('classwise', scores, labels, options)));
}

/**
 * Binary positive-class calibration, as `expected_calibration_error(y_true, y_prob)` in sklearn
 * style: score = p(y = 1), the bins' "accuracy" is the share of positives, labels are 0 or 1.
 */
export function binaryCalibration(scores: VectorInput, labels: LabelsInput, options?: Omit<CalibrationOptions, 'input' | 'sumTolerance'>): Promise<ScoredCalibrationReport> {
  return withCallerStack(async () => scored(await runAsync(binaryRequest(scores, labels, options))));
}

/** Synchronous {@link binaryCalibration}. */
export function binaryCalibrationSync(scores: VectorInput, labels: LabelsInput, options?: Omit<CalibrationOptions, 'input' | 'sumTolerance'>): ScoredCalibrationReport {
  return scored(runSync(binaryRequest(scores, labels, options)));
}

/** Calibration from given confidences in [0, 1] and correctness flags (no NLL or Brier). */
export function confidenceCalibration(confidence: VectorInput, correct: Uint8Array | ReadonlyArray<boolean | 0 | 1>, options?: Omit<CalibrationOptions, 'input' | 'sumTolerance'>): Promise<CalibrationReport> {
  return withCallerStack(async () => report(await runAsync(confidenceRequest(confidence, correct, options)), false));
}

/** Synchronous {@link confidenceCalibration}. */
export function confidenceCalibrationSync(confidence: VectorInput, correct: Uint8Array | ReadonlyArray<boolean | 0 | 1>, options?: Omit<CalibrationOptions, 'input' | 'sumTolerance'>): CalibrationReport {
  return report(runSync(confidenceRequest(confidence, correct, options)), false);
}

/**
 * Calibration per group of rows (a user's group labels, or a mask as groups 0/1): one histogram
 * per group in the same single pass, plus the overall report and the worst group.
 *
 * @example
 * const r = await groupCalibration(probs, labels, regionOfEachRow);
 * r.worst.ece?.group; r.groups.map((g) => g.ece);
 */
export function groupCalibration(scores: MatrixInput, labels: LabelsInput, groups: LabelsInput, options?: GroupCalibrationOptions): Promise<GroupCalibrationReport> {
  return withCallerStack(async () => {
    const { request } = groupRequest(scores, labels, groups, options);
    return grouped(await runAsync(request), true);
  });
}

/** Synchronous {@link groupCalibration}. */
export function groupCalibrationSync(scores: MatrixInput, labels: LabelsInput, groups: LabelsInput, options?: GroupCalibrationOptions): GroupCalibrationReport {
  return grouped(runSync(groupRequest(scores, labels, groups, options).request), true);
}

function groupRequest(scores: unknown, labels: unknown, groups: unknown, options: unknown) {
  const o = readOptions(options, 'options', [...ROW_OPTIONS, 'numGroups']);
  const numGroups = o.numGroups;
  const rest = o;
  delete rest.numGroups;
  const m = toMatrix(scores, 'scores');
  const g = groupArg(groups, m.rows, numGroups);
  return { request: rowsRequest('top-label', m, labels, rest, true, g) };
}

// ---- streaming accumulator ----------------------------------------------------------------------

export type AccumulatorMode = 'top-label' | 'classwise' | 'binary' | 'confidence';

export interface AccumulatorOptions {
  mode?: AccumulatorMode;
  /** Required for 'classwise'. */
  classes?: number;
  /** Keep one histogram per group of rows (not in 'classwise' mode); every update passes group ids. */
  groups?: number;
  bins?: number;
  edges?: BinEdges;
  /** Accumulate NLL and Brier too (default true; not available in 'confidence' mode). */
  extras?: boolean;
  /**
   * Rows carry weights (CalibrationOptions.weights says what the metrics become); updates pass
   * `weights` (without them every row weighs 1). Weighted states merge exactly too: the weighted
   * sums are integers (weights in fixed point, 2^-32 resolution). CPU only for now.
   */
  weighted?: boolean;
}

/**
 * The report an accumulator built with options `O` returns: classwise in 'classwise' mode,
 * per group with `groups`, else the one-histogram report (the union when `O` is not known).
 */
export type AccumulatorReport<O extends AccumulatorOptions = AccumulatorOptions> =
  [OptionOf<O, 'mode'>] extends ['classwise'] ? ClasswiseCalibrationReport
  : [OptionOf<O, 'groups'>] extends [number] ? GroupCalibrationReport
  : [OptionOf<O, 'mode'>] extends ['top-label' | 'binary' | 'confidence' | undefined]
    ? ([OptionOf<O, 'groups'>] extends [undefined] ? CalibrationReport : CalibrationReport | GroupCalibrationReport)
  : CalibrationReport | ClasswiseCalibrationReport | GroupCalibrationReport;

export interface AccumulatorUpdateOptions {
  input?: ScoreInput;
  sumTolerance?: number;
  /** As CalibrationOptions.device ('auto': the CPU). */
  device?: Device;
  /** Group id of each row (required when the accumulator was created with `groups`). */
  groups?: LabelsInput;
  /** Weight of each row (only for an accumulator created with `weighted: true`). */
  weights?: VectorInput;
}

/** Any report a {@link CalibrationAccumulator} returns. */
export type AnyCalibrationReport = CalibrationReport | ClasswiseCalibrationReport | GroupCalibrationReport;

// The class behind CalibrationAccumulator (exported below under that name, with a constructor
// type that picks R from the options' literal types). R only types result(), so it is
// covariant: an accumulator of any kind is a CalibrationAccumulator, merge takes any.
class Accumulator<out R extends AnyCalibrationReport = AnyCalibrationReport> {
  readonly mode: AccumulatorMode;
  readonly bins: number;
  readonly edges: BinEdges;
  readonly extras: boolean;
  readonly classes: number;
  /** Number of row groups (0 when not grouped). */
  readonly groups: number;
  readonly weighted: boolean;
  #state: BigUint64Array;

  constructor(options?: AccumulatorOptions) {
    const o = readOptions(options, 'options', ['mode', 'classes', 'groups', 'bins', 'edges', 'extras', 'weighted']);
    this.mode = optChoice(o.mode, 'mode', 'top-label', ['top-label', 'classwise', 'binary', 'confidence'] as const);
    this.bins = optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins);
    this.edges = optChoice(o.edges, 'edges', 'right-closed', ['right-closed', 'left-closed'] as const);
    this.extras = optBool(o.extras, 'extras', this.mode !== 'confidence');
    if (this.mode === 'confidence' && this.extras) throw rangeError("extras: NLL and Brier are not available in 'confidence' mode");
    if (this.mode === 'classwise') {
      if (o.classes === undefined) throw typeError("classes: required in 'classwise' mode");
      this.classes = optInt(o.classes, 'classes', 0, 1, limits().maxIds);
    } else {
      if (o.classes !== undefined) throw rangeError(`classes: only used in 'classwise' mode (mode is '${this.mode}')`);
      this.classes = 1;
    }
    if (o.groups !== undefined && this.mode === 'classwise') throw rangeError("groups: not available in 'classwise' mode");
    this.groups = optInt(o.groups, 'groups', 0, 1, limits().maxIds);
    this.weighted = optBool(o.weighted, 'weighted', false);
    this.#state = native().calibStateNew({
      kind: this.mode, bins: this.bins, classes: this.classes, groups: this.groups || undefined, edges: this.edges, extras: this.extras,
      weighted: this.weighted,
    });
  }

  /** Rows accumulated so far. */
  get rows(): number {
    return Number(this.#state[4]);
  }

  #request(a: unknown, b: unknown, options: unknown): Request {
    const o = readOptions(options, 'options', ['input', 'sumTolerance', 'device', 'groups', 'weights']);
    const ids = o.groups;
    delete o.groups;
    if (o.weights !== undefined && !this.weighted) throw typeError('options.weights: this accumulator is not weighted; create it with weighted: true');
    if (this.groups && ids === undefined) throw typeError('options.groups: this accumulator is grouped; pass one group id per row');
    if (!this.groups && ids !== undefined) throw rangeError('options.groups: this accumulator was created without groups');
    const rows = a !== null && typeof a === 'object' && 'rows' in a ? (a as { rows: number }).rows : (a as ArrayLike<unknown>)?.length;
    const g = this.groups ? groupArg(ids, rows, this.groups) : undefined;
    switch (this.mode) {
      case 'top-label':
      case 'classwise':
        return rowsRequest(this.mode, a, b, o, this.extras, g);
      case 'binary':
        if (o.input !== undefined || o.sumTolerance !== undefined) throw rangeError("options: 'input' and 'sumTolerance' do not apply in binary mode");
        return binaryRequest(a, b, { device: o.device, weights: o.weights }, g);
      case 'confidence':
        if (o.input !== undefined || o.sumTolerance !== undefined) throw rangeError("options: 'input' and 'sumTolerance' do not apply in confidence mode");
        return confidenceRequest(a, b, { device: o.device, weights: o.weights }, g);
    }
  }

  /**
   * Adds a chunk (scores + labels; binary: p(y=1) + labels; confidence: confidence + correct)
   * off the event loop. A chunk with any bad row is rejected whole and leaves the accumulator
   * unchanged. Do not modify the arrays until the promise settles.
   */
  update(scores: MatrixInput | VectorInput, labels: LabelsInput | Uint8Array | ReadonlyArray<boolean>, options?: AccumulatorUpdateOptions): Promise<void> {
    return withCallerStack(async () => {
      await this.#request(scores, labels, options).update(this.#state, true);
    });
  }

  /** Synchronous {@link update}. */
  updateSync(scores: MatrixInput | VectorInput, labels: LabelsInput | Uint8Array | ReadonlyArray<boolean>, options?: AccumulatorUpdateOptions): void {
    this.#request(scores, labels, options).update(this.#state, false);
  }

  /** Adds another accumulator's rows (same mode, bins, edges, classes, extras and weighting). */
  merge(other: CalibrationAccumulator): this {
    if (!(other instanceof Accumulator)) throw typeError('other: expected a CalibrationAccumulator');
    native().calibMerge(this.#state, other.#state);
    return this;
  }

  /** The report so far (throws a RangeError when no rows were added). */
  result(): R {
    const s = native().calibFinalize(this.#state);
    if (this.mode === 'classwise') return classwise(s) as R;
    return (this.groups ? grouped(s, this.extras) : report(s, this.extras)) as R;
  }

  reset(): void {
    this.#state.fill(0n, 4);
  }

  /** A JSON-safe snapshot (the exact integer state as decimal strings). */
  toJSON(): WordStateJSON<'calmoe.calibration-accumulator'> {
    return wordsToJSON('calmoe.calibration-accumulator', this.#state);
  }

  /** Restores an accumulator from {@link toJSON}'s output (validated). */
  static fromJSON(json: unknown): CalibrationAccumulator {
    const words = wordsFromJSON(json, 'calmoe.calibration-accumulator', 'CalibrationAccumulator.toJSON()');
    const kinds: AccumulatorMode[] = ['top-label', 'classwise', 'binary', 'confidence'];
    if (words.length < 10) throw rangeError('json.state: too short to be a calibration state');
    // Header, length (against the payload, before anything is allocated from the header) and the
    // counts' invariants.
    try {
      native().calibStateCheck(words);
    } catch (e) {
      throw rangeError(`json.state: ${(e as Error).message.replace(/^state: /, '')}`);
    }
    const flags = words[3];
    const kind = kinds[Number((flags >> 8n) & 0xffn)];
    if (!kind) throw rangeError('json.state: unknown accumulator mode');
    const isGrouped = (flags & 8n) !== 0n;
    const acc = new Accumulator({
      mode: kind,
      bins: Number(words[1]),
      classes: kind === 'classwise' ? Number(words[2]) : undefined,
      groups: isGrouped ? Number(words[2]) : undefined,
      edges: flags & 1n ? 'left-closed' : 'right-closed',
      extras: (flags & 2n) !== 0n,
      weighted: (flags & 16n) !== 0n,
    });
    if (acc.#state.length !== words.length) throw rangeError('json.state: length does not match its header');
    acc.#state.set(words);
    return acc;
  }
}
Object.defineProperty(Accumulator, 'name', { value: 'CalibrationAccumulator' });

/**
 * A mergeable calibration accumulator (equal-width bins): feed chunks, merge accumulators built
 * elsewhere (other workers, other machines), read the report. Sums are exact integers (fixed
 * point), so merging partial results gives exactly the one-shot result, bit for bit. The
 * options' literal types decide what {@link Accumulator.result} returns (see
 * {@link AccumulatorReport}): `new CalibrationAccumulator({ bins: 15 }).result().ece` type-checks.
 *
 * @example
 * const acc = new CalibrationAccumulator({ bins: 15 });
 * for await (const { probs, labels } of batches) await acc.update(probs, labels);
 * const other = CalibrationAccumulator.fromJSON(JSON.parse(received));
 * acc.merge(other);
 * console.log(acc.result().ece);
 */
export const CalibrationAccumulator: {
  new <O extends AccumulatorOptions = Record<never, never>>(options?: O): Accumulator<AccumulatorReport<O>>;
  readonly prototype: Accumulator;
  /** Restores an accumulator from its toJSON() output (validated). */
  fromJSON(json: unknown): Accumulator;
} = Accumulator;
/** An accumulator whose result() is an R (any report when not known). */
export type CalibrationAccumulator<R extends AnyCalibrationReport = AnyCalibrationReport> = Accumulator<R>;
