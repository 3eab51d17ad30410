/**
 * Routing statistics: how peaked the router is (entropy of each row's routing weights, its mean
 * and distribution), how the experts are used (top-1 counts and routing mass per expert), and how
 * often no expert dominates a row.
 */
import { withCallerStack } from '../errors.js';
import { type Device, type MatrixInput, optInt, optNumber, readOptions } from '../validate.js';
import { type ExpertIdsInput, type ParsedOutputs, parseOutputs } from './moe-outputs.js';
import { type Distribution, distribution } from './distribution.js';
import { runAsync, runSync, type Steps } from './native-steps.js';
import { type RowAudit, parseRowOptions, rowAuditSteps } from './row-audit.js';

export interface RoutingStatsOptions {
  /** Active-expert layout: the ids of the experts in each row's slots (B x k). */
  experts?: ExpertIdsInput;
  numExperts?: number;
  /**
   * A row has no dominant expert when its largest routing weight is below this (default 0.5: no
   * expert holds a majority of the row's routing mass).
   */
  dominance?: number;
  /** Bins of the entropy histogram on [0, log K] (default 10). */
  entropyBins?: number;
  sumTolerance?: number;
  device?: Device;
}

export interface ExpertUsage {
  /** Rows whose top-1 expert is this one, per expert. */
  top1Count: Float64Array;
  /** top1Count / rows. */
  top1Share: Float64Array;
  /** Sum of the expert's routing weights over the rows. */
  mass: Float64Array;
  /** mass / rows (sums to 1 over the experts). */
  massShare: Float64Array;
}

export interface RoutingStats {
  rows: number;
  slots: number;
  experts: number;
  /** Routing entropy in nats: mean, quantiles, histogram on [0, log K]. */
  entropy: Distribution;
  /** log K: the entropy of uniform routing over the K slots. */
  maxEntropy: number;
  /** Mean entropy / log K (NaN when K = 1). */
  normalizedEntropy: number;
  /** Distribution of the top-1 routing weight. */
  maxWeight: Distribution;
  usage: ExpertUsage;
  /** The threshold used for {@link noDominantShare}. */
  dominance: number;
  /** Share of rows whose largest routing weight is below `dominance`. */
  noDominantShare: number;
}

export interface ParsedRoutingOptions {
  dominance: number;
  entropyBins: number;
}

export function parseRoutingOptions(o: Partial<Record<string, unknown>>): ParsedRoutingOptions {
  return { dominance: optNumber(o.dominance, 'dominance', 0.5, 0, 1), entropyBins: optInt(o.entropyBins, 'entropyBins', 10, 1, 10000) };
}

/** Expert usage from the top-1 ids and the routing weights. */
export function expertUsage(p: ParsedOutputs, top1: Int32Array): ExpertUsage {
  const E = p.experts, K = p.slots, B = p.rows;
  const top1Count = new Float64Array(E), mass = new Float64Array(E);
  for (let i = 0; i < B; i++) {
    top1Count[top1[i]]++;
    for (let k = 0; k < K; k++) mass[p.ids ? p.ids[i * K + k] : k] += p.routing.data[i * K + k];
  }
  return { top1Count, top1Share: top1Count.map((c) => c / B), mass, massShare: mass.map((m) => m / B) };
}

export function routingFromRows(p: ParsedOutputs, rows: RowAudit, o: ParsedRoutingOptions): RoutingStats {
  const maxEntropy = Math.log(p.slots);
  const entropy = distribution(rows.entropy, o.entropyBins, 0, maxEntropy > 0 ? maxEntropy : 1);
  let below = 0;
  for (let i = 0; i < p.rows; i++) if (rows.maxWeight[i] < o.dominance) below++;
  return {
    rows: p.rows, slots: p.slots, experts: p.experts,
    entropy, maxEntropy, normalizedEntropy: maxEntropy > 0 ? entropy.mean / maxEntropy : NaN,
    maxWeight: distribution(rows.maxWeight, o.entropyBins, 0, 1),
    usage: expertUsage(p, rows.top1),
    dominance: o.dominance,
    noDominantShare: below / p.rows,
  };
}

function* steps(routing: unknown, options: unknown): Steps<RoutingStats> {
  const o = readOptions(options, 'options', ['experts', 'numExperts', 'dominance', 'entropyBins', 'sumTolerance', 'device']);
  const p = parseOutputs({ routing, experts: o.experts, numExperts: o.numExperts }, []);
  const ro = parseRoutingOptions(o);
  const rows = yield* rowAuditSteps(p, parseRowOptions(o));
  return routingFromRows(p, rows, ro);
}

/**
 * Routing statistics of B x K routing weights (rows summing to 1).
 *
 * @example
 * const s = routingStatsSync(routing);
 * s.entropy.mean; s.usage.top1Share; s.noDominantShare;
 */
export function routingStatsSync(routing: MatrixInput, options?: RoutingStatsOptions): RoutingStats {
  return runSync(steps(routing, options));
}

/** {@link routingStatsSync} off the event loop. */
export function routingStats(routing: MatrixInput, options?: RoutingStatsOptions): Promise<RoutingStats> {
  return withCallerStack(() => runAsync(steps(routing, options)));
}
