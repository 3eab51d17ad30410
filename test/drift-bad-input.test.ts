import { describe, expect, it } from 'vitest';
import { drift, matrix } from '../src/index.js';

const ref = matrix(new Float32Array([1, 2, 3, 4, 5, 6]), 3, 2);
const cur = matrix(new Float32Array([1, 2, 3, 5]), 2, 2);

function throwsWith(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp) {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err, 'expected a throw').toBeInstanceOf(type);
  expect((err as Error).message).toMatch(message);
  expect((err as { code?: string }).code).toMatch(/^CALMOE_/);
}

const withNaN = (m: typeof ref, at: number) => {
  const x = new Float32Array(m.data);
  x[at] = NaN;
  return matrix(x, m.rows, m.cols);
};

// Every batch entry point takes (reference, current, options).
const batch = [
  ['ksTestSync', (a: unknown, b: unknown, o?: unknown) => drift.ksTestSync(a as never, b as never, o as never)],
  ['psiSync', (a: unknown, b: unknown, o?: unknown) => drift.psiSync(a as never, b as never, o as never)],
  ['driftReportSync', (a: unknown, b: unknown, o?: unknown) => drift.driftReportSync(a as never, b as never, o as never)],
] as const;

describe('drift: bad input gives a named TypeError/RangeError', () => {
  for (const [name, fn] of batch) {
    it(`${name}: matrices`, () => {
      throwsWith(() => fn(new Float32Array(4), cur), TypeError, /^reference: expected \{ data: Float32Array, rows, cols \}/);
      throwsWith(() => fn(ref, { data: [1, 2], rows: 1, cols: 2 }), TypeError, /current\.data: expected a Float32Array/);
      throwsWith(() => fn(ref, { data: new Float32Array(5), rows: 2, cols: 2 }), RangeError, /current: data has 5 elements but rows x cols = 2 x 2 = 4/);
      throwsWith(() => fn([], cur), RangeError, /reference: expected at least one row/);
      throwsWith(() => fn(ref, { data: new Float32Array(0), rows: 0, cols: 2 }), RangeError, /current: expected at least one row/);
      throwsWith(() => fn(ref, [[1, 2, 3]]), RangeError, /current: has 3 columns \(features\) but reference has 2/);
      throwsWith(() => fn([[1, 2], [3]], cur), RangeError, /reference\[1\]: expected 2 numbers/);
      throwsWith(() => fn([[1, '2']], cur), TypeError, /reference\[0\]\[1\]: expected a number/);
    });

    it(`${name}: NaN is rejected naming the matrix, row and column`, () => {
      throwsWith(() => fn(withNaN(ref, 3), cur), RangeError, /^reference: row 1, column 1 is NaN/);
      throwsWith(() => fn(ref, withNaN(cur, 2)), RangeError, /^current: row 1, column 0 is NaN/);
      throwsWith(() => fn([[1, NaN]], [[1, 2]]), RangeError, /reference: row 0, column 1 is NaN/);
    });

    it(`${name}: options`, () => {
      throwsWith(() => fn(ref, cur, { bogus: 1 }), RangeError, /options: unknown option 'bogus'/);
      throwsWith(() => fn(ref, cur, 5), TypeError, /options: expected an object/);
      throwsWith(() => fn(ref, cur, { device: 'gpu' }), RangeError, /device: expected one of 'auto', 'cpu', 'cuda'/);
    });
  }

  it('method, bins, epsilon, alpha, correction, featureNames', () => {
    throwsWith(() => drift.ksTestSync(ref, cur, { method: 'fast' as never }), RangeError, /method: expected one of 'auto', 'exact', 'asymp', got 'fast'/);
    throwsWith(() => drift.ksTestSync(ref, cur, { method: 1 as never }), TypeError, /method: expected one of/);
    throwsWith(() => drift.psiSync(ref, cur, { bins: 0 }), RangeError, /bins: expected an integer in \[1, 65536\], got 0/);
    throwsWith(() => drift.psiSync(ref, cur, { bins: 2.5 }), RangeError, /bins/);
    throwsWith(() => drift.psiSync(ref, cur, { bins: '10' as never }), TypeError, /bins: expected an integer/);
    throwsWith(() => drift.psiSync(ref, cur, { epsilon: 0 }), RangeError, /epsilon: expected a number in \(0, 1\], got 0/);
    throwsWith(() => drift.psiSync(ref, cur, { epsilon: 2 }), RangeError, /epsilon: expected a number in \[0, 1\], got 2/);
    throwsWith(() => drift.driftReportSync(ref, cur, { alpha: 1.5 }), RangeError, /alpha: expected a number in \[0, 1\], got 1\.5/);
    throwsWith(() => drift.driftReportSync(ref, cur, { alpha: NaN }), RangeError, /alpha/);
    throwsWith(() => drift.driftReportSync(ref, cur, { correction: 'holm' as never }), RangeError, /correction: expected one of 'bh', 'by', 'bonferroni', 'none'/);
    throwsWith(() => drift.driftReportSync(ref, cur, { featureNames: ['a'] }), RangeError, /featureNames: expected 2 names \(one per feature\), got 1/);
    throwsWith(() => drift.driftReportSync(ref, cur, { featureNames: ['a', 3] as never }), TypeError, /featureNames\[1\]: expected a string/);
    throwsWith(() => drift.driftReportSync(ref, cur, { featureNames: 'ab' as never }), TypeError, /featureNames: expected an array of strings/);
  });

  it('ksPValue', () => {
    throwsWith(() => drift.ksPValue(1.5, 3, 4), RangeError, /statistic: expected a number in \[0, 1\], got 1\.5/);
    throwsWith(() => drift.ksPValue(NaN, 3, 4), RangeError, /statistic/);
    throwsWith(() => drift.ksPValue('0.5' as never, 3, 4), TypeError, /statistic: expected a number/);
    throwsWith(() => drift.ksPValue(0.5, 0, 4), RangeError, /n1: expected a sample size in \[1, 2147483647\], got 0/);
    throwsWith(() => drift.ksPValue(0.5, 3, 2.5), RangeError, /n2: expected a sample size/);
    throwsWith(() => drift.ksPValue(0.5, 3, '4' as never), TypeError, /n2: expected an integer/);
    throwsWith(() => drift.ksPValue(0.5, 3, 4, { method: 'x' as never }), RangeError, /method: expected one of/);
    throwsWith(() => drift.ksPValue(0.5, 3, 4, { mode: 'exact' } as never), RangeError, /options: unknown option 'mode'/);
  });

  it('adjustPValues', () => {
    throwsWith(() => drift.adjustPValues([0.5, 1.5]), RangeError, /pValues\[1\] = 1\.5 is not a probability in \[0, 1\]/);
    throwsWith(() => drift.adjustPValues([0.5, NaN]), RangeError, /pValues\[1\] = nan is not a probability/i);
    throwsWith(() => drift.adjustPValues([0.5, '0.1'] as never), TypeError, /pValues\[1\]: expected a number/);
    throwsWith(() => drift.adjustPValues(null as never), TypeError, /pValues: expected an array of numbers/);
    throwsWith(() => drift.adjustPValues([0.5], 'holm' as never), RangeError, /method: expected one of 'bh', 'by', 'bonferroni', 'none'/);
    expect(drift.adjustPValues([])).toEqual(new Float64Array(0));
  });

  it('async variants reject with the same errors and the caller in the stack', async () => {
    await expect(drift.ksTest(withNaN(ref, 3), cur)).rejects.toThrow(/reference: row 1, column 1 is NaN/);
    await expect(drift.psi(ref, [[1]])).rejects.toThrow(RangeError);
    await expect(drift.driftReport(ref, cur, { alpha: -1 })).rejects.toThrow(/alpha/);
    await expect(drift.DriftMonitor.fromReference([])).rejects.toThrow(/reference: expected at least one row/);
    await expect(drift.DriftMonitor.fromReference(withNaN(ref, 5))).rejects.toThrow(/reference: row 2, column 1 is NaN/);
    const m = drift.DriftMonitor.fromReferenceSync(ref);
    await expect(m.update(withNaN(cur, 1))).rejects.toThrow(/current: row 0, column 1 is NaN/);
    await expect(m.update(cur, { device: 'tpu' as never })).rejects.toThrow(/device: expected one of/);
    expect(m.rows).toBe(0);
    let err: Error | undefined;
    try { await drift.driftReport(ref, withNaN(cur, 0)); } catch (e) { err = e as Error; }
    expect(err).toBeInstanceOf(RangeError);
    expect(err!.stack).toMatch(/drift-bad-input\.test\.ts/);
  });

  it('DriftMonitor', () => {
    throwsWith(() => drift.DriftMonitor.fromReferenceSync([], {}), RangeError, /reference: expected at least one row/);
    throwsWith(() => drift.DriftMonitor.fromReferenceSync(withNaN(ref, 1)), RangeError, /reference: row 0, column 1 is NaN/);
    throwsWith(() => drift.DriftMonitor.fromReferenceSync(ref, { bins: 0 }), RangeError, /bins: expected an integer in \[1, 65536\]/);
    throwsWith(() => drift.DriftMonitor.fromReferenceSync(ref, { refinement: 0 }), RangeError, /refinement: expected an integer/);
    throwsWith(() => drift.DriftMonitor.fromReferenceSync(ref, { bins: 1000, refinement: 1000 }), RangeError, /bins x refinement: 1000000 histogram bins per feature/);
    throwsWith(() => drift.DriftMonitor.fromReferenceSync(ref, { window: 5 } as never), RangeError, /unknown option 'window'/);
    throwsWith(() => new drift.DriftMonitor(Symbol('x'), new BigUint64Array(8)), TypeError, /use DriftMonitor\.fromReference/);
    const m = drift.DriftMonitor.fromReferenceSync(ref, { bins: 2, refinement: 2 });
    throwsWith(() => m.updateSync([[1, 2, 3]]), RangeError, /current: has 3 columns \(features\) but the monitor's reference has 2/);
    throwsWith(() => m.updateSync(withNaN(cur, 3)), RangeError, /current: row 1, column 1 is NaN/);
    expect(m.rows).toBe(0);  // the rejected chunk left the window empty
    throwsWith(() => m.result(), RangeError, /the window is empty/);
    throwsWith(() => m.result({ alpha: 2 }), RangeError, /alpha/);
    throwsWith(() => m.merge({} as never), TypeError, /other: expected a DriftMonitor/);
    throwsWith(() => m.merge(drift.DriftMonitor.fromReferenceSync(cur, { bins: 2, refinement: 2 })), RangeError, /merge: monitors differ/);
    throwsWith(() => m.merge(drift.DriftMonitor.fromReferenceSync(matrix(new Float32Array([9, 9, 8, 8, 7, 7]), 3, 2), { bins: 2, refinement: 2 })), RangeError, /different references/);
    throwsWith(() => drift.DriftMonitor.fromJSON({ format: 'x' }), TypeError, /expected the output of DriftMonitor\.toJSON/);
    const j = m.toJSON();
    throwsWith(() => drift.DriftMonitor.fromJSON({ ...j, state: j.state.slice(1) }), RangeError, /not a calmoe drift monitor state|corrupt/);
    throwsWith(() => drift.DriftMonitor.fromJSON({ ...j, state: [...j.state.slice(0, -1), '-1'] }), RangeError, /json\.state\[\d+\]: expected a decimal integer string/);
    throwsWith(() => drift.DriftMonitor.fromJSON({ ...j, state: [...j.state.slice(0, -1), '18446744073709551616'] }), RangeError, /out of range/);
    const tampered = [...j.state];
    tampered[tampered.length - 1] = '7';  // a current count that does not add up
    throwsWith(() => drift.DriftMonitor.fromJSON({ ...j, state: tampered }), RangeError, /do not add up/);
  });
});
