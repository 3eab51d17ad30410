import { describe, expect, it } from 'vitest';
import { MoEClassifier, calibrate, matrix } from '../src/index.js';
import { refGridTemperature, refTemperatureNll, rng } from './reference.js';

// Clusters in d dims (cluster k shifts feature k), labels from a per-cluster linear rule, 15% noise.
function data(seed: number, n: number, d: number, C: number, K: number) {
  const r = rng(seed);
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = i % K;
    for (let j = 0; j < d; j++) x[i * d + j] = (j === k ? 3 : 0) + r.normal();
    const s = x[i * d + ((k + 1) % d)] + 0.5 * x[i * d + ((k + 2) % d)];
    y[i] = r.next() < 0.15 ? r.int(C) : s > 0.3 ? 2 % C : s > -0.3 ? 1 % C : 0;
  }
  return { x: matrix(x, n, d), y };
}

async function trained(routing: 'hard' | 'soft' | 'topk', seed = 1) {
  const d = 6, C = 3, K = 3;
  const m = new MoEClassifier({ inputDim: d, classes: C, experts: K, expertHidden: [8], routing, ...(routing === 'topk' ? { topK: 2 } : {}), seed });
  const train = data(seed, 600, d, C, K);
  await m.fit(train.x, train.y, { epochs: 25, batchSize: 64, optimizer: { lr: 2e-2 } });
  return { m, val: data(seed + 100, 400, d, C, K), test: data(seed + 200, 400, d, C, K), d, C, K };
}

function softmaxRow(z: Float32Array, off: number, C: number, T: number) {
  let mx = -Infinity;
  for (let j = 0; j < C; j++) mx = Math.max(mx, z[off + j] / T);
  const e = Array.from({ length: C }, (_, j) => Math.exp(z[off + j] / T - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

describe('MoEClassifier: expert logits', () => {
  it('predict returns each active expert logits; softmax(z / T_k) is its probabilities', () => {
    const m = new MoEClassifier({ inputDim: 5, classes: 4, experts: 3, routing: 'topk', topK: 2, seed: 3, init: { std: 1 } });
    m.setTemperatures([0.5, 1, 2.5]);
    const x = data(5, 37, 5, 4, 3).x;
    const p = m.predictSync(x, { returnExpertLogits: true });
    const r = p.routing!;
    expect(r.expertLogits).toBeInstanceOf(Float32Array);
    expect(r.expertLogits!.length).toBe(37 * 2 * 4);
    for (let i = 0; i < 37; i++) {
      for (let s = 0; s < 2; s++) {
        const off = (i * 2 + s) * 4;
        const q = softmaxRow(r.expertLogits!, off, 4, m.temperatures[r.selected[i * 2 + s]]);
        for (let j = 0; j < 4; j++) expect(r.expertProbs[off + j]).toBeCloseTo(q[j], 6);
      }
    }
    // without the option, none (and the routing only on request)
    expect(m.predictSync(x).routing).toBeUndefined();
    expect(m.predictSync(x, { returnRouting: true }).routing!.expertLogits).toBeUndefined();
  });
});

describe('MoEClassifier: calibration', () => {
  it('calibrateExperts (hard): each T_k is the logit fit on its top-1 rows = the brute-force grid minimiser', async () => {
    const { m, val, C, K } = await trained('hard');
    const p = m.predictSync(val.x, { returnExpertLogits: true });
    const cal = await m.calibrateExperts(val.x, val.y, { minRows: 0 });
    expect(cal.mode).toBe('hard');
    const n = val.y.length;
    for (let k = 0; k < K; k++) {
      const w = Float32Array.from(p.routing!.selected, (e) => (e === k ? 1 : 0));
      if (!w.some((v) => v > 0)) continue;
      const grid = refGridTemperature(p.routing!.expertLogits!, n, C, val.y, 0.1, 10, 2001, w);
      expect(Math.abs(Math.log(cal.temperatures[k] / grid.T))).toBeLessThanOrEqual(grid.step);
      expect(refTemperatureNll(p.routing!.expertLogits!, n, C, val.y, cal.temperatures[k], w)).toBeLessThanOrEqual(grid.nll + 1e-12);
      expect(m.temperatures[k]).toBeCloseTo(cal.temperatures[k], 6);
    }
    // hard: the model's NLL is the sum of the experts' NLLs, so it cannot get worse
    expect(cal.kept).toBe(true);
    expect(cal.nllAfter).toBeLessThanOrEqual(cal.nllBefore);
    expect(m.evaluateSync(val.x, val.y).nll).toBeCloseTo(cal.nllAfter, 6);
    // absolute, not composed: calibrating again gives the same temperatures
    const again = await m.calibrateExperts(val.x, val.y, { minRows: 0 });
    for (let k = 0; k < K; k++) expect(again.temperatures[k]).toBeCloseTo(cal.temperatures[k], 6);
  });

  it('minimum size: an expert routed fewer than minRows validation rows keeps T = 1, with a warning', async () => {
    const { m, val } = await trained('hard');
    const counts = [0, 0, 0];
    for (const e of m.predictSync(val.x, { returnRouting: true }).routing!.selected) counts[e]++;
    const few = Math.min(...counts.filter((c) => c > 0));
    const cal = await m.calibrateExperts(val.x, val.y, { minRows: few + 1 });
    cal.experts.forEach((e, k) => {
      if (counts[k] <= few) {
        expect(e).toMatchObject({ temperature: 1, skipped: counts[k] === 0 ? 'no-rows' : 'too-few-rows' });
        expect(m.temperatures[k]).toBe(1);
      } else expect(e.skipped).toBe(null);
    });
    expect(cal.warnings.some((w) => /below minRows/.test(w))).toBe(true);
  });

  it('calibrate (soft): the aggregate temperature is applied in predict and saved by toJSON', async () => {
    const { m, val, test } = await trained('soft');
    const cal = await m.calibrate(val.x, val.y);
    expect(['experts+aggregate', 'aggregate']).toContain(cal.scope);
    expect(m.aggregateTemperature).toBe(cal.aggregate!.temperature);
    expect(m.aggregateTemperature).not.toBe(1);
    expect(cal.nllAfter).toBeLessThanOrEqual(cal.nllBefore);  // checked on the calibration rows: never worse
    expect(m.evaluateSync(val.x, val.y).nll).toBeCloseTo(cal.nllAfter, 6);
    // predict = the raw mixture, p^(1/T_a) renormalised
    const T = m.aggregateTemperature;
    m.setAggregateTemperature(1);
    const raw = m.predictSync(test.x).probs;
    m.setAggregateTemperature(T);
    const scaled = calibrate.applyTemperatureSync(raw, T, { input: 'probabilities' });
    expect(m.predictSync(test.x).probs.data).toEqual(scaled.data);
    expect((await m.predict(test.x)).probs.data).toEqual(scaled.data);
    // round trip
    const json = JSON.parse(JSON.stringify(m));
    expect(json.aggregateTemperature).toBe(T);
    const back = MoEClassifier.fromJSON(json);
    expect(back.aggregateTemperature).toBe(T);
    expect(back.predictSync(test.x).probs.data).toEqual(m.predictSync(test.x).probs.data);
    // a snapshot from before the field existed loads with T_a = 1
    delete json.aggregateTemperature;
    expect(MoEClassifier.fromJSON(json).aggregateTemperature).toBe(1);
  });

  it('calibrate (hard): per-expert only, aggregate stays 1', async () => {
    const { m, val } = await trained('hard');
    const cal = await m.calibrate(val.x, val.y);
    expect(cal.scope).toBe('experts');
    expect(cal.aggregate).toBe(null);
    expect(m.aggregateTemperature).toBe(1);
  });

  // On this soft model the per-expert temperatures (each expert alone is over-confident: T_k ~ 6..10)
  // flatten the mixture more than its own temperature can repair: the NLL gets worse, as the
  // paper's analysis of soft routing allows.
  it('a worse NLL is reverted (then the aggregate alone is tried) or kept on request, with a warning', async () => {
    const { m, val } = await trained('soft');
    const warned: string[] = [];
    const onWarning = (w: Error) => warned.push(w.message);
    process.on('warning', onWarning);
    try {
      const kept = await m.calibrate(val.x, val.y, { minRows: 0, ifWorse: 'keep' });
      expect(kept.scope).toBe('experts+aggregate');
      expect(kept.nllAfter).toBeGreaterThan(kept.nllBefore);
      expect(kept.kept).toBe(true);
      expect(kept.warnings.some((w) => /got worse/.test(w))).toBe(true);
      expect(Array.from(m.temperatures)).toEqual(Array.from(Float32Array.from(kept.experts.temperatures)));
      m.setTemperatures([1, 1, 1]);
      m.setAggregateTemperature(1);
      const reverted = await m.calibrate(val.x, val.y, { minRows: 0 });
      expect(reverted.kept).toBe(false);
      expect(reverted.scope).toBe('aggregate');
      expect(Array.from(m.temperatures)).toEqual([1, 1, 1]);
      expect(m.aggregateTemperature).toBe(reverted.aggregate!.temperature);
      expect(reverted.nllAfter).toBeLessThan(reverted.nllBefore);
      expect(m.evaluateSync(val.x, val.y).nll).toBeCloseTo(reverted.nllAfter, 6);
      // calibrateExperts alone: reverted, the model unchanged
      const ex = await m.calibrateExperts(val.x, val.y, { minRows: 0 });
      expect(ex.kept).toBe(false);
      expect(Array.from(m.temperatures)).toEqual([1, 1, 1]);
      await new Promise((r) => setImmediate(r));
      expect(warned.filter((w) => /got worse/.test(w)).length).toBe(3);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('bad input names the argument', async () => {
    const m = new MoEClassifier({ inputDim: 3, classes: 2, experts: 2, seed: 1 });
    const x = matrix(new Float32Array(12), 4, 3), y = new Int32Array(4);
    await expect(m.calibrate(x, y, { minRows: -1 })).rejects.toThrow(/minRows/);
    await expect(m.calibrate(x, y, { ifWorse: 'never' as never })).rejects.toThrow(/ifWorse/);
    await expect(m.calibrate(x, y, { check: { x: matrix(new Float32Array(4), 2, 2), y: new Int32Array(2) } })).rejects.toThrow(/check\.x/);
    expect(() => m.setAggregateTemperature(0)).toThrow(RangeError);
    expect(() => MoEClassifier.fromJSON({ ...JSON.parse(JSON.stringify(m)), aggregateTemperature: 'x' })).toThrow(/aggregateTemperature/);
  });
});
