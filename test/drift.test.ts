import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { drift, matrix, type Matrix } from '../src/index.js';
import { column, generate, refBh, refExactP, refKs, refPsi, type Spec } from './drift-reference.js';
import { rng } from './reference.js';

interface KsCase {
  name: string;
  about: string;
  reference: { seed: number; rows: number; specs: Spec[] };
  current: { seed: number; rows: number; specs: Spec[] };
  method: 'auto' | 'exact' | 'asymp';
  bins: number;
  alpha: number;
  expect: {
    statistic: number[]; pValue: number[]; sign: number[]; methodUsed: Array<'exact' | 'asymp'>;
    psi: number[]; psiCuts: number[][]; adjustedPValue: number[];
  };
}

const golden = JSON.parse(readFileSync(new URL('./fixtures/drift-golden.json', import.meta.url), 'utf8')) as {
  source: string;
  tolerance: number;
  ksCases: KsCase[];
  kstwo: Array<[number, number, number]>;
  exact: Array<[number, number, number, number, 'exact' | 'asymp']>;
  corrections: Array<{ p: number[]; bh: number[]; by: number[]; bonferroni: number[] }>;
};

// |got - want| <= 1e-6 (the fixture's tolerance), and for p-values above 1e-250 also within
// 1e-7 relative: small p-values must keep their digits (they decide the ranking).
function expectP(got: number, want: number, what: string) {
  expect(Math.abs(got - want), `${what}: got ${got}, want ${want} (${golden.source})`).toBeLessThanOrEqual(golden.tolerance);
  if (want > 1e-250) expect(Math.abs(got - want) / want, `${what} relative: got ${got}, want ${want}`).toBeLessThanOrEqual(1e-7);
  else expect(got).toBeLessThanOrEqual(1e-240);
}

describe('golden values from SciPy (fixtures/drift-golden.json)', () => {
  for (const g of golden.ksCases) {
    it(`${g.name}: ${g.about}`, () => {
      const ref = generate(g.reference.seed, g.reference.rows, g.reference.specs);
      const cur = generate(g.current.seed, g.current.rows, g.current.specs);
      const ks = drift.ksTestSync(ref, cur, { method: g.method });
      const p = drift.psiSync(ref, cur, { bins: g.bins });
      const rep = drift.driftReportSync(ref, cur, { method: g.method, bins: g.bins, alpha: g.alpha });
      for (let f = 0; f < ref.cols; f++) {
        expect(Math.abs(ks.statistic[f] - g.expect.statistic[f]), `statistic[${f}]`).toBeLessThanOrEqual(1e-12);
        expectP(ks.pValue[f], g.expect.pValue[f], `pValue[${f}]`);
        expect(ks.sign[f], `sign[${f}]`).toBe(g.expect.sign[f]);
        expect(ks.method[f], `method[${f}]`).toBe(g.expect.methodUsed[f]);
        expect(Math.abs(p.psi[f] - g.expect.psi[f]), `psi[${f}]`).toBeLessThanOrEqual(1e-9 * Math.max(1, g.expect.psi[f]));
        expect(Array.from(p.cutPoints.subarray(f * (g.bins - 1), (f + 1) * (g.bins - 1)))).toEqual(g.expect.psiCuts[f]);
        const row = rep.features.find((x) => x.feature === f)!;
        expectP(row.adjustedPValue, g.expect.adjustedPValue[f], `adjustedPValue[${f}]`);
        expect(row.pValue).toBe(ks.pValue[f]);
        expect(row.psi).toBe(p.psi[f]);
      }
    });
  }

  it(`kstwo.sf over every branch (${golden.kstwo.length} points) through ksPValue(x, 2n, 2n, 'asymp')`, () => {
    let worst = 0;
    for (const [n, x, want] of golden.kstwo) {
      const got = drift.ksPValue(x, 2 * n, 2 * n, { method: 'asymp' });
      expect(got.method).toBe('asymp');
      expectP(got.pValue, want, `kstwo.sf(${x}, ${n})`);
      worst = Math.max(worst, Math.abs(got.pValue - want));
    }
    expect(worst).toBeLessThan(1e-12);  // observed ~3e-14
  });

  it(`exact two-sample null distribution (${golden.exact.length} points), including SciPy's fallbacks`, () => {
    for (const [n1, n2, d, want, method] of golden.exact) {
      const got = drift.ksPValue(d, n1, n2, { method: 'exact' });
      expect(got.method, `(${n1}, ${n2}, ${d})`).toBe(method);
      expectP(got.pValue, want, `exact(${n1}, ${n2}, ${d})`);
      expect(drift.ksPValue(d, n2, n1, { method: 'exact' }).pValue).toBe(got.pValue);  // symmetric
    }
  });

  it('BH, BY and Bonferroni as scipy.stats.false_discovery_control', () => {
    for (const c of golden.corrections) {
      const bh = drift.adjustPValues(c.p), by = drift.adjustPValues(c.p, 'by'), bo = drift.adjustPValues(c.p, 'bonferroni');
      c.p.forEach((_, i) => {
        expect(Math.abs(bh[i] - c.bh[i])).toBeLessThanOrEqual(1e-15 + 1e-12 * c.bh[i]);
        expect(Math.abs(by[i] - c.by[i])).toBeLessThanOrEqual(1e-15 + 1e-12 * c.by[i]);
        expect(Math.abs(bo[i] - c.bonferroni[i])).toBeLessThanOrEqual(1e-15 + 1e-12 * c.bonferroni[i]);
      });
      expect(Array.from(drift.adjustPValues(c.p, 'none'))).toEqual(c.p);
    }
  });
});

function randomPair(seed: number, n1: number, n2: number, d: number, ties: boolean): { ref: Matrix; cur: Matrix } {
  const r = rng(seed);
  const make = (n: number, shift: number) => {
    const x = new Float32Array(n * d);
    for (let i = 0; i < n * d; i++) {
      const v = r.normal() + shift * (i % d);
      x[i] = ties ? Math.round(v * 3) / 3 : v;
    }
    return matrix(x, n, d);
  };
  return { ref: make(n1, 0), cur: make(n2, 0.05) };
}

describe('parity with the naive reference', () => {
  let seed = 100;
  for (const [n1, n2] of [[1, 1], [1, 13], [13, 7], [200, 1977], [1977, 200], [4099, 3001], [12000, 11000]]) {
    for (const ties of [false, true]) {
      const s = seed++;
      it(`${n1} vs ${n2}${ties ? ' with ties' : ''}`, () => {
        const d = 4;
        const { ref, cur } = randomPair(s, n1, n2, d, ties);
        const ks = drift.ksTestSync(ref, cur);
        const bins = [1, 2, 10, 13][s % 4];
        const p = drift.psiSync(ref, cur, { bins });
        for (let f = 0; f < d; f++) {
          const a = column(ref, f), b = column(cur, f);
          const want = refKs(a, b);
          expect(ks.statistic[f]).toBe(want.statistic);
          expect(ks.sign[f]).toBe(want.minus > want.plus ? -1 : 1);
          expect(ks.method[f]).toBe(Math.max(n1, n2) <= 10000 ? 'exact' : 'asymp');
          if (n1 + n2 <= 20) expect(Math.abs(ks.pValue[f] - refExactP(n1, n2, ks.statistic[f]))).toBeLessThanOrEqual(1e-14);
          const wp = refPsi(a, b, bins);
          expect(Math.abs(p.psi[f] - wp.psi)).toBeLessThanOrEqual(1e-12 * Math.max(1, wp.psi));
          expect(Array.from(p.cutPoints.subarray(f * (bins - 1), (f + 1) * (bins - 1)))).toEqual(wp.cuts.map((c) => (c === 0 ? 0 : c)));  // -0 is reported as +0
          let rc = 0, cc = 0;
          for (let k = 0; k < bins; k++) { rc += p.referenceCounts[f * bins + k]; cc += p.currentCounts[f * bins + k]; }
          expect([rc, cc]).toEqual([n1, n2]);
        }
      });
    }
  }

  it('exact p-values for tiny samples equal the enumeration of all arrangements', () => {
    for (let n1 = 1; n1 <= 7; n1++) {
      for (let n2 = 1; n2 <= 7; n2++) {
        for (let h = 0; h <= n1 * n2; h++) {
          const d = h / (n1 * n2);
          const got = drift.ksPValue(d, n1, n2, { method: 'exact' });
          if (got.method === 'exact') expect(Math.abs(got.pValue - refExactP(n1, n2, got.statistic))).toBeLessThanOrEqual(1e-14);
        }
      }
    }
  });

  it('async equals sync', async () => {
    const { ref, cur } = randomPair(7, 3001, 2999, 5, true);
    expect(await drift.ksTest(ref, cur)).toEqual(drift.ksTestSync(ref, cur));
    expect(await drift.psi(ref, cur)).toEqual(drift.psiSync(ref, cur));
    expect(await drift.driftReport(ref, cur)).toEqual(drift.driftReportSync(ref, cur));
  });

  it('number[][] input equals the Float32Array matrix', () => {
    const { ref, cur } = randomPair(8, 50, 60, 3, false);
    const rows = (m: Matrix) => Array.from({ length: m.rows }, (_, r) => Array.from(m.data.subarray(r * m.cols, (r + 1) * m.cols)));
    expect(drift.driftReportSync(rows(ref), rows(cur))).toEqual(drift.driftReportSync(ref, cur));
  });
});

describe('driftReport', () => {
  it('ranks by adjusted p-value, then statistic, then PSI, then index; flags at alpha; names', () => {
    const { ref, cur } = randomPair(9, 2000, 2000, 6, false);  // feature f shifted by 0.05 f
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const r = drift.driftReportSync(ref, cur, { alpha: 0.01, featureNames: names });
    expect(r.features.map((f) => f.feature).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    for (let k = 0; k + 1 < r.features.length; k++) {
      const x = r.features[k], y = r.features[k + 1];
      const ok = x.adjustedPValue < y.adjustedPValue ||
        (x.adjustedPValue === y.adjustedPValue && (x.statistic > y.statistic ||
          (x.statistic === y.statistic && (x.psi > y.psi || (x.psi === y.psi && x.feature < y.feature)))));
      expect(ok, `order at ${k}`).toBe(true);
    }
    for (const f of r.features) {
      expect(f.name).toBe(names[f.feature]);
      expect(f.drifted).toBe(f.adjustedPValue <= 0.01);
    }
    expect(r.drifted).toBe(r.features.filter((f) => f.drifted).length);
    expect(r.features[0].feature).toBe(5);
    expect(r.statistic).toBe('exact');
    const bh = refBh(r.features.map((f) => f.pValue));
    r.features.forEach((f, i) => expect(Math.abs(f.adjustedPValue - bh[i])).toBeLessThanOrEqual(1e-15));
    const bonf = drift.driftReportSync(ref, cur, { correction: 'bonferroni' });
    for (const f of bonf.features) expect(f.adjustedPValue).toBe(Math.min(1, f.pValue * 6));
    const none = drift.driftReportSync(ref, cur, { correction: 'none' });
    for (const f of none.features) expect(f.adjustedPValue).toBe(f.pValue);
  });

  it('constant features, identical samples and special values give documented results', () => {
    const ref = matrix(new Float32Array([1, 5, -0, 2, 5, Infinity, 3, 5, -Infinity]), 3, 3);
    const same = drift.driftReportSync(ref, ref);
    for (const f of same.features) {
      expect(f.statistic).toBe(0);
      expect(f.pValue).toBe(1);
      expect(f.psi).toBe(0);
      expect(f.drifted).toBe(false);
    }
    const cur = matrix(new Float32Array([1, 6, 0, 2, 6, Infinity, 3, 6, -Infinity]), 3, 3);  // -0 == 0
    const r = drift.driftReportSync(ref, cur);
    const byFeature = (k: number) => r.features.find((f) => f.feature === k)!;
    expect(byFeature(0).statistic).toBe(0);
    expect(byFeature(2).statistic).toBe(0);
    expect(byFeature(1).statistic).toBe(1);  // constant 5 vs constant 6
    expect(byFeature(1).sign).toBe(1);
    expect(r.features[0].feature).toBe(1);
  });
});
