/**
 * fromJSON of small hostile documents: sizes are checked against the payload before anything is
 * allocated from them, and every counting invariant is checked on load and on merge, so no
 * document yields an impossible result (accuracy 500, ECE 499, a false drift alarm).
 */
import { describe, expect, it } from 'vitest';
import { MoEClassifier, drift, metrics } from '../src/index.js';
import { native } from '../src/native.js';

const MAGIC_CALIB = 0x43414c4d45000001n;
const state = (words: bigint[]) => ({ format: 'calmoe.calibration-accumulator', version: 1, state: words.map(String) });

function accumulatorJSON() {
  const acc = new metrics.CalibrationAccumulator({ bins: 5 });
  const rows = 40, data = new Float32Array(rows * 2), labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    data[2 * i] = (i % 10) / 10;
    data[2 * i + 1] = 1 - data[2 * i];
    labels[i] = i % 2;
  }
  acc.updateSync({ data, rows, cols: 2 }, labels);
  return acc.toJSON();
}

describe('CalibrationAccumulator.fromJSON', () => {
  it('refuses a 10-word state whose header claims a huge histogram, before allocating it', () => {
    const before = process.memoryUsage().arrayBuffers;
    // grouped top-label, 1000 bins x 65536 groups = 2 GB of words claimed by 10 words
    const claim = [MAGIC_CALIB, 1000n, 65536n, 8n, 0n, 0n, 0n, 0n, 0n, 0n];
    expect(() => metrics.CalibrationAccumulator.fromJSON(state(claim))).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^json\.state: .*length/) }));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
  });

  it('round-trips a valid state', () => {
    const j = accumulatorJSON();
    const back = metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(j)));
    expect(back.toJSON()).toEqual(j);
  });

  const tamper = (edit: (w: bigint[]) => void) => {
    const j = accumulatorJSON();
    const w = j.state.map(BigInt);
    edit(w);
    return state(w);
  };
  it.each([
    ['more correct rows than rows', (w: bigint[]) => { w[5] = w[4] + 1n; }],
    ['a bin with more positives than rows', (w: bigint[]) => { w[11] = w[10] + 1n; }],
    ['bins that do not add up to the rows', (w: bigint[]) => { w[10] += 1n; }],
    ['counts near 2^64', (w: bigint[]) => { w[4] = 2n ** 64n - 1n; }],
    ['a confidence sum above its count', (w: bigint[]) => { w[13] = w[10] + 1n; }],
  ])('refuses %s', (_what, edit) => {
    expect(() => metrics.CalibrationAccumulator.fromJSON(tamper(edit))).toThrow(RangeError);
  });

  it('refuses a merge past 2^53 rows instead of wrapping', () => {
    const big = (2n ** 52n) + 1n;
    const j = state([MAGIC_CALIB, 1n, 1n, 0n, big, 0n, 0n, 0n, 0n, 0n, big, 0n, 0n, 0n]);
    const a = metrics.CalibrationAccumulator.fromJSON({ ...j, state: [...j.state] });
    // the same state with extras off (flags 0), bins = 1
    expect(a.rows).toBe(Number(big));
    expect(() => a.merge(metrics.CalibrationAccumulator.fromJSON(j))).toThrow(/more rows than a state holds \(9007199254740992\)/);
    expect(a.rows).toBe(Number(big));
  });
});

describe('CalibrationAccumulator.fromJSON and merge: weighted states', () => {
  // A weighted top-label state by hand, 1 bin, no extras (flags: weighted = 16): two rows of weight
  // 1 and 2 (q = w * 2^32), the weight-1 row correct, confidences 0.25 and 0.75. Layout: header
  // (10 words), the bin (count, positives, confidence lo/hi), the weighted header (weight,
  // correct weight, NLL, Brier: 128 bits each), the bin's weighted cell (weight, positive weight,
  // confidence: 128 bits each). Each case breaks one invariant of it.
  const Q = 2n ** 32n, QMAX = 2n ** 56n, U128 = 2n ** 128n, L_MAX_WEIGHT = 2 ** 24;
  const W = 10 + 4, CELL = W + 8; // first word of the weighted header, of the weighted cell
  const base = () => {
    const w = new Array<bigint>(CELL + 6).fill(0n);
    w.splice(0, 6, MAGIC_CALIB, 1n, 1n, 16n, 2n, 1n);
    w.splice(10, 3, 2n, 1n, 2n ** 63n); // bin: 2 rows, 1 positive, confidence sum 1.0 at 2^63
    return w;
  };
  const set128 = (w: bigint[], i: number, v: bigint) => { w[i] = v % 2n ** 64n; w[i + 1] = v >> 64n; };
  const valid = () => {
    const w = base();
    set128(w, W, 3n * Q);      // total weight 3
    set128(w, W + 2, Q);       // correct weight 1
    set128(w, CELL, 3n * Q);   // the bin's weight 3
    set128(w, CELL + 2, Q);    // its positive weight 1
    set128(w, CELL + 4, (Q * Q) / 4n + 2n * Q * ((3n * Q) / 4n)); // 1 x 0.25 + 2 x 0.75 at 2^-64
    return w;
  };

  it('accepts the valid state: round trip, and the weighted results', () => {
    const acc = metrics.CalibrationAccumulator.fromJSON(state(valid()));
    expect(acc.weighted).toBe(true);
    expect(acc.toJSON()).toEqual(state(valid()));
    const r = acc.result() as metrics.CalibrationReport;
    expect(r.weight).toBe(3);
    expect(r.accuracy).toBeCloseTo(1 / 3, 15);
    expect(r.bins.meanConfidence[0]).toBeCloseTo(1.75 / 3, 15);
    expect(r.ece).toBeCloseTo(Math.abs(1 / 3 - 1.75 / 3), 15);
  });

  const cases: Array<[string, (w: bigint[]) => void, RegExp]> = [
    ['bin weights that do not add up to the total weight', (w) => set128(w, W, 3n * Q + 1n), /bin weights do not add up to the total weight/],
    ['more correct weight than weight', (w) => set128(w, W + 2, 3n * Q + 1n), /more correct weight than weight/],
    ['correct weight without correct rows', (w) => { w[5] = 0n; }, /correct weight above the correct rows/],
    ['a bin with more positive weight than weight', (w) => set128(w, CELL + 2, 3n * Q + 1n), /more positive weight than weight/],
    ['positive weight without positive rows', (w) => { w[11] = 0n; }, /positive weight above its positive rows/],
    ['a confidence sum above the bin weight', (w) => set128(w, CELL + 4, 3n * Q * Q + 1n), /confidence sum above its weight/],
    ['weight in a bin without rows', (w) => { w[0 + 10] = 0n; w[4] = 0n; w[5] = 0n; w[11] = 0n; w[12] = 0n; }, /(weight above the rows|bin's weight above its rows)/],
    ['a total weight above what the rows can carry', (w) => { set128(w, W, 2n * QMAX + 1n); set128(w, CELL, 2n * QMAX + 1n); }, /total weight above the rows times the largest weight/],
    ['a total weight near 2^128', (w) => { set128(w, W, U128 - 1n); set128(w, CELL, U128 - 1n); }, /total weight above the rows/],
    ['bin weights that add up only modulo 2^128', (w) => { set128(w, W, 3n * Q); set128(w, CELL, U128 - 1n); }, /bin's weight above its rows/],
    ['a confidence sum near 2^128', (w) => set128(w, CELL + 4, U128 - 1n), /confidence sum above its weight/],
    ['weighted NLL or Brier sums without extras', (w) => set128(w, W + 4, 1n), /NLL or Brier sums without extras/],
    ['more rows than a weighted state holds (2^40 - 1)', (w) => { w[4] = 2n ** 40n; w[10] = w[4]; }, /more rows than a state holds/],
  ];
  it.each(cases)('refuses %s on load', (_what, edit, message) => {
    const w = valid();
    edit(w);
    expect(() => metrics.CalibrationAccumulator.fromJSON(state(w))).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^json\.state: corrupt calibration state/) }));
    expect(() => metrics.CalibrationAccumulator.fromJSON(state(w))).toThrow(message);
  });
  it.each(cases)('refuses %s on merge, either side, leaving the state as it was', (_what, edit, message) => {
    const bad = valid();
    edit(bad);
    const hostile = BigUint64Array.from(bad), good = BigUint64Array.from(valid());
    expect(() => native().calibMerge(good, hostile)).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^from: corrupt calibration state/) }));
    expect(() => native().calibMerge(good, hostile)).toThrow(message);
    expect(Array.from(good)).toEqual(valid());
    expect(() => native().calibMerge(hostile, BigUint64Array.from(valid()))).toThrow(/^into: corrupt calibration state/);
    expect(Array.from(hostile)).toEqual(bad);
  });

  it('accepts 2^40 - 1 rows of the largest weight and confidence 1, and refuses a merge past them instead of wrapping', () => {
    // every row weight 2^24 and confidence 1: each adds 2^88 to the bin's confidence sum, which
    // 2^40 rows would wrap to 0 (a mean confidence of 0)
    const rows = 2n ** 40n - 2n, q = QMAX;
    const w = base();
    w.splice(4, 2, rows, rows);
    w.splice(10, 4, rows, rows, (rows * 2n ** 63n) % 2n ** 64n, (rows * 2n ** 63n) >> 64n);
    set128(w, W, rows * q);
    set128(w, W + 2, rows * q);
    set128(w, CELL, rows * q);
    set128(w, CELL + 2, rows * q);
    set128(w, CELL + 4, rows * q * Q);
    const a = metrics.CalibrationAccumulator.fromJSON(state(w));
    const one = () => {
      const acc = new metrics.CalibrationAccumulator({ bins: 1, extras: false, weighted: true });
      acc.updateSync({ data: Float32Array.of(1, 0), rows: 1, cols: 2 }, Int32Array.of(0), { weights: [L_MAX_WEIGHT] });
      return acc;
    };
    a.merge(one());
    expect(a.rows).toBe(2 ** 40 - 1);
    const r = a.result() as metrics.CalibrationReport;
    expect(r.bins.meanConfidence[0]).toBe(1);
    expect(r.accuracy).toBe(1);
    expect(() => a.merge(one())).toThrow(/more rows than a state holds \(1099511627775\)/);
    expect(a.rows).toBe(2 ** 40 - 1);
    expect((a.result() as metrics.CalibrationReport).bins.meanConfidence[0]).toBe(1);
  });

  it('refuses bad weights in an update and leaves the state as it was', () => {
    const acc = new metrics.CalibrationAccumulator({ weighted: true });
    const p = { data: Float32Array.of(0.9, 0.1, 0.2, 0.8), rows: 2, cols: 2 };
    acc.updateSync(p, Int32Array.of(0, 1), { weights: [1, 0] });
    const before = acc.toJSON();
    for (const bad of [-1, -1e-30, NaN, Infinity, -Infinity, 2 ** 24 + 2]) {
      expect(() => acc.updateSync(p, Int32Array.of(0, 1), { weights: [1, bad] }), String(bad)).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^weights\[1\]/) }));
      expect(acc.toJSON()).toEqual(before);
    }
    expect(() => acc.updateSync(p, Int32Array.of(0, 1), { weights: ['1', 1] as never })).toThrow(TypeError);
    // all weights zero: a valid state, but no weighted result
    const zero = new metrics.CalibrationAccumulator({ weighted: true });
    zero.updateSync(p, Int32Array.of(0, 1), { weights: [0, 0] });
    expect(metrics.CalibrationAccumulator.fromJSON(zero.toJSON()).rows).toBe(2);
    expect(() => zero.result()).toThrow(/weights: all zero/);
  });
});

describe('DriftMonitor.fromJSON', () => {
  it('refuses window counts that add up only modulo 2^64', () => {
    const ref = { data: new Float32Array(200).map((_, i) => (i * 37) % 101), rows: 200, cols: 1 };
    const m = drift.DriftMonitor.fromReferenceSync(ref, { bins: 4 });
    m.updateSync({ data: new Float32Array(50).map((_, i) => i), rows: 50, cols: 1 });
    const j = m.toJSON();
    const w = j.state.map(BigInt);
    const n = w.length;
    w[n - 1] = (w[n - 1] - 5n + 2n ** 64n) % 2n ** 64n;
    w[n - 2] = (w[n - 2] + 5n) % 2n ** 64n;
    expect(() => drift.DriftMonitor.fromJSON({ ...j, state: w.map(String) })).toThrow(RangeError);
    expect(drift.DriftMonitor.fromJSON(j).toJSON()).toEqual(j);
  });
  it('refuses more chunks than rows', () => {
    const ref = { data: new Float32Array(20).map((_, i) => i), rows: 20, cols: 1 };
    const j = drift.DriftMonitor.fromReferenceSync(ref, { bins: 2 }).toJSON();
    const w = [...j.state];
    w[6] = '3';  // chunks, with an empty window
    expect(() => drift.DriftMonitor.fromJSON({ ...j, state: w })).toThrow(/chunks/);
  });
});

describe('MoEClassifier.fromJSON', () => {
  const doc = (options: object, parameters = 'AAAA', temperatures: number[] = [1]) => ({ format: 'calmoe.moe', version: 1, options, parameters, temperatures });
  it('refuses sizes the payload does not carry, before allocating them', () => {
    const before = process.memoryUsage().arrayBuffers;
    expect(() => MoEClassifier.fromJSON(doc({ inputDim: 2 ** 24, classes: 10, experts: 1 }))).toThrow(/json\.parameters: expected \d+ bytes/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
  });
  it('refuses a deep model quickly (hidden layers are bounded)', () => {
    const hidden = new Array(2000).fill(4096);
    expect(() => MoEClassifier.fromJSON(doc({ inputDim: 4, classes: 2, experts: 4096, expertHidden: hidden }))).toThrow(/expertHidden: expected at most 64 hidden layers/);
  });
  it('refuses temperatures of the wrong length', () => {
    const m = new MoEClassifier({ inputDim: 2, classes: 2, experts: 2, expertHidden: [] });
    const j = m.toJSON();
    expect(() => MoEClassifier.fromJSON({ ...j, temperatures: [1] })).toThrow(/json\.temperatures: expected 2 values/);
    expect(MoEClassifier.fromJSON(JSON.parse(JSON.stringify(j))).toJSON()).toEqual(j);
  });
});
