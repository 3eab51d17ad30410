/**
 * Per-expert audit: each expert's load (share of rows whose top-1 expert it is, share of routing
 * mass) and, on the rows routed to it (top-1 assignment), the accuracy, ECE and mean confidence of
 * its own prediction and of the blend's, from one grouped calibration pass each
 * ({@link groupCalibration} with group = top-1 expert); its temperature when given.
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import type { GroupStats } from '../metrics/calibration.js';
import { type Device, type VectorInput, optInt, readOptions, toVector } from '../validate.js';
import { type MoEOutputs, type ParsedOutputs, parseOutputs } from './moe-outputs.js';
import { groupsStep, runAsync, runSync, type Steps } from './native-steps.js';
import { expertUsage } from './routing-stats.js';
import { type RowAudit, parseRowOptions, rowAuditSteps } from './row-audit.js';
import { limits } from '../limits.js';

export interface ExpertAuditOptions {
  /** Calibration bins (default 15, right-closed). */
  bins?: number;
  /** Each expert's temperature (e.g. from fitExpertTemperatures), shown with its row. */
  temperatures?: ArrayLike<number>;
  sumTolerance?: number;
  device?: Device;
  /**
   * Per-row weights (e.g. importance weights of a shift): each expert's accuracy, ECE and mean
   * confidence become weighted (metrics.CalibrationOptions.weights); its load stays a row count.
   */
  weights?: VectorInput;
}

/** Accuracy, ECE and mean confidence of one prediction on a set of rows (NaN when empty). */
export interface PredictionStats {
  accuracy: number;
  ece: number;
  meanConfidence: number;
}

export interface ExpertAuditRow {
  expert: number;
  /** Rows whose top-1 expert is this one, and their share of all rows. */
  top1Rows: number;
  top1Share: number;
  /** Routing mass (sum of its weights) and its share of all rows' mass. */
  mass: number;
  massShare: number;
  /** The expert's own prediction on its top-1 rows. */
  own: PredictionStats;
  /** The blend's prediction on the same rows. */
  mixture: PredictionStats;
  temperature: number | null;
}

export interface ExpertAudit {
  rows: number;
  experts: ExpertAuditRow[];
  /** The non-empty experts whose own prediction has the highest ECE / lowest accuracy. */
  worst: { ece: number | null; accuracy: number | null };
}

export function parseTemperatures(x: unknown, experts: number): Float64Array | null {
  if (x === undefined) return null;
  if (x === null || typeof x !== 'object' || typeof (x as ArrayLike<unknown>).length !== 'number')
    throw typeError('temperatures: expected an array of numbers (one per expert)');
  const a = x as ArrayLike<unknown>;
  if (a.length !== experts) throw rangeError(`temperatures: expected ${experts} temperatures (one per expert), got ${a.length}`);
  const out = new Float64Array(experts);
  for (let k = 0; k < experts; k++) {
    const v = a[k];
    if (typeof v !== 'number') throw typeError(`temperatures[${k}]: expected a number`);
    if (!(Number.isFinite(v) && v > 0)) throw rangeError(`temperatures[${k}] = ${v}: expected a finite number > 0`);
    out[k] = v;
  }
  return out;
}

export function stats(g: GroupStats): PredictionStats {
  let s = 0;
  for (let b = 0; b < g.bins.weight.length; b++) if (g.bins.weight[b] > 0) s += g.bins.weight[b] * g.bins.meanConfidence[b];
  return { accuracy: g.accuracy, ece: g.ece, meanConfidence: g.weight > 0 ? s / g.weight : NaN };
}

/** The audit's optional row weights, one per row (range-checked natively). */
export function auditWeights(x: unknown, rows: number): Float32Array | undefined {
  if (x === undefined) return undefined;
  const w = toVector(x, 'weights');
  if (w.length !== rows) throw rangeError(`weights: expected ${rows} weights (one per row), got ${w.length}`);
  return w;
}

export function* expertAuditSteps(p: ParsedOutputs, rows: RowAudit, bins: number, temperatures: Float64Array | null, device: Device,
  weights?: Float32Array): Steps<ExpertAudit> {
  const E = p.experts, C = p.classes;
  const labels = p.labels!;
  const own = yield* groupsStep({ data: rows.top1Probs!, rows: p.rows, cols: C }, labels, rows.top1, { bins, numGroups: E, device, weights });
  const mix = yield* groupsStep(p.mixture!, labels, rows.top1, { bins, numGroups: E, device, weights });
  const usage = expertUsage(p, rows.top1);
  const experts: ExpertAuditRow[] = [];
  for (let e = 0; e < E; e++) {
    experts.push({
      expert: e,
      top1Rows: usage.top1Count[e], top1Share: usage.top1Share[e], mass: usage.mass[e], massShare: usage.massShare[e],
      own: stats(own.groups[e]), mixture: stats(mix.groups[e]),
      temperature: temperatures ? temperatures[e] : null,
    });
  }
  return { rows: p.rows, experts, worst: { ece: own.worst.ece?.group ?? null, accuracy: own.worst.accuracy?.group ?? null } };
}

function* steps(outputs: unknown, options: unknown): Steps<ExpertAudit> {
  const o = readOptions(options, 'options', ['bins', 'temperatures', 'sumTolerance', 'device', 'weights']);
  const p = parseOutputs(outputs, ['expertProbs', 'mixture', 'labels']);
  const bins = optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins);
  const t = parseTemperatures(o.temperatures, p.experts);
  const w = auditWeights(o.weights, p.rows);
  const ro = parseRowOptions(o);
  const rows = yield* rowAuditSteps(p, ro);
  return yield* expertAuditSteps(p, rows, bins, t, ro.device, w);
}

/**
 * Load, accuracy and calibration of every expert on the rows routed to it.
 *
 * @example
 * const a = expertAuditSync({ routing, expertProbs, mixture, labels }, { temperatures });
 * for (const e of a.experts) console.log(e.expert, e.top1Share, e.own.ece, e.mixture.ece);
 */
export function expertAuditSync(outputs: MoEOutputs, options?: ExpertAuditOptions): ExpertAudit {
  return runSync(steps(outputs, options));
}

/** {@link expertAuditSync} off the event loop. */
export function expertAudit(outputs: MoEOutputs, options?: ExpertAuditOptions): Promise<ExpertAudit> {
  return withCallerStack(() => runAsync(steps(outputs, options)));
}
