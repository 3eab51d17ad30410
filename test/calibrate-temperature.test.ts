import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { calibrate, matrix, metrics } from '../src/index.js';
import { solveLogTemperature } from '../src/calibrate/log-temperature-solver.js';
import { rng } from './reference.js';

// ---- naive float64 references, straight from the definitions --------------------------------

/** t = z, or log p (zeros -inf, the label floored at 1e-12). */
function transformed(row: ArrayLike<number>, y: number, input: 'logits' | 'probabilities'): number[] {
  return Array.from(row, (v, j) => (input === 'logits' ? v : j === y ? Math.log(Math.max(v, 1e-12)) : v > 0 ? Math.log(v) : -Infinity));
}

/** Mean (weighted) NLL of softmax(t / T). */
function refNll(data: Float32Array, rows: number, cols: number, y: ArrayLike<number>, T: number, input: 'logits' | 'probabilities' = 'logits', w?: ArrayLike<number>): number {
  let s = 0, ws = 0;
  for (let i = 0; i < rows; i++) {
    const wi = w ? w[i] : 1;
    if (wi === 0) continue;
    const t = transformed(data.subarray(i * cols, (i + 1) * cols), y[i], input).map((v) => v / T);
    const m = Math.max(...t);
    const lse = m + Math.log(t.reduce((a, v) => a + (v === -Infinity ? 0 : Math.exp(v - m)), 0));
    s += wi * (lse - t[y[i]]);
    ws += wi;
  }
  return s / ws;
}

function refApply(data: Float32Array, rows: number, cols: number, T: number, input: 'logits' | 'probabilities'): number[] {
  const out: number[] = [];
  for (let i = 0; i < rows; i++) {
    const t = Array.from(data.subarray(i * cols, (i + 1) * cols), (v) => (input === 'logits' ? v : v > 0 ? Math.log(v) : -Infinity)).map((v) => v / T);
    const m = Math.max(...t);
    const e = t.map((v) => (v === -Infinity ? 0 : Math.exp(v - m)));
    const s = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((v) => v / s));
  }
  return out;
}

function randomLogits(seed: number, rows: number, cols: number, sd = 2) {
  const r = rng(seed);
  const data = Float32Array.from({ length: rows * cols }, () => sd * r.normal());
  const labels = Int32Array.from({ length: rows }, () => r.int(cols));
  return { data, rows, cols, labels, r };
}

function softmaxRows(z: Float32Array, rows: number, cols: number): Float32Array {
  return Float32Array.from(refApply(z, rows, cols, 1, 'logits'));
}

/** Labels drawn from softmax(z / T0). */
function sampledLabels(z: Float32Array, rows: number, cols: number, T0: number, seed: number): Int32Array {
  const r = rng(seed);
  const q = refApply(z, rows, cols, T0, 'logits');
  return Int32Array.from({ length: rows }, (_, i) => {
    let u = r.next();
    for (let j = 0; j < cols; j++) if ((u -= q[i * cols + j]) < 0) return j;
    return cols - 1;
  });
}

describe('temperature objective: parity with a float64 reference', () => {
  for (const rows of [1, 13, 1977]) {
    for (const cols of [1, 3, 10]) {
      it(`${rows} x ${cols}, logits and probabilities, with and without weights`, () => {
        const d = randomLogits(rows * 31 + cols, rows, cols);
        const p = softmaxRows(d.data, rows, cols);
        const w = Float32Array.from({ length: rows }, () => (d.r.next() < 0.25 ? 0 : d.r.next() * 2));
        if (w.every((v) => v === 0)) w[0] = 1;
        for (const [input, data] of [['logits', d.data], ['probabilities', p]] as const) {
          for (const weights of [undefined, w]) {
            for (const T of [0.1, 0.7, 1, 2.5, 30]) {
              const got = calibrate.temperatureObjectiveSync(matrix(data, rows, cols), d.labels, T, { input, weights });
              const want = refNll(data, rows, cols, d.labels, T, input, weights);
              expect(Math.abs(got.nll - want)).toBeLessThanOrEqual(1e-10 * Math.max(1, Math.abs(want)));
              // derivatives in log T against central differences of the reference
              const h = 1e-4;
              const up = refNll(data, rows, cols, d.labels, T * Math.exp(h), input, weights);
              const dn = refNll(data, rows, cols, d.labels, T * Math.exp(-h), input, weights);
              expect(Math.abs(got.gradient - (up - dn) / (2 * h))).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want)));
              expect(Math.abs(got.curvature - (up - 2 * want + dn) / (h * h))).toBeLessThanOrEqual(2e-3 * Math.max(1, Math.abs(want)));
              expect(got.rows).toBe(weights ? weights.filter((v) => v > 0).length : rows);
            }
          }
        }
      });
    }
  }

  it('async equals sync', async () => {
    const d = randomLogits(5, 333, 7);
    const m = matrix(d.data, d.rows, d.cols);
    expect(await calibrate.temperatureObjective(m, d.labels, 1.3)).toEqual(calibrate.temperatureObjectiveSync(m, d.labels, 1.3));
  });
});

describe('fitTemperature', () => {
  for (const T0 of [0.5, 1, 2.5]) {
    it(`recovers a known temperature T0 = ${T0} (labels drawn from softmax(z / T0))`, () => {
      const rows = 30000, cols = 6;
      const d = randomLogits(Math.round(T0 * 1000), rows, cols, 2);
      const y = sampledLabels(d.data, rows, cols, T0, 99);
      const fit = calibrate.fitTemperatureSync(matrix(d.data, rows, cols), y);
      expect(fit.converged).toBe(true);
      expect(fit.atBound).toBeNull();
      expect(Math.abs(fit.temperature - T0) / T0).toBeLessThan(0.05);
      expect(fit.nllAfter).toBeLessThanOrEqual(fit.nllBefore);
      if (T0 !== 1) expect(fit.eceAfter).toBeLessThan(fit.eceBefore);
      expect(Math.abs(fit.gradient)).toBeLessThanOrEqual(1e-9);
      // the same fit from the mixture's probabilities (p^(1/T) renormalised = softmax(z / T))
      const pf = calibrate.fitTemperatureSync(matrix(softmaxRows(d.data, rows, cols), rows, cols), y, { input: 'probabilities' });
      expect(Math.abs(pf.temperature - fit.temperature) / fit.temperature).toBeLessThan(1e-4);
    });
  }

  it('matches the minimum of the reference NLL found by grid and golden-section search', () => {
    const d = randomLogits(17, 500, 4, 3);
    const y = sampledLabels(d.data, 500, 4, 1.7, 3);
    const fit = calibrate.fitTemperatureSync(matrix(d.data, 500, 4), y);
    const f = (s: number) => refNll(d.data, 500, 4, y, Math.exp(s));
    let bestS = 0;
    for (let s = Math.log(0.5); s <= Math.log(5); s += 0.01) if (f(s) < f(bestS)) bestS = s;
    let a = bestS - 0.01, b = bestS + 0.01;
    const phi = (Math.sqrt(5) - 1) / 2;
    for (let it = 0; it < 80; it++) {
      const c = b - phi * (b - a), e = a + phi * (b - a);
      if (f(c) < f(e)) b = e;
      else a = c;
    }
    const bestT = Math.exp((a + b) / 2);
    expect(Math.abs(fit.temperature - bestT) / bestT).toBeLessThan(1e-6);
    expect(fit.nllAfter).toBeLessThanOrEqual(f((a + b) / 2) + 1e-12);
  });

  it('converges to the same temperature from any start, in few passes', () => {
    const d = randomLogits(23, 4000, 5);
    const y = sampledLabels(d.data, 4000, 5, 1.6, 4);
    const m = matrix(d.data, 4000, 5);
    const ref = calibrate.fitTemperatureSync(m, y);
    for (const init of [0.01, 0.05, 0.3, 1, 4, 40, 100]) {
      const f = calibrate.fitTemperatureSync(m, y, { init });
      expect(f.converged).toBe(true);
      expect(Math.abs(f.temperature - ref.temperature) / ref.temperature).toBeLessThan(1e-7);
      expect(f.iterations).toBeLessThanOrEqual(25);
    }
  });

  it('stops at a bound when the NLL keeps decreasing beyond it (separable or anti-correlated data)', () => {
    // every prediction right: sharper is always better -> the lower bound
    const right = matrix(new Float32Array([3, 0, 0, 0, 2, 0, 1, 0, 4]), 3, 3);
    const sep = calibrate.fitTemperatureSync(right, [0, 1, 2], { min: 0.05, max: 20 });
    expect(sep.temperature).toBe(0.05);
    expect(sep.atBound).toBe('min');
    expect(sep.converged).toBe(true);
    expect(sep.gradient).toBeGreaterThan(0);
    // every prediction wrong: flatter is always better -> the upper bound
    const wrong = calibrate.fitTemperatureSync(right, [1, 2, 0], { min: 0.05, max: 20 });
    expect(wrong.temperature).toBe(20);
    expect(wrong.atBound).toBe('max');
    expect(wrong.gradient).toBeLessThan(0);
    // T never leaves the bounds even from a start outside them
    const clamped = calibrate.fitTemperatureSync(right, [1, 2, 0], { min: 0.5, max: 2, init: 1000 });
    expect(clamped.temperature).toBe(2);
  });

  it('uses only rows with positive weight, and the weights', () => {
    const d = randomLogits(29, 1200, 4);
    const y = sampledLabels(d.data, 1200, 4, 2, 5);
    const w = new Float32Array(1200);
    for (let i = 0; i < 600; i++) w[i] = 1;
    const weighted = calibrate.fitTemperatureSync(matrix(d.data, 1200, 4), y, { weights: w });
    const half = calibrate.fitTemperatureSync(matrix(d.data.subarray(0, 2400), 600, 4), y.subarray(0, 600));
    expect(Math.abs(weighted.temperature - half.temperature)).toBeLessThan(1e-9);
    expect(weighted.eceBefore).toBe(half.eceBefore);
    expect(weighted.rows).toBe(600);
    // integer weights = repeated rows
    const w2 = Float32Array.from({ length: 1200 }, (_, i) => 1 + (i % 3));
    const rep: number[] = [], repY: number[] = [];
    for (let i = 0; i < 1200; i++) for (let k = 0; k < w2[i]; k++) { rep.push(...d.data.subarray(i * 4, i * 4 + 4)); repY.push(y[i]); }
    const a = calibrate.fitTemperatureSync(matrix(d.data, 1200, 4), y, { weights: w2 });
    const b = calibrate.fitTemperatureSync(matrix(Float32Array.from(rep), repY.length, 4), repY);
    expect(Math.abs(a.temperature - b.temperature) / b.temperature).toBeLessThan(1e-8);
    expect(a.weight).toBe(2400);
  });

  it('reports the ECE of the metrics before and after', () => {
    const d = randomLogits(31, 2000, 5);
    const y = sampledLabels(d.data, 2000, 5, 2, 6);
    const m = matrix(d.data, 2000, 5);
    const fit = calibrate.fitTemperatureSync(m, y, { bins: 10 });
    expect(fit.eceBefore).toBe(metrics.calibrationSync(m, y, { bins: 10, input: 'logits' }).ece);
    expect(fit.eceAfter).toBe(metrics.calibrationSync(calibrate.applyTemperatureSync(m, fit.temperature), y, { bins: 10 }).ece);
  });

  it('async equals sync', async () => {
    const d = randomLogits(37, 3000, 4);
    const m = matrix(d.data, 3000, 4);
    expect(await calibrate.fitTemperature(m, d.labels, { input: 'logits' })).toEqual(calibrate.fitTemperatureSync(m, d.labels));
  });
});

describe('applyTemperature', () => {
  for (const rows of [1, 13, 1977]) {
    it(`${rows} rows: softmax(z / T) and p^(1/T) renormalised, zeros stay zero`, async () => {
      const d = randomLogits(rows + 3, rows, 5);
      const p = softmaxRows(d.data, rows, 5);
      p[0] = 0;
      p[1] = 1 - (p[2] + p[3] + p[4]);
      for (const [input, data] of [['logits', d.data], ['probabilities', p]] as const) {
        for (const T of [0.3, 1, 4]) {
          const got = calibrate.applyTemperatureSync(matrix(data, rows, 5), T, { input });
          const want = refApply(data, rows, 5, T, input);
          expect(got.rows).toBe(rows);
          expect(got.cols).toBe(5);
          for (let k = 0; k < want.length; k++) expect(Math.abs(got.data[k] - want[k])).toBeLessThanOrEqual(1e-6 * want[k] + 1e-30);
          if (input === 'probabilities') expect(got.data[0]).toBe(0);
          expect(await calibrate.applyTemperature(matrix(data, rows, 5), T, { input })).toEqual(got);
        }
      }
    });
  }
});

describe('temperature properties (fast-check)', () => {
  const problem = fc.integer({ min: 2, max: 6 }).chain((cols) =>
    fc.record({
      cols: fc.constant(cols),
      rows: fc.array(fc.array(fc.double({ min: -8, max: 8, noNaN: true }), { minLength: cols, maxLength: cols }), { minLength: 1, maxLength: 40 }),
      labels: fc.array(fc.integer({ min: 0, max: cols - 1 }), { minLength: 40, maxLength: 40 }),
      init: fc.double({ min: 0.01, max: 100, noNaN: true }),
      probs: fc.boolean(),
    }));

  it('never increases the NLL on its fit set; T is finite, > 0 and within the bounds', () => {
    fc.assert(fc.property(problem, ({ cols, rows, labels, init, probs }) => {
      const data = Float32Array.from(rows.flat());
      const y = labels.slice(0, rows.length);
      const m = matrix(probs ? softmaxRows(data, rows.length, cols) : data, rows.length, cols);
      const input = probs ? 'probabilities' as const : 'logits' as const;
      const fit = calibrate.fitTemperatureSync(m, y, { init, input });
      expect(Number.isFinite(fit.temperature)).toBe(true);
      expect(fit.temperature).toBeGreaterThanOrEqual(0.01);
      expect(fit.temperature).toBeLessThanOrEqual(100);
      expect(fit.nllAfter).toBeLessThanOrEqual(fit.nllBefore);
      const atOne = calibrate.temperatureObjectiveSync(m, y, 1, { input }).nll;
      expect(fit.nllBefore).toBe(atOne);
      // the reported NLL is the objective at the reported temperature
      expect(calibrate.temperatureObjectiveSync(m, y, fit.temperature, { input }).nll).toBe(fit.nllAfter);
    }), { numRuns: 150 });
  });

  // The NLL is convex in beta = 1/T, so f(T) - f(T') <= |df/dbeta| |1/T' - 1/T| with
  // df/dbeta = -T df/dlogT: the stopping tolerance on the gradient bounds the excess exactly.
  it('is a minimum: no temperature on a grid does better (up to the stopping tolerance)', () => {
    fc.assert(fc.property(problem, ({ cols, rows, labels }) => {
      const data = Float32Array.from(rows.flat());
      const y = labels.slice(0, rows.length);
      const m = matrix(data, rows.length, cols);
      const fit = calibrate.fitTemperatureSync(m, y);
      for (let s = Math.log(0.01); s <= Math.log(100); s += 0.25) {
        const T = Math.exp(s);
        const slack = Math.abs(fit.gradient) * fit.temperature * Math.abs(1 / T - 1 / fit.temperature);
        expect(fit.nllAfter).toBeLessThanOrEqual(calibrate.temperatureObjectiveSync(m, y, T).nll + slack + 1e-12);
      }
    }), { numRuns: 100 });
  });
});

describe('the log-T solver on analytic unimodal objectives', () => {
  // f(s) with its minimum at s = c: convex (log cosh), and unimodal but concave in its tails
  // (a Gaussian well: Newton points the wrong way there, so the safeguard must bisect).
  const shapes = {
    logcosh: (s: number, c: number) => ({ nll: Math.log(Math.cosh(s - c)), d1: Math.tanh(s - c), d2: 1 / Math.cosh(s - c) ** 2 }),
    well: (s: number, c: number) => {
      const u = (s - c) / 4, g = Math.exp(-u * u);
      return { nll: -g, d1: (u / 2) * g, d2: (1 / 8 - u * u / 4) * g };
    },
  };
  it('converges from any start to the minimum, or to the bound beyond which f still falls', () => {
    fc.assert(fc.property(fc.constantFrom('logcosh', 'well'), fc.double({ min: -7, max: 7, noNaN: true }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), (shape, c, init) => {
      const f = shapes[shape as keyof typeof shapes];
      const o = { init, min: 0.01, max: 100, tolerance: 1e-12, maxIterations: 200 };
      let calls = 0;
      const g = solveLogTemperature(o);
      let step = g.next();
      while (!step.done) {
        const T = step.value;
        expect(T).toBeGreaterThanOrEqual(0.01);
        expect(T).toBeLessThanOrEqual(100);
        calls++;
        step = g.next(f(Math.log(T), c));
      }
      const r = step.value;
      expect(r.converged).toBe(true);
      expect(r.iterations).toBe(calls);
      const s = Math.log(r.temperature);
      const lo = Math.log(0.01), hi = Math.log(100);
      if (c < lo) expect(r.temperature).toBe(0.01);
      else if (c > hi) expect(r.temperature).toBe(100);
      else expect(Math.abs(s - c)).toBeLessThan(1e-6);
      expect(r.at.nll).toBeLessThanOrEqual(r.baseline.nll);
    }), { numRuns: 400 });
  });
});

describe('temperature: bad input gives a named TypeError/RangeError', () => {
  const m = matrix(new Float32Array([1, 2, 3, 4]), 2, 2);
  const y = [0, 1];
  function throwsWith(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp) {
    let err: unknown;
    try { fn(); } catch (e) { err = e; }
    expect(err, 'expected a throw').toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    expect((err as { code?: string }).code).toMatch(/^CALMOE_INVALID_ARG_/);
  }

  it('fitTemperature', async () => {
    throwsWith(() => calibrate.fitTemperatureSync(new Float32Array(4) as never, y), TypeError, /^scores: expected/);
    throwsWith(() => calibrate.fitTemperatureSync(m, [0, 2]), RangeError, /labels\[1\] = 2 is outside \[0, 2\)/);
    throwsWith(() => calibrate.fitTemperatureSync(m, [0]), RangeError, /labels: expected 2 labels/);
    throwsWith(() => calibrate.fitTemperatureSync([[1, NaN], [0, 0]], y), RangeError, /scores: row 0, column 1 is not finite/);
    throwsWith(() => calibrate.fitTemperatureSync([[0.5, 0.6], [0.5, 0.5]], y, { input: 'probabilities' }), RangeError, /scores: row 0 sums to 1\.1/);
    throwsWith(() => calibrate.fitTemperatureSync([[1.5, -0.5], [0.5, 0.5]], y, { input: 'probabilities' }), RangeError, /row 0, column 0 = 1\.5 is not a probability/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { weights: [1] }), RangeError, /weights: expected 2 weights/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { weights: [1, -1] }), RangeError, /weights\[1\] = -1/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { weights: [0, 0] }), RangeError, /weights: all zero/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { weights: 'x' as never }), TypeError, /weights: expected a Float32Array/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { min: 2, max: 1 }), RangeError, /min: 2 must be below max = 1/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { min: 0 }), RangeError, /min: expected a number in/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { max: Infinity }), RangeError, /max: expected a number in/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { init: -1 }), RangeError, /init/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { maxIterations: 1 }), RangeError, /maxIterations: expected an integer in \[2, 10000\]/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { tolerance: '1' as never }), TypeError, /tolerance: expected a number/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { input: 'logit' as never }), RangeError, /input: expected one of 'logits', 'probabilities'/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { bins: 0 }), RangeError, /bins/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { device: 'gpu' as never }), RangeError, /device/);
    throwsWith(() => calibrate.fitTemperatureSync(m, y, { temperature: 1 } as never), RangeError, /options: unknown option 'temperature'/);
    throwsWith(() => calibrate.fitTemperatureSync({ data: new Float32Array(0), rows: 0, cols: 2 }, []), RangeError, /scores: expected at least one row/);
    await expect(calibrate.fitTemperature(m, [0, 5])).rejects.toThrow(/labels\[1\] = 5/);
    await expect(calibrate.fitTemperature(m, [0, 5])).rejects.toBeInstanceOf(RangeError);
  });

  it('temperatureObjective and applyTemperature', async () => {
    for (const T of [0, -1, NaN, Infinity]) throwsWith(() => calibrate.temperatureObjectiveSync(m, y, T), RangeError, /temperature: expected a finite number > 0/);
    throwsWith(() => calibrate.temperatureObjectiveSync(m, y, '1' as never), TypeError, /temperature: expected a number/);
    throwsWith(() => calibrate.temperatureObjectiveSync(m, y, 1, { weights: [0, 0] }), RangeError, /weights: all zero/);
    throwsWith(() => calibrate.applyTemperatureSync(m, 0), RangeError, /temperature/);
    throwsWith(() => calibrate.applyTemperatureSync([[0.5, 0.7]], 1, { input: 'probabilities' }), RangeError, /scores: row 0 sums to 1\.2/);
    throwsWith(() => calibrate.applyTemperatureSync(m, 1, { weights: [1, 1] } as never), RangeError, /unknown option 'weights'/);
    await expect(calibrate.applyTemperature(m, -2)).rejects.toBeInstanceOf(RangeError);
    await expect(calibrate.temperatureObjective(m, [7, 0], 1)).rejects.toThrow(/labels\[0\] = 7/);
  });
});
