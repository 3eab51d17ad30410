/**
 * Hard subsets of the rows, and the blend's accuracy and calibration on each:
 * - disagreement: the rows where the experts disagree most, the top 20% (by default) of
 *   dis_i = sum_k r_ik ||p_k,i - p_i||^2 (rows with dis_i = 0 never count: under hard routing
 *   there is no disagreement, so the subset is empty);
 * - regret: the rows where the blend is worse than the best active expert,
 *   regret_i = l_i - min_k l_ik > threshold (default 1e-6, the robust-filtered objective's tau_r);
 * - a user mask, and user group labels (per-group accuracy, ECE and NLL, and the worst group).
 * Each split is one grouped calibration pass ({@link groupCalibration}).
 */
import { rangeError, typeError, withCallerStack } from '../errors.js';
import type { GroupCalibrationReport, GroupStats } from '../metrics/calibration.js';
import { type Device, type LabelsInput, type VectorInput, optInt, optNumber, readOptions, toFlags, toLabels } from '../validate.js';
import { quantileSorted, sortedCopy } from './distribution.js';
import { auditWeights, stats } from './expert-audit.js';
import { type MoEOutputs, type ParsedOutputs, parseOutputs } from './moe-outputs.js';
import { groupsStep, runAsync, runSync, type Steps } from './native-steps.js';
import { type RowAudit, parseRowOptions, rowAuditSteps } from './row-audit.js';
import { limits } from '../limits.js';

export interface HardSubsetOptions {
  /** Share of rows with the highest disagreement that form the subset (default 0.2). */
  disagreementShare?: number;
  /** Rows with regret above this form the regret subset (default 1e-6). */
  regretThreshold?: number;
  /** A user subset: one flag per row. */
  mask?: Uint8Array | ReadonlyArray<boolean | 0 | 1>;
  /** User group labels: one id per row in [0, numGroups). */
  groups?: LabelsInput;
  numGroups?: number;
  /** Names of the groups, for reports (default: none). */
  groupNames?: ReadonlyArray<string>;
  /** Calibration bins (default 15, right-closed). */
  bins?: number;
  sumTolerance?: number;
  device?: Device;
  /**
   * Per-row weights (e.g. importance weights of a shift): each subset's share, accuracy, ECE, NLL
   * and mean confidence become weighted; which rows form a subset does not change.
   */
  weights?: VectorInput;
}

/** The blend's prediction on a set of rows (NaN metrics when it is empty). */
export interface SubsetStats {
  rows: number;
  /** rows / all rows (weight / all the weight, with weights). */
  share: number;
  accuracy: number;
  ece: number;
  /** Mean -log max(p[y], 1e-12). */
  nll: number;
  meanConfidence: number;
}

export interface SubsetSplit {
  inside: SubsetStats;
  outside: SubsetStats;
}

export interface GroupSubset extends SubsetStats {
  group: number;
  name: string | null;
}

export interface HardSubsets {
  rows: number;
  overall: SubsetStats;
  disagreement: SubsetSplit & {
    /** The requested share and the disagreement value at its quantile (rows >= it are inside). */
    share: number;
    threshold: number;
    mean: number;
  };
  regret: SubsetSplit & { threshold: number; mean: number };
  mask: SubsetSplit | null;
  groups: { groups: GroupSubset[]; worst: { ece: number | null; accuracy: number | null } } | null;
}

// Mean loss per group (weighted when `w` is given).
function meanLoss(loss: Float32Array, groups: Int32Array, count: number, w?: Float32Array): Float64Array {
  const sum = new Float64Array(count), n = new Float64Array(count);
  for (let i = 0; i < loss.length; i++) {
    const wi = w ? w[i] : 1;
    sum[groups[i]] += wi * loss[i];
    n[groups[i]] += wi;
  }
  return sum.map((s, g) => (n[g] > 0 ? s / n[g] : NaN));
}

// A group's stats; `total`: the weight (row count without weights) of all rows.
function subset(g: GroupStats, total: number, nll: number): SubsetStats {
  const s = stats(g);
  return { rows: g.rows, share: g.weight / total, accuracy: s.accuracy, ece: s.ece, nll, meanConfidence: s.meanConfidence };
}

function split(r: GroupCalibrationReport, loss: Float32Array, flags: Int32Array, w?: Float32Array): SubsetSplit {
  const nll = meanLoss(loss, flags, 2, w);
  const total = r.overall.weight;
  return { inside: subset(r.groups[1], total, nll[1]), outside: subset(r.groups[0], total, nll[0]) };
}

interface Parsed {
  share: number;
  regretThreshold: number;
  mask: Uint8Array | null;
  groups: Int32Array | null;
  numGroups: number;
  names: ReadonlyArray<string> | null;
  bins: number;
  device: Device;
  weights: Float32Array | undefined;
}

export function parseSubsetOptions(o: Partial<Record<string, unknown>>, p: ParsedOutputs): Parsed {
  const share = optNumber(o.disagreementShare, 'disagreementShare', 0.2, 0, 1);
  const regretThreshold = optNumber(o.regretThreshold, 'regretThreshold', 1e-6, 0, Number.MAX_VALUE);
  const mask = o.mask === undefined ? null : toFlags(o.mask, 'mask', p.rows);
  let groups: Int32Array | null = null;
  let numGroups = 0;
  if (o.groups !== undefined) {
    groups = toLabels(o.groups, 'groups', p.rows);
    let max = -1;
    for (let i = 0; i < groups.length; i++) {
      if (groups[i] < 0) throw rangeError(`groups[${i}] = ${groups[i]}: expected a group id >= 0`);
      max = Math.max(max, groups[i]);
    }
    numGroups = optInt(o.numGroups, 'numGroups', max + 1, 1, limits().maxIds);
    if (max >= numGroups) throw rangeError(`groups: contains id ${max} but numGroups is ${numGroups}`);
  } else if (o.numGroups !== undefined) throw rangeError('numGroups: given without groups');
  let names: ReadonlyArray<string> | null = null;
  if (o.groupNames !== undefined) {
    if (!groups) throw rangeError('groupNames: given without groups');
    if (!Array.isArray(o.groupNames) || o.groupNames.some((n) => typeof n !== 'string')) throw typeError('groupNames: expected an array of strings');
    if (o.groupNames.length !== numGroups) throw rangeError(`groupNames: expected ${numGroups} names (one per group), got ${o.groupNames.length}`);
    names = o.groupNames as string[];
  }
  return {
    share, regretThreshold, mask, groups, numGroups, names, bins: optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins), device: parseRowOptions(o).device,
    weights: auditWeights(o.weights, p.rows),
  };
}

export function* hardSubsetSteps(p: ParsedOutputs, rows: RowAudit, o: Parsed): Steps<HardSubsets> {
  const B = p.rows, mixture = p.mixture!, labels = p.labels!;
  const dis = rows.disagreement!, regret = rows.regret!, loss = rows.loss!;
  const w = o.weights;
  const opts = { bins: o.bins, numGroups: 2, device: o.device, weights: w };
  // disagreement: at or above the (1 - share) quantile, and positive
  const sorted = sortedCopy(dis);
  const threshold = o.share > 0 ? quantileSorted(sorted, 1 - o.share) : Infinity;
  const inDis = new Int32Array(B);
  let disSum = 0, regSum = 0;
  for (let i = 0; i < B; i++) {
    inDis[i] = dis[i] >= threshold && dis[i] > 0 ? 1 : 0;
    disSum += dis[i];
  }
  const rDis = yield* groupsStep(mixture, labels, inDis, opts);
  const inReg = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    inReg[i] = regret[i] > o.regretThreshold ? 1 : 0;
    regSum += regret[i];
  }
  const rReg = yield* groupsStep(mixture, labels, inReg, opts);
  let mask: SubsetSplit | null = null;
  if (o.mask) {
    const m = Int32Array.from(o.mask);
    mask = split(yield* groupsStep(mixture, labels, m, opts), loss, m, w);
  }
  let groups: HardSubsets['groups'] = null;
  if (o.groups) {
    const r = yield* groupsStep(mixture, labels, o.groups, { bins: o.bins, numGroups: o.numGroups, device: o.device, weights: w });
    const nll = meanLoss(loss, o.groups, o.numGroups, w);
    groups = {
      groups: r.groups.map((g, i) => ({ ...subset(g, r.overall.weight, nll[i]), group: i, name: o.names ? o.names[i] : null })),
      worst: { ece: r.worst.ece?.group ?? null, accuracy: r.worst.accuracy?.group ?? null },
    };
  }
  const all = rDis.overall;
  return {
    rows: B,
    overall: { rows: B, share: 1, accuracy: all.accuracy, ece: all.ece, nll: meanLoss(loss, new Int32Array(B), 1, w)[0], meanConfidence: meanConfidence(all.bins.weight, all.bins.meanConfidence, all.weight) },
    disagreement: { ...split(rDis, loss, inDis, w), share: o.share, threshold, mean: disSum / B },
    regret: { ...split(rReg, loss, inReg, w), threshold: o.regretThreshold, mean: regSum / B },
    mask,
    groups,
  };
}

function meanConfidence(weight: Float64Array, conf: Float64Array, total: number): number {
  let s = 0;
  for (let b = 0; b < weight.length; b++) if (weight[b] > 0) s += weight[b] * conf[b];
  return s / total;
}

function* steps(outputs: unknown, options: unknown): Steps<HardSubsets> {
  const o = readOptions(options, 'options', ['disagreementShare', 'regretThreshold', 'mask', 'groups', 'numGroups', 'groupNames', 'bins', 'sumTolerance', 'device', 'weights']);
  const p = parseOutputs(outputs, ['expertProbs', 'mixture', 'labels']);
  const so = parseSubsetOptions(o, p);
  const rows = yield* rowAuditSteps(p, parseRowOptions(o));
  return yield* hardSubsetSteps(p, rows, so);
}

/**
 * Accuracy, ECE and NLL of the blend on the hard subsets (high disagreement, positive regret, a
 * user mask, user groups).
 *
 * @example
 * const h = hardSubsetsSync({ routing, expertProbs, mixture, labels }, { groups: regionOfEachRow });
 * h.disagreement.inside.ece; h.regret.inside.rows; h.groups?.worst.ece;
 */
export function hardSubsetsSync(outputs: MoEOutputs, options?: HardSubsetOptions): HardSubsets {
  return runSync(steps(outputs, options));
}

/** {@link hardSubsetsSync} off the event loop. */
export function hardSubsets(outputs: MoEOutputs, options?: HardSubsetOptions): Promise<HardSubsets> {
  return withCallerStack(() => runAsync(steps(outputs, options)));
}
