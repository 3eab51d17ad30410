/**
 * The difficult subset of a test pool: the rows where the model's experts disagree most (the top
 * `share` by the audit's routing-weighted disagreement sum_k r_k ||p_k - p||^2, with positive
 * disagreement), as the audit defines it (hardSubsets), returned as 0/1 row weights so that every
 * weighted metric (Brier too) can be computed on it.
 */
import { expertTensor } from '../audit/moe-outputs.js';
import { hardSubsetsSync } from '../audit/hard-subsets.js';
import { rowAuditSync } from '../audit/row-audit.js';
import type { MoEClassifier } from '../moe/classifier.js';
import type { Matrix } from '../validate.js';

export function difficultSubsetWeights(model: MoEClassifier, x: Matrix, y: Int32Array, share = 0.2): { weights: Float32Array; threshold: number; rows: number } {
  const p = model.predictSync(x, { returnRouting: true, returnExperts: true });
  const { experts, classes } = model.config;
  const outputs = { routing: p.routing.weights, expertProbs: expertTensor(p.experts!, x.rows, experts, classes), mixture: p.probs, labels: y };
  const dis = rowAuditSync(outputs).disagreement!;
  const threshold = hardSubsetsSync(outputs, { disagreementShare: share }).disagreement.threshold;
  const weights = Float32Array.from(dis, (v) => (v >= threshold && v > 0 ? 1 : 0));
  return { weights, threshold, rows: weights.reduce((a, b) => a + b, 0) };
}
