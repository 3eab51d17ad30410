/**
 * Per-row audit quantities of a MoE's outputs, from one native pass (calmoe/audit.h): the top-1
 * expert, the routing entropy, the routing-weighted disagreement of the experts with the blend,
 * the blend's loss and its regret against the best active expert.
 *
 * Native, not TypeScript: these are the per-row terms of the robust-filtered objective
 * (shared/DESIGN.md "Objectives"), written once in native/core/audit.h for audits and training
 * alike; the pass reads all B x K x C expert probabilities, validates them, and runs threaded
 * (or on the GPU) off the event loop.
 */
import { withCallerStack } from '../errors.js';
import type { NativeMoeAuditArgs } from '../native.js';
import { type Device, optDevice, optNumber, readOptions } from '../validate.js';
import { type MoEOutputs, type ParsedOutputs, parseOutputs } from './moe-outputs.js';
import { rowsStep, runAsync, runSync, type Steps } from './native-steps.js';

export interface RowAuditOptions {
  /** Allowed |row sum - 1| of routing and probability rows (default 1e-3). */
  sumTolerance?: number;
  device?: Device;
}

export interface RowAudit {
  rows: number;
  /** Routing columns per row (K). */
  slots: number;
  /** Number of experts (E). */
  experts: number;
  /** Top-1 expert of each row: the largest routing weight, ties to the lower expert id. */
  top1: Int32Array;
  /** The top-1 routing weight. */
  maxWeight: Float32Array;
  /** -sum_k r_k log r_k (nats). */
  entropy: Float32Array;
  /** sum_k r_k ||p_k - p||^2 (needs expertProbs and mixture). */
  disagreement: Float32Array | null;
  /** -log max(p[y], 1e-12) of the blend (needs mixture and labels). */
  loss: Float32Array | null;
  /** relu(loss - min over active experts of -log max(p_k[y], 1e-12)) (needs all three). */
  regret: Float32Array | null;
  /** The top-1 expert's probabilities, B x C row-major (needs expertProbs). */
  top1Probs: Float32Array | null;
}

export interface ParsedRowOptions {
  sumTolerance: number;
  device: Device;
}

export function parseRowOptions(o: Partial<Record<string, unknown>>): ParsedRowOptions {
  return { sumTolerance: optNumber(o.sumTolerance, 'sumTolerance', 1e-3, 0, 1), device: optDevice(o.device) };
}

/** The native arguments computing every output the given inputs allow. */
export function nativeArgs(p: ParsedOutputs, o: ParsedRowOptions): NativeMoeAuditArgs {
  const P = !!p.expertProbs, m = !!p.mixture, y = !!p.labels;
  return {
    rows: p.rows, slots: p.slots, experts: p.experts, classes: p.classes || undefined,
    routing: p.routing.data, expertIds: p.ids, expertProbs: p.expertProbs?.data, mixture: p.mixture?.data, labels: p.labels,
    sumTolerance: o.sumTolerance, device: o.device,
    outputs: { top1: true, maxWeight: true, entropy: true, disagreement: P && m, loss: m && y, regret: P && m && y, ownProbs: P },
  };
}

export function* rowAuditSteps(p: ParsedOutputs, o: ParsedRowOptions): Steps<RowAudit> {
  const r = yield* rowsStep(nativeArgs(p, o));
  return {
    rows: p.rows, slots: p.slots, experts: p.experts,
    top1: r.top1!, maxWeight: r.maxWeight!, entropy: r.entropy!,
    disagreement: r.disagreement ?? null, loss: r.loss ?? null, regret: r.regret ?? null, top1Probs: r.ownProbs ?? null,
  };
}

function request(outputs: unknown, options: unknown) {
  const o = readOptions(options, 'options', ['sumTolerance', 'device']);
  return rowAuditSteps(parseOutputs(outputs, []), parseRowOptions(o));
}

/**
 * Per-row audit quantities; those whose inputs are missing are null.
 *
 * @example
 * const rows = rowAuditSync({ routing, expertProbs, mixture, labels });
 * rows.disagreement; rows.regret; rows.top1;
 */
export function rowAuditSync(outputs: MoEOutputs, options?: RowAuditOptions): RowAudit {
  return runSync(request(outputs, options));
}

/** {@link rowAuditSync} off the event loop. */
export function rowAudit(outputs: MoEOutputs, options?: RowAuditOptions): Promise<RowAudit> {
  return withCallerStack(() => runAsync(request(outputs, options)));
}
