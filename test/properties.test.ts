import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { losses, matrix, metrics } from '../src/index.js';

// Rows of probabilities: positive weights normalised in float64, then rounded to float32.
const probRows = (cols: number) =>
  fc.array(fc.array(fc.double({ min: 1e-3, max: 1, noNaN: true }), { minLength: cols, maxLength: cols }), { minLength: 1, maxLength: 60 })
    .map((rows) => rows.map((r) => { const s = r.reduce((a, b) => a + b, 0); return r.map((v) => v / s); }));

const case_ = fc.integer({ min: 2, max: 6 }).chain((cols) =>
  fc.record({
    rows: probRows(cols),
    labels: fc.array(fc.integer({ min: 0, max: cols - 1 }), { minLength: 60, maxLength: 60 }),
    bins: fc.integer({ min: 1, max: 30 }),
    edges: fc.constantFrom('right-closed' as const, 'left-closed' as const),
  }));

describe('calibration properties', () => {
  it('ECE, MCE and RMSCE lie in [0, 1] with ECE <= RMSCE <= MCE', () => {
    fc.assert(fc.property(case_, ({ rows, labels, bins, edges }) => {
      const r = metrics.calibrationSync(rows, labels.slice(0, rows.length), { bins, edges });
      expect(r.ece).toBeGreaterThanOrEqual(0);
      expect(r.mce).toBeLessThanOrEqual(1);
      expect(r.ece).toBeLessThanOrEqual(r.rmsce + 1e-12);
      expect(r.rmsce).toBeLessThanOrEqual(r.mce + 1e-12);
      const total = r.bins.count.reduce((a, b) => a + b, 0);
      expect(total).toBe(rows.length);
    }), { numRuns: 150 });
  });

  it('is invariant to the order of rows (exactly)', () => {
    fc.assert(fc.property(case_, fc.integer(), ({ rows, labels, bins, edges }, seed) => {
      const y = labels.slice(0, rows.length);
      const order = rows.map((_, i) => i).sort((a, b) => ((a * 7919 + seed) % 104729) - ((b * 7919 + seed) % 104729));
      const a = metrics.calibrationSync(rows, y, { bins, edges });
      const b = metrics.calibrationSync(order.map((i) => rows[i]), order.map((i) => y[i]), { bins, edges });
      expect(b).toEqual(a);
    }), { numRuns: 100 });
  });

  it('merging chunk accumulators equals the one-shot result (exactly)', () => {
    fc.assert(fc.property(case_, fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 10 }), ({ rows, labels, bins, edges }, cuts) => {
      const y = labels.slice(0, rows.length);
      const one = metrics.calibrationSync(rows, y, { bins, edges });
      const acc = new metrics.CalibrationAccumulator({ bins, edges });
      let at = 0;
      for (const c of cuts) {
        if (at >= rows.length) break;
        const part = new metrics.CalibrationAccumulator({ bins, edges });
        part.updateSync(rows.slice(at, at + c), y.slice(at, at + c));
        acc.merge(part);
        at += c;
      }
      if (at < rows.length) acc.updateSync(rows.slice(at), y.slice(at));
      expect(acc.result()).toEqual(one);
    }), { numRuns: 100 });
  });

  it('binned ECE of a perfectly calibrated single bin is zero', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 50 }), (n, k) => {
      const correct = Array.from({ length: n }, (_, i) => i < Math.min(k, n));
      const c = Math.fround(Math.min(k, n) / n);
      const r = metrics.confidenceCalibrationSync(new Array(n).fill(c), correct, { bins: 1 });
      expect(r.ece).toBeLessThanOrEqual(1e-7);
    }));
  });
});

describe('tilted weight properties', () => {
  const lossVec = fc.array(fc.float({ min: 0, max: 30, noNaN: true }), { minLength: 1, maxLength: 200 });

  it('eta -> 0 recovers the mean loss and uniform weights', () => {
    fc.assert(fc.property(lossVec, fc.double({ min: -1e-9, max: 1e-9, noNaN: true }), (l, eta) => {
      const r = losses.tiltedWeightsSync(l, eta);
      const mean = l.reduce((a, b) => a + Math.fround(b), 0) / l.length;
      expect(Math.abs(r.robustLoss - mean)).toBeLessThanOrEqual(1e-6 * Math.max(1, mean));
      expect(Math.abs(r.tiltedErm - mean)).toBeLessThanOrEqual(1e-6 * Math.max(1, mean));
      for (const w of r.weights!) expect(Math.abs(w - 1 / l.length)).toBeLessThanOrEqual(1e-6 / l.length);
    }));
  });

  it('weights sum to 1, are non-negative, and order like the losses for eta > 0', () => {
    fc.assert(fc.property(lossVec, fc.double({ min: 0.01, max: 50, noNaN: true }), (l, eta) => {
      const r = losses.tiltedWeightsSync(l, eta);
      const w = r.weights!;
      expect(Math.abs(w.reduce((a, b) => a + b, 0) - 1)).toBeLessThanOrEqual(1e-5);
      for (let i = 0; i < l.length; i++) for (let j = 0; j < l.length; j++) {
        if (Math.fround(l[i]) < Math.fround(l[j])) expect(w[i]).toBeLessThanOrEqual(w[j]);
      }
      expect(r.robustLoss).toBeGreaterThanOrEqual(r.meanLoss - 1e-9);
    }));
  });
});

describe('matrix helper', () => {
  it('round-trips shapes', () => {
    const m = matrix(new Float32Array(6), 2, 3);
    expect(m.rows).toBe(2);
  });
});
