/**
 * The whole audit of a MoE's outputs in one call: per-expert load and calibration, hard subsets,
 * routing statistics, from a single per-row native pass plus one grouped calibration pass per
 * split.
 */
import { withCallerStack } from '../errors.js';
import { type Device, type VectorInput, optInt, readOptions } from '../validate.js';
import { type ExpertAudit, expertAuditSteps, parseTemperatures } from './expert-audit.js';
import { type HardSubsets, hardSubsetSteps, parseSubsetOptions } from './hard-subsets.js';
import { type MoEOutputs, parseOutputs } from './moe-outputs.js';
import { runAsync, runSync, type Steps } from './native-steps.js';
import { type RoutingStats, parseRoutingOptions, routingFromRows } from './routing-stats.js';
import { parseRowOptions, rowAuditSteps } from './row-audit.js';
import type { LabelsInput } from '../validate.js';
import { limits } from '../limits.js';

export interface MoEAuditOptions {
  /** Calibration bins (default 15, right-closed). */
  bins?: number;
  /** Each expert's temperature, shown in the per-expert table. */
  temperatures?: ArrayLike<number>;
  /** Share of rows with the highest disagreement forming that subset (default 0.2). */
  disagreementShare?: number;
  /** Regret above this puts a row in the regret subset (default 1e-6). */
  regretThreshold?: number;
  mask?: Uint8Array | ReadonlyArray<boolean | 0 | 1>;
  groups?: LabelsInput;
  numGroups?: number;
  groupNames?: ReadonlyArray<string>;
  /** A row has no dominant expert when its top routing weight is below this (default 0.5). */
  dominance?: number;
  /** Bins of the routing entropy histogram (default 10). */
  entropyBins?: number;
  sumTolerance?: number;
  device?: Device;
  /** Per-row weights: the calibration figures of the expert table and the subsets become weighted. */
  weights?: VectorInput;
}

export interface MoEAudit {
  rows: number;
  experts: ExpertAudit;
  subsets: HardSubsets;
  routing: RoutingStats;
}

const KNOWN = [
  'bins', 'temperatures', 'disagreementShare', 'regretThreshold', 'mask', 'groups', 'numGroups', 'groupNames',
  'dominance', 'entropyBins', 'sumTolerance', 'device', 'weights',
] as const;

function* steps(outputs: unknown, options: unknown): Steps<MoEAudit> {
  const o = readOptions(options, 'options', KNOWN);
  const p = parseOutputs(outputs, ['expertProbs', 'mixture', 'labels']);
  const bins = optInt(o.bins, 'bins', 15, 1, limits().maxCalibrationBins);
  const temperatures = parseTemperatures(o.temperatures, p.experts);
  const so = parseSubsetOptions(o, p);
  const ro = parseRoutingOptions(o);
  const rowOpts = parseRowOptions(o);
  const rows = yield* rowAuditSteps(p, rowOpts);
  const experts = yield* expertAuditSteps(p, rows, bins, temperatures, rowOpts.device, so.weights);
  const subsets = yield* hardSubsetSteps(p, rows, so);
  return { rows: p.rows, experts, subsets, routing: routingFromRows(p, rows, ro) };
}

/**
 * Per-expert audit, hard subsets and routing statistics of a MoE's outputs.
 *
 * @example
 * const a = moeAuditSync({ routing, expertProbs, mixture, labels }, { temperatures });
 * a.experts.experts[0].own.ece; a.subsets.regret.inside.ece; a.routing.noDominantShare;
 */
export function moeAuditSync(outputs: MoEOutputs, options?: MoEAuditOptions): MoEAudit {
  return runSync(steps(outputs, options));
}

/** {@link moeAuditSync} off the event loop. */
export function moeAudit(outputs: MoEOutputs, options?: MoEAuditOptions): Promise<MoEAudit> {
  return withCallerStack(() => runAsync(steps(outputs, options)));
}
