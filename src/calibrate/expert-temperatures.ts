/**
 * Per-expert temperature scaling (the MoCaE baseline): one temperature T_k per expert, fitted on
 * the expert's own scores over the rows routed to it, and clamped to [0.1, 10] by default.
 *
 * - 'soft' (default): every row counts for expert k with weight r_ik (its routing weight);
 * - 'hard': only the rows whose top-1 expert is k count (weight 1), as hard routing uses them.
 *
 * Two layouts: dense (every expert's scores for every row: B x K x C, routing B x K) or active
 * experts only (B x k x C with the experts' ids B x k and their routing weights B x k). Nothing is
 * copied: expert k's rows are a strided view of the tensor, and rows of weight 0 are not read.
 * Returns the K temperatures (the model writes them into its experts).
 *
 * Minimum size: an expert whose routed weight is below `minRows` (default 20) is not fitted and
 * keeps T = 1 (reported as `skipped: 'too-few-rows'`). The routed weight is the number of rows
 * that count for it in 'hard' mode, and the sum of their routing weights in 'soft' mode (every
 * row has some positive weight there, so a row count would say nothing). A temperature fitted on
 * a handful of rows is mostly noise, and it tends to the bound (0.1) when those few rows are all
 * classified correctly, which made soft models far worse calibrated after scaling.
 */
import { rangeError, withCallerStack } from '../errors.js';
import { native, type NativeTemperatureEval, type NativeTemperatureOptions } from '../native.js';
import { type ExpertIdsInput, type ExpertTensorInput, toExpertIds, toExpertTensor, toRouting } from '../audit/moe-outputs.js';
import { type Device, type LabelsInput, type MatrixInput, optChoice, optDevice, optNumber, readOptions, toLabels } from '../validate.js';
import { type SolverOptions, type SolverResult, solveAsync, solveSync } from './log-temperature-solver.js';
import { type TemperatureInput, type TemperatureView, evalAsync, evalSync, means, solverOptions } from './temperature.js';

export type ExpertAssignment = 'soft' | 'hard';

export interface ExpertTemperatureOptions {
  /** 'soft' (default: rows weighted by routing weight) or 'hard' (each expert's top-1 rows). */
  mode?: ExpertAssignment;
  /** 'logits' (default) or 'probabilities' (each expert's p^(1/T) renormalised). */
  input?: TemperatureInput;
  /** Active-expert layout: the ids of the experts in each row's slots (B x k). */
  experts?: ExpertIdsInput;
  /** Number of experts (default: K of the dense layout, or the largest id + 1). */
  numExperts?: number;
  /** Temperature bounds (default [0.1, 10]). */
  min?: number;
  max?: number;
  /** Experts whose routed weight is below this keep T = 1 (default 20; 0 fits every expert with rows). */
  minRows?: number;
  /** Starting temperature of every expert's search (default 1). */
  init?: number;
  tolerance?: number;
  maxIterations?: number;
  /** Allowed |row sum - 1| of routing rows (and of probabilities) (default 1e-3). */
  sumTolerance?: number;
  device?: Device;
}

export interface ExpertTemperatureFit {
  expert: number;
  /** Rows that count for this expert (positive weight). */
  rows: number;
  /** Their total weight (the row count in 'hard' mode). */
  weight: number;
  /** The fitted temperature; 1 when the expert has no rows or too few (see `skipped`). */
  temperature: number;
  /** Why the expert was not fitted: no rows at all, or a routed weight below `minRows`. */
  skipped: 'no-rows' | 'too-few-rows' | null;
  /** The expert's weighted mean NLL at T = 1 and at its temperature (NaN when it has no rows). */
  nllBefore: number;
  nllAfter: number;
  iterations: number;
  /** False when the expert was not fitted (its temperature is left at 1) or the search ran out. */
  converged: boolean;
  /** 'min' / 'max' when the temperature was clamped to a bound. */
  atBound: 'min' | 'max' | null;
}

export interface ExpertTemperatureResult {
  /** One temperature per expert, in expert order. */
  temperatures: Float64Array;
  experts: ExpertTemperatureFit[];
  mode: ExpertAssignment;
  /** The minimum routed weight that was applied. */
  minRows: number;
}

interface Plan {
  mode: ExpertAssignment;
  count: number;
  minRows: number;
  /** Per expert: rows with positive weight and their total weight. */
  rows: number[];
  weight: number[];
  solver: SolverOptions;
  /** Per expert: the views (one per slot that ever holds it) whose evaluations add up. */
  views: TemperatureView[][];
}

const KNOWN = ['mode', 'input', 'experts', 'numExperts', 'min', 'max', 'minRows', 'init', 'tolerance', 'maxIterations', 'sumTolerance', 'device'] as const;

function plan(expertScores: unknown, routing: unknown, labels: unknown, options: unknown): Plan {
  const o = readOptions(options, 'options', KNOWN);
  const t = toExpertTensor(expertScores, 'expertScores');
  if (t.rows < 1) throw rangeError('expertScores: expected at least one row, got 0');
  const B = t.rows, K = t.experts, C = t.classes;
  const r = toRouting(routing, 'routing', B, K);
  const y = toLabels(labels, 'labels', B);
  const mode = optChoice(o.mode, 'mode', 'soft', ['soft', 'hard'] as const);
  const input = optChoice(o.input, 'input', 'logits', ['logits', 'probabilities'] as const);
  const sumTolerance = optNumber(o.sumTolerance, 'sumTolerance', 1e-3, 0, 1);
  const device = optDevice(o.device);
  const solver = solverOptions(o, { min: 0.1, max: 10 });
  const minRows = optNumber(o.minRows, 'minRows', 20, 0, Number.MAX_VALUE);
  let ids: Int32Array | undefined;
  let count = K;
  if (o.experts !== undefined) ({ ids, count } = toExpertIds(o.experts, 'experts', B, K, o.numExperts));
  else if (o.numExperts !== undefined && o.numExperts !== K)
    throw rangeError(`numExperts: ${String(o.numExperts)} differs from the ${K} experts of the dense layout (pass 'experts' ids for the active-expert layout)`);
  // Routing rows are checked (values in [0, 1], sums to 1, ids in range) and the top-1 expert
  // found (largest weight, ties to the lower id) by the shared audit kernel.
  const audit = native().moeAuditRows({
    rows: B, slots: K, experts: count, routing: r.data, expertIds: ids, sumTolerance, device, outputs: { top1: true, maxWeight: true },
  });
  const topSlot = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    // the first slot holding the top-1 expert with the top weight (an expert listed twice counts once)
    let s = 0;
    while (s < K - 1 && ((ids ? ids[i * K + s] : s) !== audit.top1![i] || r.data[i * K + s] !== audit.maxWeight![i])) s++;
    topSlot[i] = s;
  }
  const views: TemperatureView[][] = Array.from({ length: count }, () => []);
  const rowsOf = new Array<number>(count).fill(0), weightOf = new Array<number>(count).fill(0);
  for (let s = 0; s < K; s++) {
    // weights of slot s for each expert that appears there
    const perExpert = new Map<number, Float32Array>();
    for (let i = 0; i < B; i++) {
      const e = ids ? ids[i * K + s] : s;
      const w = mode === 'soft' ? r.data[i * K + s] : topSlot[i] === s ? 1 : 0;
      if (w === 0) continue;
      rowsOf[e]++;
      weightOf[e] += w;
      let v = perExpert.get(e);
      if (!v) perExpert.set(e, (v = new Float32Array(B)));
      v[i] = w;
    }
    for (const [e, w] of [...perExpert.entries()].sort((a, b) => a[0] - b[0])) {
      const opts: NativeTemperatureOptions = { input, sumTolerance, device, rowStride: K * C, weights: w, name: `expertScores[:, ${s}, :]` };
      views[e].push({ scores: t.data.subarray(s * C), rows: B, cols: C, labels: y, options: opts });
    }
  }
  return { mode, count, minRows, rows: rowsOf, weight: weightOf, solver, views };
}

// An expert that is not fitted: no rows, or a routed weight below minRows (its NLL at T = 1 is
// still reported when it has rows).
function unfitted(p: Plan, expert: number, nll: number): ExpertTemperatureFit {
  return {
    expert, rows: p.rows[expert], weight: p.weight[expert], temperature: 1, skipped: p.rows[expert] === 0 ? 'no-rows' : 'too-few-rows',
    nllBefore: nll, nllAfter: nll, iterations: p.rows[expert] === 0 ? 0 : 1, converged: false, atBound: null,
  };
}

function fitted(expert: number, s: SolverResult, first: ReturnType<typeof means>): ExpertTemperatureFit {
  return {
    expert, rows: first.rows, weight: first.weight, temperature: s.temperature, skipped: null, nllBefore: s.baseline.nll, nllAfter: s.at.nll,
    iterations: s.iterations, converged: s.converged, atBound: s.atBound,
  };
}

function tooFew(p: Plan, e: number): boolean {
  return p.views[e].length === 0 || p.weight[e] < p.minRows;
}

function collect(p: Plan, experts: ExpertTemperatureFit[]): ExpertTemperatureResult {
  return { temperatures: Float64Array.from(experts, (e) => e.temperature), experts, mode: p.mode, minRows: p.minRows };
}

/**
 * Fits one temperature per expert (MoCaE's per-expert temperature scaling).
 *
 * @example
 * // dense: every expert's logits for every row (B x K x C), routing weights B x K
 * const { temperatures } = fitExpertTemperaturesSync(expertTensor(logits, B, K, C), routing, labels, { mode: 'hard' });
 * // active experts only: top-2 slots, their ids and renormalised weights
 * fitExpertTemperaturesSync(expertTensor(top2Logits, B, 2, C), top2Weights, labels, { experts: top2Ids, numExperts: 8 });
 */
export function fitExpertTemperaturesSync(expertScores: ExpertTensorInput, routing: MatrixInput, labels: LabelsInput, options?: ExpertTemperatureOptions): ExpertTemperatureResult {
  const p = plan(expertScores, routing, labels, options);
  const experts = p.views.map((views, e) => {
    if (tooFew(p, e)) return unfitted(p, e, views.length ? means(views.map((v) => evalSync(v, 1))).nll : NaN);
    let first: ReturnType<typeof means> | undefined;
    const s = solveSync(p.solver, (t) => {
      const m = means(views.map((v) => evalSync(v, t)));
      first ??= m;
      return m;
    });
    return fitted(e, s, first!);
  });
  return collect(p, experts);
}

/** {@link fitExpertTemperaturesSync} off the event loop. */
export function fitExpertTemperatures(expertScores: ExpertTensorInput, routing: MatrixInput, labels: LabelsInput, options?: ExpertTemperatureOptions): Promise<ExpertTemperatureResult> {
  return withCallerStack(async () => {
    const p = plan(expertScores, routing, labels, options);
    const experts: ExpertTemperatureFit[] = [];
    for (let e = 0; e < p.count; e++) {
      const views = p.views[e];
      if (tooFew(p, e)) {
        experts.push(unfitted(p, e, views.length ? means(await Promise.all(views.map((v) => evalAsync(v, 1)))).nll : NaN));
        continue;
      }
      let first: ReturnType<typeof means> | undefined;
      const s = await solveAsync(p.solver, async (t) => {
        const parts: NativeTemperatureEval[] = await Promise.all(views.map((v) => evalAsync(v, t)));
        const m = means(parts);
        first ??= m;
        return m;
      });
      experts.push(fitted(e, s, first!));
    }
    return collect(p, experts);
  });
}
