import { describe, expect, it } from 'vitest';
import { drift, matrix, type Matrix } from '../src/index.js';
import { column, refKs } from './drift-reference.js';
import { rng } from './reference.js';

function data(seed: number, n: number, d: number, shift: number): Matrix {
  const r = rng(seed);
  const x = new Float32Array(n * d);
  for (let i = 0; i < n * d; i++) x[i] = r.normal() + shift * (i % d);
  return matrix(x, n, d);
}

const slice = (m: Matrix, from: number, to: number) => matrix(m.data.slice(from * m.cols, to * m.cols), to - from, m.cols);

describe('DriftMonitor', () => {
  const ref = data(1, 5000, 5, 0);
  const cur = data(2, 4000, 5, 0.04);

  it('windows merged in any order equal one window with every row; PSI equals the batch PSI exactly', async () => {
    const monitor = await drift.DriftMonitor.fromReference(ref, { bins: 10, refinement: 8 });
    expect([monitor.features, monitor.bins, monitor.refinement, monitor.referenceRows, monitor.rows]).toEqual([5, 10, 8, 5000, 0]);
    const all = monitor.emptyCopy();
    await all.update(cur);
    const hours = [0, 700, 701, 2500, 4000];
    const windows: drift.DriftMonitor[] = [];
    for (let k = 0; k + 1 < hours.length; k++) {
      const w = monitor.emptyCopy();
      await w.update(slice(cur, hours[k], hours[k + 1]));
      windows.push(w);
    }
    const rolled = monitor.emptyCopy();
    for (const w of [windows[2], windows[0], windows[3], windows[1]]) rolled.merge(w);
    expect(rolled.rows).toBe(4000);
    expect(rolled.chunks).toBe(4);
    expect(all.chunks).toBe(1);
    expect(rolled.toJSON().state.slice(8)).toEqual(all.toJSON().state.slice(8));  // identical counts
    const a = all.result({ alpha: 0.01 }), b = rolled.result({ alpha: 0.01 });
    expect(b).toEqual(a);
    expect(a.statistic).toBe('histogram');
    const batch = drift.driftReportSync(ref, cur, { bins: 10, alpha: 0.01 });
    for (const f of a.features) {
      const e = batch.features.find((x) => x.feature === f.feature)!;
      expect(f.psi).toBe(e.psi);
      expect(f.statistic).toBeLessThanOrEqual(e.statistic);
      expect(e.statistic - f.statistic).toBeLessThan(0.02);  // 80 fine bins: close to the exact D
      expect(f.pValue).toBeGreaterThanOrEqual(e.pValue);
    }
  });

  it('the histogram statistic is the max gap over the fine cut points', () => {
    const m = drift.DriftMonitor.fromReferenceSync(ref, { bins: 5, refinement: 4 });
    m.updateSync(cur);
    const r = m.result();
    for (const f of r.features) {
      const a = column(ref, f.feature), b = column(cur, f.feature);
      const s = [...a].sort((x, y) => x - y);
      let best = 0;
      for (let k = 1; k < 20; k++) {
        const c = s[Math.ceil((k * a.length) / 20) - 1];
        const fr = a.filter((v) => v <= c).length / a.length, fc = b.filter((v) => v <= c).length / b.length;
        best = Math.max(best, Math.abs(fr - fc));
      }
      expect(Math.abs(f.statistic - best)).toBeLessThanOrEqual(1e-15);
      expect(f.statistic).toBeLessThanOrEqual(refKs(a, b).statistic);
    }
  });

  it('concurrent async updates compose exactly', async () => {
    const m = drift.DriftMonitor.fromReferenceSync(ref);
    await Promise.all([m.update(slice(cur, 0, 1000)), m.update(slice(cur, 1000, 3000)), m.update(slice(cur, 3000, 4000))]);
    const one = drift.DriftMonitor.fromReferenceSync(ref);
    one.updateSync(cur);
    expect(m.result()).toEqual(one.result());
    expect(m.rows).toBe(4000);
  });

  it('JSON round trip; reset; empty chunks are no-ops; empty windows throw', () => {
    const m = drift.DriftMonitor.fromReferenceSync(ref, { bins: 4, refinement: 3 });
    m.updateSync([]);
    m.updateSync(matrix(new Float32Array(0), 0, 5));
    expect(m.rows).toBe(0);
    expect(m.chunks).toBe(0);
    expect(() => m.result()).toThrow(/the window is empty/);
    m.updateSync(slice(cur, 0, 100));
    const back = drift.DriftMonitor.fromJSON(JSON.parse(JSON.stringify(m)));
    expect(back.result()).toEqual(m.result());
    expect([back.bins, back.refinement, back.features, back.rows]).toEqual([4, 3, 5, 100]);
    back.merge(m);
    expect(back.rows).toBe(200);
    m.reset();
    expect(m.rows).toBe(0);
    expect(JSON.stringify(m)).toBe(JSON.stringify(m.emptyCopy()));
  });

  it('featureNames, corrections and methods in the result', () => {
    const m = drift.DriftMonitor.fromReferenceSync(slice(ref, 0, 300));
    m.updateSync(slice(cur, 0, 200));
    const r = m.result({ featureNames: ['a', 'b', 'c', 'd', 'e'], correction: 'bonferroni', method: 'exact' });
    for (const f of r.features) {
      expect(f.name).toBe('abcde'[f.feature]);
      expect(f.method).toBe('exact');
      expect(f.adjustedPValue).toBe(Math.min(1, f.pValue * 5));
    }
    const asymp = m.result({ method: 'asymp' });
    for (const f of asymp.features) expect(f.method).toBe('asymp');
  });

  it('a constant reference feature and ties', () => {
    const x = new Float32Array(200 * 2);
    for (let i = 0; i < 200; i++) { x[2 * i] = 3; x[2 * i + 1] = i % 4; }
    const m = drift.DriftMonitor.fromReferenceSync(matrix(x, 200, 2), { bins: 10, refinement: 2 });
    m.updateSync(matrix(x, 200, 2));
    const same = m.result();
    for (const f of same.features) { expect(f.statistic).toBe(0); expect(f.psi).toBe(0); expect(f.pValue).toBe(1); }
    m.updateSync(matrix(new Float32Array([4, 0, 4, 7]), 2, 2));
    const r = m.result();
    const batch = drift.psiSync(matrix(x, 200, 2), matrix(new Float32Array([...x, 4, 0, 4, 7]), 202, 2));
    for (const f of r.features) expect(f.psi).toBe(batch.psi[f.feature]);
  });
});
