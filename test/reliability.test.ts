/**
 * Nothing a caller does changes a call behind its back: options are own properties only (a
 * polluted Object.prototype changes no validation or training), shared memory is refused by
 * name, and the model refuses every read or write of its parameters while fit() runs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MoEClassifier, drift, metrics } from '../src/index.js';

const proto = Object.prototype as Record<string, unknown>;
const polluted = ['epochs', 'sumTolerance', 'groups', 'bins', 'input', 'device', 'batchSize', 'shuffle', 'binning', 'routerTemperature'];
afterEach(() => {
  for (const k of polluted) delete proto[k];
});

function probs(rows: number, classes: number) {
  const data = new Float32Array(rows * classes);
  const labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < classes; j++) s += data[i * classes + j] = 1 + ((i * 31 + j * 17) % 13);
    for (let j = 0; j < classes; j++) data[i * classes + j] /= s;
    labels[i] = (i * 7) % classes;
  }
  return { m: { data, rows, cols: classes }, labels };
}

describe('Object.prototype pollution', () => {
  it('changes neither calibration metrics nor their validation', async () => {
    const { m, labels } = probs(500, 4);
    const want = metrics.calibrationSync(m, labels);
    const broken = { ...m, data: m.data.map((v, i) => (i % 4 === 0 ? v + 0.2 : v)) };
    expect(() => metrics.calibrationSync(broken, labels)).toThrow(RangeError);
    proto.sumTolerance = 1e9;
    proto.bins = 3;
    proto.input = 'logits';
    proto.binning = 'equal-mass';
    proto.groups = new Int32Array(500);
    proto.device = 'cuda';
    expect(metrics.calibrationSync(m, labels)).toEqual(want);
    expect(await metrics.calibration(m, labels)).toEqual(want);
    expect(() => metrics.calibrationSync(broken, labels)).toThrow(RangeError);
    const acc = new metrics.CalibrationAccumulator();
    acc.updateSync(m, labels);
    expect(acc.result().ece).toBe(want.ece);
  });

  it('changes no training option', async () => {
    const x = { data: new Float32Array(64 * 3).map((_, i) => Math.sin(i)), rows: 64, cols: 3 };
    const y = new Int32Array(64).map((_, i) => i % 2);
    const fit = async () => {
      const m = new MoEClassifier({ inputDim: 3, classes: 2, experts: 2, seed: 4 });
      const h = await m.fit(x, y, {});
      return { epochs: h.epochs.length, steps: h.epochs[0].steps, params: Array.from(m.parameters) };
    };
    const want = await fit();
    proto.epochs = 5;
    proto.batchSize = 1;
    proto.shuffle = 'yes';
    proto.routerTemperature = 1e-30;
    expect(await fit()).toEqual(want);
  });

  it('changes no drift option', () => {
    const ref = { data: new Float32Array(200).map((_, i) => Math.cos(i)), rows: 100, cols: 2 };
    const want = drift.driftReportSync(ref, ref);
    proto.bins = 2;
    expect(drift.driftReportSync(ref, ref)).toEqual(want);
  });
});

describe('SharedArrayBuffer inputs', () => {
  it('are refused with a TypeError naming the argument', async () => {
    const sab = new Float32Array(new SharedArrayBuffer(40));
    sab.fill(0.1);
    const y = new Int32Array(4);
    expect(() => metrics.eceSync({ data: sab, rows: 4, cols: 10 }, y)).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/^scores\.data: .*SharedArrayBuffer/) }));
    const ysab = new Int32Array(new SharedArrayBuffer(16));
    await expect(metrics.ece({ data: new Float32Array(40).fill(0.1), rows: 4, cols: 10 }, ysab)).rejects.toThrow(/^labels: .*SharedArrayBuffer/);
    const m = new MoEClassifier({ inputDim: 10, classes: 2, experts: 2 });
    expect(() => m.predictSync({ data: sab, rows: 4, cols: 10 })).toThrow(/^x\.data: .*SharedArrayBuffer/);
  });
});

describe('the model while fit() runs', () => {
  it('refuses the parameter views and predict with CALMOE_BUSY; writes land after', async () => {
    const x = { data: new Float32Array(64 * 3).map((_, i) => Math.sin(i)), rows: 64, cols: 3 };
    const y = new Int32Array(64).map((_, i) => i % 2);
    const m = new MoEClassifier({ inputDim: 3, classes: 2, experts: 2, seed: 4 });
    const before = m.parameters;
    const p = m.fit(x, y, { epochs: 2 });
    const busy = expect.objectContaining({ code: 'CALMOE_BUSY' });
    expect(() => m.parameters).toThrow(busy);
    expect(() => m.tensors()).toThrow(busy);
    expect(() => m.predictSync(x)).toThrow(busy);
    await expect(m.predict(x)).rejects.toThrow(busy);
    await expect(m.evaluate(x, y)).rejects.toThrow(busy);
    expect(() => m.setTemperatures([1, 1])).toThrow(busy);
    await expect(m.fit(x, y)).rejects.toThrow(busy);
    before[0] = 1234;  // a view taken earlier: the fit's parameters replace it when it settles
    await p;
    expect(m.parameters).toBe(before);
    expect(m.parameters[0]).not.toBe(1234);
  });
});

describe('predict never returns NaN silently', () => {
  const m = new MoEClassifier({ inputDim: 3, classes: 2, experts: 2, seed: 4 });
  const x = (v: number) => ({ data: new Float32Array([0.5, v, -0.25, 1, 2, 3]), rows: 2, cols: 3 });
  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])('rejects feature %s naming it, like fit', async (v) => {
    expect(() => m.predictSync(x(v))).toThrow(expect.objectContaining({ name: 'RangeError', message: 'x: row 0, feature 1 is not finite' }));
    await expect(m.predict(x(v))).rejects.toThrow(RangeError);
    await expect(m.evaluate(x(v), [0, 1])).rejects.toThrow(/^x: row 0, feature 1 is not finite/);
    await expect(m.fit(x(v), [0, 1])).rejects.toThrow(/x: row 0, feature 1 is not finite/);
  });
  it('a huge finite feature: finite probabilities or a RangeError naming the row', () => {
    for (const v of [3e38, -3e38, 1e30]) {
      let probs: Float32Array | undefined;
      try {
        probs = m.predictSync(x(v)).probs.data;
      } catch (e) {
        expect(e).toBeInstanceOf(RangeError);
        expect((e as Error).message).toMatch(/^x: row 0 gives non-finite probabilities/);
      }
      if (probs) for (const p of probs) expect(Number.isFinite(p)).toBe(true);
    }
  });
  it('a tiny router temperature: finite probabilities or a RangeError', () => {
    const t = new MoEClassifier({ inputDim: 3, classes: 2, experts: 3, routerTemperature: 1e-30, seed: 2 });
    try {
      for (const p of t.predictSync(x(1e5)).probs.data) expect(Number.isFinite(p)).toBe(true);
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
    }
  });
});

describe("predict's probabilities are what the metrics accept", () => {
  // Every expert sure of class 0 (p_k = [1, 0, 0] exactly in float32) under a spread router: the
  // mixture sum_k r_k p_k is the float sum of the router weights, 1 + an ulp on many rows (637
  // of these 4,000 before the fix), which ece, applyTemperature (the aggregate temperature) and
  // fit's validation refused as "not a probability in [0, 1]".
  const model = () => {
    const m = new MoEClassifier({ inputDim: 4, classes: 3, experts: 8, seed: 3, expertHidden: [] });
    for (const t of m.tensors()) {
      if (/^experts\.\d+\.0\.bias$/.test(t.name)) t.data.set([60, 0, 0]);
      else if (t.name.startsWith('experts.')) t.data.fill(0);
      else if (t.name === 'router.0.weight') t.data.forEach((v, i) => { t.data[i] = v * 3; });
    }
    return m;
  };
  const n = 4000;
  const x = { data: new Float32Array(n * 4).map((_, i) => Math.sin(i * 1.7) * 2), rows: n, cols: 4 };
  it('a mixture that rounds above 1 is 1 (against the mixture in doubles), sync and async', async () => {
    const m = model();
    const sync = m.predictSync(x, { returnRouting: true });
    const { weights, expertProbs } = sync.routing;
    let above = 0;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        let mix = 0;
        for (let k = 0; k < 8; k++) mix += weights.data[i * 8 + k] * expertProbs[(i * 8 + k) * 3 + c];
        if (Math.fround(mix) > 1) above++;
        expect(Math.abs(sync.probs.data[i * 3 + c] - Math.min(mix, 1))).toBeLessThanOrEqual(1e-6);
        expect(sync.probs.data[i * 3 + c]).toBeLessThanOrEqual(1);
      }
    }
    expect(above).toBeGreaterThan(0);  // the case is real: the double mixture rounds above 1 on some rows
    expect((await m.predict(x)).probs.data).toEqual(sync.probs.data);
    expect(metrics.eceSync(sync.probs, new Int32Array(n))).toBeLessThan(1e-6);
  });
  it('the aggregate temperature, evaluate and a fit with validation take them', async () => {
    const m = model();
    m.setAggregateTemperature(1.5);
    for (const p of (await m.predict(x)).probs.data) expect(p).toBeLessThanOrEqual(1);
    const y = new Int32Array(n);
    expect((await m.evaluate(x, y)).accuracy).toBe(1);
    const h = await model().fit(x, y, { epochs: 1, validation: { x, y }, optimizer: { type: 'sgd', lr: 1e-30 } });
    expect(h.epochs[0].valAccuracy).toBe(1);
  });
});

describe('bounded work and waiting in fit', () => {
  const x = { data: new Float32Array([0.1, 0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]), rows: 4, cols: 2 };
  const y = [0, 1, 0, 1];
  it('keeps the last 10,000 epoch logs of a fit with many short epochs', async () => {
    const m = new MoEClassifier({ inputDim: 2, classes: 2, experts: 1, expertHidden: [], seed: 1 });
    const h = await m.fit(x, y, { epochs: 25_000, batchSize: 4 });
    expect(h.epochs.length).toBe(10_000);
    expect(h.epochs[0].epoch).toBe(15_000);
    expect(h.epochs[9_999].epoch).toBe(24_999);
  });
  it('keeps no more on the TypeScript side with early stopping and checkpoints (which see every epoch), nor in the checkpoint', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'calmoe-history-'));
    try {
      const m = new MoEClassifier({ inputDim: 2, classes: 2, experts: 1, expertHidden: [], seed: 1 });
      const path = join(dir, 'ck.safetensors');
      const h = await m.fit(x, y, { epochs: 12_000, batchSize: 4, earlyStopping: { monitor: 'loss', patience: 1e9 }, checkpoint: { path, everyEpochs: 12_000 } });
      expect(h.epochs.length).toBe(10_000);
      expect(h.epochs[0].epoch).toBe(2_000);
      // the run resumes from that checkpoint (its history is the last 10,000 epochs too)
      const back = new MoEClassifier({ inputDim: 2, classes: 2, experts: 1, expertHidden: [], seed: 1 });
      const r = await back.fit(x, y, { epochs: 12_001, batchSize: 4, resumeFrom: path });
      expect(r.epochs.length).toBe(10_000);
      expect(r.epochs[9_999].epoch).toBe(12_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('delivers no progress queued before an abort', async () => {
    const m = new MoEClassifier({ inputDim: 2, classes: 2, experts: 1, expertHidden: [], seed: 1 });
    const ac = new AbortController();
    let after = 0;
    const p = m.fit(x, y, { epochs: 1e6, batchSize: 1, signal: ac.signal, onBatchEnd: () => { if (ac.signal.aborted) after++; else ac.abort(); } });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(after).toBe(0);
  });
});

describe('SVG output', () => {
  it('refuses diagram data whose fields are not numbers (nothing reaches the markup unescaped)', async () => {
    const { report } = await import('../src/index.js');
    const { m, labels } = probs(100, 3);
    const d = report.reliabilityDiagram(metrics.calibrationSync(m, labels));
    expect(report.reliabilitySvg(d)).toMatch(/^<svg/);
    expect(() => report.reliabilitySvg({ ...d, rows: '<script>alert(1)</script>' as unknown as number })).toThrow(/rows: expected a number/);
    const bins = d.bins.map((b, i) => (i === 0 ? { ...b, count: '<b>' as unknown as number } : b));
    expect(() => report.reliabilitySvg({ ...d, bins })).toThrow(/bins\[0\]\.count: expected a number/);
  });
});

describe('extreme training settings stay finite', () => {
  const x = { data: new Float32Array(64 * 4).map((_, i) => Math.sin(i) * 3), rows: 64, cols: 4 };
  const y = new Int32Array(64).map((_, i) => i % 2);
  it.each([
    [{ type: 'robust', eta: 1e6, gradient: 'through' }, 1],
    [{ type: 'robust', eta: -1e6, gradient: 'term' }, 1],
    [{ type: 'robust-filtered', eta: 1e6, gradient: 'term' }, 1],
    [{ type: 'erm' }, 1e-30],
  ] as const)('objective %j, router temperature %s', async (objective, routerTemperature) => {
    const m = new MoEClassifier({ inputDim: 4, classes: 2, experts: 3, seed: 1, routerTemperature });
    const h = await m.fit(x, y, { epochs: 2, batchSize: 16, objective });
    expect(Number.isFinite(h.epochs[1].loss)).toBe(true);
    for (const v of m.parameters) expect(Number.isFinite(v)).toBe(true);
    for (const p of m.predictSync(x).probs.data) expect(Number.isFinite(p)).toBe(true);
  });
});
