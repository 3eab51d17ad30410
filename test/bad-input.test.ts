import { describe, expect, it } from 'vitest';
import { losses, matrix, metrics, setThreads } from '../src/index.js';

const m2 = matrix(new Float32Array([0.2, 0.8, 0.6, 0.4]), 2, 2);
const y2 = new Int32Array([1, 0]);

function throwsWith(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp) {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err, 'expected a throw').toBeInstanceOf(type);
  expect((err as Error).message).toMatch(message);
  expect((err as { code?: string }).code).toMatch(/^CALMOE_/);
}

describe('calibration: bad input gives a named TypeError/RangeError', () => {
  it('scores', () => {
    throwsWith(() => metrics.calibrationSync(new Float32Array(4) as never, y2), TypeError, /^scores: expected \{ data: Float32Array, rows, cols \}/);
    throwsWith(() => metrics.calibrationSync({ data: new Float64Array(4), rows: 2, cols: 2 } as never, y2), TypeError, /scores\.data: expected a Float32Array/);
    throwsWith(() => metrics.calibrationSync({ data: new Float32Array(5), rows: 2, cols: 2 }, y2), RangeError, /scores: data has 5 elements but rows x cols = 2 x 2 = 4/);
    throwsWith(() => metrics.calibrationSync([[0.5, 0.5], [1]], [0, 0]), RangeError, /scores\[1\]: expected 2 numbers/);
    throwsWith(() => metrics.calibrationSync([[0.5, '0.5']] as never, [0]), TypeError, /scores\[0\]\[1\]: expected a number/);
    throwsWith(() => metrics.calibrationSync([], []), RangeError, /scores: expected at least one row/);
    throwsWith(() => metrics.calibrationSync({ data: new Float32Array(0), rows: 0, cols: 2 }, new Int32Array(0)), RangeError, /scores: expected at least one row/);
    throwsWith(() => metrics.calibrationSync({ data: new Float32Array(0), rows: 2 ** 30, cols: 2 ** 20 }, y2), RangeError, /larger than supported/);
  });

  it('probability values', () => {
    throwsWith(() => metrics.calibrationSync([[0.5, NaN]], [0]), RangeError, /row 0, column 1 is not finite/);
    throwsWith(() => metrics.calibrationSync([[0.5, Infinity]], [0]), RangeError, /not finite/);
    throwsWith(() => metrics.calibrationSync([[0.7, 0.7]], [0]), RangeError, /row 0 sums to 1\.4.*sumTolerance/);
    throwsWith(() => metrics.calibrationSync([[1.5, -0.5]], [0]), RangeError, /row 0, column 0 = 1\.5 is not a probability/);
    throwsWith(() => metrics.calibrationSync([[3, 2]], [0], { input: 'logits', sumTolerance: 2 }), RangeError, /sumTolerance: expected a number in \[0, 1\]/);
    throwsWith(() => metrics.calibrationSync([[3, NaN]], [0], { input: 'logits' }), RangeError, /not finite/);
    // logits need not sum to 1
    expect(metrics.calibrationSync([[3, 2]], [0], { input: 'logits' }).accuracy).toBe(1);
  });

  it('labels', () => {
    throwsWith(() => metrics.calibrationSync(m2, [1]), RangeError, /labels: expected 2 labels/);
    throwsWith(() => metrics.calibrationSync(m2, [1, 2]), RangeError, /labels\[1\] = 2 is outside \[0, 2\)/);
    throwsWith(() => metrics.calibrationSync(m2, [1, -1]), RangeError, /labels\[1\] = -1 is outside/);
    throwsWith(() => metrics.calibrationSync(m2, [1, 0.5]), RangeError, /labels\[1\] = 0\.5: expected an integer/);
    throwsWith(() => metrics.calibrationSync(m2, new Float32Array([1, 0]) as never), TypeError, /labels: expected an integer typed array/);
    throwsWith(() => metrics.binaryCalibrationSync([0.2, 0.9], [0, 2]), RangeError, /binary labels must be 0 or 1/);
    throwsWith(() => metrics.confidenceCalibrationSync([0.2, 0.9], [true, 2 as never]), RangeError, /correct\[1\]: expected a boolean or 0\/1/);
    throwsWith(() => metrics.confidenceCalibrationSync([0.2, 1.9], [true, false]), RangeError, /confidence: row 1 = 1\.9/);
  });

  it('options', () => {
    throwsWith(() => metrics.calibrationSync(m2, y2, { bins: 0 }), RangeError, /bins: expected an integer in \[1, 1048576\], got 0/);
    throwsWith(() => metrics.calibrationSync(m2, y2, { bins: 2.5 }), RangeError, /bins/);
    throwsWith(() => metrics.calibrationSync(m2, y2, { bins: '10' as never }), TypeError, /bins: expected an integer/);
    throwsWith(() => metrics.calibrationSync(m2, y2, { edges: 'closed' as never }), RangeError, /edges: expected one of 'right-closed', 'left-closed', got 'closed'/);
    throwsWith(() => metrics.calibrationSync(m2, y2, { device: 'gpu' as never }), RangeError, /device: expected one of 'auto', 'cpu', 'cuda'/);
    throwsWith(() => metrics.calibrationSync(m2, y2, { bin: 10 } as never), RangeError, /options: unknown option 'bin'/);
    throwsWith(() => metrics.classwiseCalibrationSync(m2, y2, { binning: 'equal-mass' }), RangeError, /equal-mass bins are not available for classwise/);
  });

  it('async variants reject with the same errors and the caller in the stack', async () => {
    await expect(metrics.calibration(m2, [1, 5])).rejects.toThrow(RangeError);
    await expect(metrics.calibration(m2, [1, 5])).rejects.toThrow(/labels\[1\] = 5 is outside/);
    try {
      await metrics.calibration([[0.7, 0.7]], [0]);
    } catch (e) {
      expect((e as Error).stack).toMatch(/bad-input\.test\.ts/);
    }
  });

  it('accumulator misuse', () => {
    throwsWith(() => new metrics.CalibrationAccumulator({ mode: 'classwise' }), TypeError, /classes: required/);
    throwsWith(() => new metrics.CalibrationAccumulator({ classes: 3 }), RangeError, /classes: only used in 'classwise' mode/);
    throwsWith(() => new metrics.CalibrationAccumulator({ mode: 'confidence', extras: true }), RangeError, /extras/);
    const a = new metrics.CalibrationAccumulator({ bins: 10 });
    throwsWith(() => a.merge(new metrics.CalibrationAccumulator({ bins: 15 })), RangeError, /merge: accumulators differ/);
    throwsWith(() => a.merge({} as never), TypeError, /other: expected a CalibrationAccumulator/);
    throwsWith(() => a.result(), RangeError, /no rows have been accumulated/);
    throwsWith(() => metrics.CalibrationAccumulator.fromJSON({ format: 'x' }), TypeError, /json: expected the output of/);
    const j = a.toJSON();
    j.state[0] = '1';
    throwsWith(() => metrics.CalibrationAccumulator.fromJSON(j), RangeError, /not a calmoe calibration state/);
    j.state = a.toJSON().state.slice(0, 12);  // a good header, a short body
    throwsWith(() => metrics.CalibrationAccumulator.fromJSON(j), RangeError, /length/);
  });
});

describe('tilted weights: bad input', () => {
  it('names the argument', () => {
    throwsWith(() => losses.tiltedWeightsSync(new Float32Array([1, NaN]), 1), RangeError, /losses\[1\] is not finite/);
    throwsWith(() => losses.tiltedWeightsSync([], 1), RangeError, /losses: expected at least one loss/);
    throwsWith(() => losses.tiltedWeightsSync([1], Infinity), RangeError, /eta: expected a finite number/);
    throwsWith(() => losses.tiltedWeightsSync([1], '1' as never), TypeError, /eta: expected a number/);
    throwsWith(() => losses.tiltedWeightsSync([1], 1, { gradient: 'both' as never }), RangeError, /gradient: expected one of 'term', 'through'/);
    throwsWith(() => losses.tiltedWeightsSync('abc' as never, 1), TypeError, /losses: expected a Float32Array/);
  });

  it('setThreads', () => {
    throwsWith(() => setThreads(0), RangeError, /threads: expected an integer in \[1, 4096\]/);
    throwsWith(() => setThreads(undefined as never), TypeError, /threads: missing/);
  });
});
