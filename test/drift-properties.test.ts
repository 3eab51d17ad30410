import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { drift, matrix, type Matrix } from '../src/index.js';
import { column, refKs } from './drift-reference.js';

// Samples with many ties (a small grid), continuous values, and the occasional +-Infinity / -0.
const value = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -4, max: 4 }).map((k) => k / 2) },
  { weight: 6, arbitrary: fc.double({ min: -1e3, max: 1e3, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom(Infinity, -Infinity, -0, 0) },
);

const sample = (d: number) =>
  fc.array(fc.array(value, { minLength: d, maxLength: d }), { minLength: 1, maxLength: 40 }).map((rows) => toMatrix(rows, d));

function toMatrix(rows: number[][], d: number): Matrix {
  const x = new Float32Array(rows.length * d);
  rows.forEach((r, i) => r.forEach((v, j) => { x[i * d + j] = v; }));
  return matrix(x, rows.length, d);
}

const pair = fc.integer({ min: 1, max: 4 }).chain((d) => fc.record({ ref: sample(d), cur: sample(d), method: fc.constantFrom('auto' as const, 'exact' as const, 'asymp' as const) }));

function shuffleRows(m: Matrix, seed: number): Matrix {
  const order = Array.from({ length: m.rows }, (_, i) => i).sort((a, b) => ((a * 7919 + seed) % 104729) - ((b * 7919 + seed) % 104729));
  const x = new Float32Array(m.data.length);
  order.forEach((src, dst) => x.set(m.data.subarray(src * m.cols, (src + 1) * m.cols), dst * m.cols));
  return matrix(x, m.rows, m.cols);
}

describe('drift properties', () => {
  it('statistic in [0, 1], p-value in [0, 1], PSI >= 0; the statistic equals the reference', () => {
    fc.assert(fc.property(pair, ({ ref, cur, method }) => {
      const r = drift.ksTestSync(ref, cur, { method });
      const p = drift.psiSync(ref, cur);
      for (let f = 0; f < ref.cols; f++) {
        expect(r.statistic[f]).toBeGreaterThanOrEqual(0);
        expect(r.statistic[f]).toBeLessThanOrEqual(1);
        expect(r.pValue[f]).toBeGreaterThanOrEqual(0);
        expect(r.pValue[f]).toBeLessThanOrEqual(1);
        expect(p.psi[f]).toBeGreaterThanOrEqual(0);
        expect(r.statistic[f]).toBe(refKs(column(ref, f), column(cur, f)).statistic);
      }
    }), { numRuns: 150 });
  });

  it('is symmetric in the two samples (statistic and p-value; the sign flips)', () => {
    fc.assert(fc.property(pair, ({ ref, cur, method }) => {
      const a = drift.ksTestSync(ref, cur, { method }), b = drift.ksTestSync(cur, ref, { method });
      expect(b.statistic).toEqual(a.statistic);
      expect(b.pValue).toEqual(a.pValue);
      for (let f = 0; f < ref.cols; f++) {
        const k = refKs(column(ref, f), column(cur, f));
        if (k.plus !== k.minus) expect(b.sign[f]).toBe(-a.sign[f]);
      }
    }), { numRuns: 120 });
  });

  it('is invariant to the order of rows (exactly)', () => {
    fc.assert(fc.property(pair, fc.integer({ min: 0, max: 1000 }), ({ ref, cur }, seed) => {
      const a = drift.driftReportSync(ref, cur);
      const b = drift.driftReportSync(shuffleRows(ref, seed), shuffleRows(cur, seed + 1));
      expect(b).toEqual(a);
    }), { numRuns: 100 });
  });

  it('a larger shift never lowers the statistic of a one-feature location shift', () => {
    fc.assert(fc.property(sample(1), fc.double({ min: 0, max: 10, noNaN: true }), (ref, s) => {
      const finite = Array.from(ref.data).every(Number.isFinite);
      fc.pre(finite);
      const shifted = (k: number) => matrix(ref.data.map((v) => v + k), ref.rows, 1);
      const d1 = drift.ksTestSync(ref, shifted(s)).statistic[0];
      const d2 = drift.ksTestSync(ref, shifted(2 * s + 1)).statistic[0];
      expect(d2).toBeGreaterThanOrEqual(d1);
    }), { numRuns: 60 });
  });

  it('adjusted p-values: BH in [p, 1], monotone in p; Bonferroni >= BH', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 60 }), (p) => {
      const bh = drift.adjustPValues(p), bo = drift.adjustPValues(p, 'bonferroni'), by = drift.adjustPValues(p, 'by');
      p.forEach((v, i) => {
        expect(bh[i]).toBeGreaterThanOrEqual(v);
        expect(bh[i]).toBeLessThanOrEqual(1);
        expect(bo[i]).toBeGreaterThanOrEqual(bh[i] - 1e-15);
        expect(by[i]).toBeGreaterThanOrEqual(bh[i] - 1e-15);
        p.forEach((w, j) => { if (v < w) expect(bh[i]).toBeLessThanOrEqual(bh[j]); });
      });
    }), { numRuns: 100 });
  });

  it('monitor: any chunking and merge order gives the one-shot state; PSI equals the batch PSI; histogram D <= D', () => {
    fc.assert(fc.property(pair, fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 5 }), ({ ref, cur }, cuts, refinement) => {
      const bins = 4;
      const one = drift.DriftMonitor.fromReferenceSync(ref, { bins, refinement });
      one.updateSync(cur);
      const merged = one.emptyCopy();
      const parts: drift.DriftMonitor[] = [];
      let at = 0;
      for (const c of cuts) {
        const part = one.emptyCopy();
        const len = Math.min(c, cur.rows - at);
        part.updateSync(matrix(cur.data.slice(at * cur.cols, (at + len) * cur.cols), len, cur.cols));
        parts.push(part);
        at += len;
      }
      const rest = one.emptyCopy();
      rest.updateSync(matrix(cur.data.slice(at * cur.cols), cur.rows - at, cur.cols));
      parts.push(rest);
      for (const p of parts.reverse()) merged.merge(p);
      const a = one.result(), b = merged.result();
      expect(b).toEqual(a);
      const batch = drift.driftReportSync(ref, cur, { bins });
      for (const f of a.features) {
        const e = batch.features.find((x) => x.feature === f.feature)!;
        expect(f.psi).toBe(e.psi);
        expect(f.statistic).toBeLessThanOrEqual(e.statistic);
        expect(f.pValue).toBeGreaterThanOrEqual(e.pValue - 1e-12);
      }
    }), { numRuns: 80 });
  });
});
