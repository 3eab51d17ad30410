import { describe, expect, it } from 'vitest';
import { backendInfo, losses } from '../src/index.js';
import { refTilted, rng } from './reference.js';

describe('tilted weights', () => {
  for (const n of [1, 13, 128, 1977]) {
    for (const eta of [-3, -0.5, 0, 0.5, 2, 40]) {
      it(`n=${n} eta=${eta} matches the float64 reference, both gradient conventions`, () => {
        const r = rng(n * 7 + 3);
        const l = Float32Array.from({ length: n }, () => -Math.log(1 - r.next()));
        const ref = refTilted(l, eta);
        const term = losses.tiltedWeightsSync(l, eta);
        const through = losses.tiltedWeightsSync(l, eta, { gradient: 'through' });
        expect(Math.abs(term.robustLoss - ref.robust)).toBeLessThanOrEqual(1e-10 * Math.max(1, ref.robust));
        expect(Math.abs(term.tiltedErm - ref.tilted)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(ref.tilted)));
        for (let i = 0; i < n; i++) {
          expect(Math.abs(term.weights![i] - ref.w[i])).toBeLessThanOrEqual(1e-7 * ref.w[i] + 1e-30);
          expect(term.coefficients![i]).toBe(term.weights![i]);
          expect(Math.abs(through.coefficients![i] - ref.through[i])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.through[i]) + 1e-9);
        }
      });
    }
  }

  it("'through' gives the easiest examples a negative weight, 'term' never does", () => {
    const l = new Float32Array([0.01, 0.5, 1, 3]);
    const t = losses.tiltedWeightsSync(l, 2, { gradient: 'through' });
    expect(t.coefficients![0]).toBeLessThan(0);
    expect(Math.min(...losses.tiltedWeightsSync(l, 2).coefficients!)).toBeGreaterThan(0);
  });

  it('async equals sync; outputs can be skipped', async () => {
    const l = Float32Array.from({ length: 5000 }, (_, i) => (i % 17) / 3);
    const a = await losses.tiltedWeights(l, 1.5, { gradient: 'through' });
    expect(a).toEqual(losses.tiltedWeightsSync(l, 1.5, { gradient: 'through' }));
    const s = losses.tiltedWeightsSync(l, 1.5, { weights: false, coefficients: false });
    expect(s.weights).toBeUndefined();
    expect(s.coefficients).toBeUndefined();
    expect(s.robustLoss).toBe(a.robustLoss);
  });

  const info = backendInfo();
  it.skipIf(info.gpus.length === 0)('CUDA gives the CPU\'s bits (one order of sums, one float64 exp)', () => {
    const l = Float32Array.from({ length: 100003 }, (_, i) => Math.sin(i) + 1);
    for (const gradient of ['term', 'through'] as const) {
      const c = losses.tiltedWeightsSync(l, 2, { device: 'cpu', gradient });
      const g = losses.tiltedWeightsSync(l, 2, { device: 'cuda', gradient });
      expect(g.robustLoss).toBe(c.robustLoss);
      expect(g.tiltedErm).toBe(c.tiltedErm);
      expect(g.effectiveRows).toBe(c.effectiveRows);
      expect(g.weights).toEqual(c.weights);
      expect(g.coefficients).toEqual(c.coefficients);
    }
  });
});
