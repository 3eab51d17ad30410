/**
 * Multiple-testing corrections of p-values across features. 'bh': Benjamini-Hochberg step-up
 * adjusted p-values, min_{j >= i} p_(j) m / j capped at 1 (scipy.stats.false_discovery_control,
 * statsmodels fdr_bh); 'by': Benjamini-Yekutieli, the same times sum_{i<=m} 1/i; 'bonferroni':
 * min(1, m p); 'none'.
 */
import { typeError } from '../errors.js';
import { native } from '../native.js';
import { type Correction, CORRECTIONS } from './inputs.js';
import { optChoice } from '../validate.js';

/**
 * Adjusted p-values (same order as the input). Every p must be in [0, 1].
 *
 * @example
 * adjustPValues([0.01, 0.04, 0.03, 0.5]); // Float64Array [0.04, 0.0533, 0.0533, 0.5]
 */
export function adjustPValues(pValues: ArrayLike<number>, method?: Correction): Float64Array {
  if (pValues === null || typeof pValues !== 'object' || typeof pValues.length !== 'number') throw typeError('pValues: expected an array of numbers');
  const p = new Float64Array(pValues.length);
  for (let i = 0; i < p.length; i++) {
    const v = pValues[i] as unknown;
    if (typeof v !== 'number') throw typeError(`pValues[${i}]: expected a number`);
    p[i] = v;
  }
  return native().driftAdjust(p, optChoice(method, 'method', 'bh', CORRECTIONS));
}
