/**
 * fromJSON of small hostile documents: sizes are checked against the payload before anything is
 * allocated from them, and every counting invariant is checked on load and on merge, so no
 * document yields an impossible result (accuracy 500, ECE 499, a false drift alarm).
 */
import { describe, expect, it } from 'vitest';
import { MoEClassifier, drift, metrics } from '../src/index.js';

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
    expect(() => a.merge(metrics.CalibrationAccumulator.fromJSON(j))).toThrow(/2\^53/);
    expect(a.rows).toBe(Number(big));
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
