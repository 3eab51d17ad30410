import { describe, expect, it } from 'vitest';
import { matrix, metrics } from '../src/index.js';
import { randomProbs, refWeightedCalibration, rng } from './reference.js';

// Weights of every kind: zeros, tiny, large, not summing to 1.
function weights(seed: number, n: number) {
  const r = rng(seed);
  return Float32Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 0 : r.next() < 0.1 ? 1e-6 * r.next() : 50 * r.next() ** 3));
}

function close(a: number, b: number, tol = 1e-9) {
  if (Number.isNaN(b)) expect(a).toBeNaN();
  else expect(Math.abs(a - b)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b)));
}

function repeatRows(p: Float32Array, C: number, y: Int32Array, times: Int32Array) {
  const rows: number[] = [];
  times.forEach((t, i) => { for (let k = 0; k < t; k++) rows.push(i); });
  const out = new Float32Array(rows.length * C);
  rows.forEach((i, r) => out.set(p.subarray(i * C, (i + 1) * C), r * C));
  return { probs: matrix(out, rows.length, C), labels: Int32Array.from(rows, (i) => y[i]), groups: rows };
}

describe('weighted calibration metrics', () => {
  for (const [rows, C, bins, edges] of [[1, 3, 15, 'right-closed'], [13, 4, 10, 'left-closed'], [1977, 10, 15, 'right-closed']] as const) {
    it(`match the naive weighted reference: ${rows} x ${C}, ${bins} bins ${edges}`, async () => {
      const d = randomProbs(rows + C, rows, C, 1.5);
      const w = weights(rows, rows);
      if (rows === 1) w[0] = 2.5;
      const ref = refWeightedCalibration(d.data, rows, C, d.labels, w, bins, edges);
      const r = metrics.calibrationSync(matrix(d.data, rows, C), d.labels, { bins, edges, weights: w });
      close(r.weight, ref.weight, 1e-8);
      close(r.accuracy, ref.accuracy);
      close(r.ece, ref.ece);
      close(r.mce, ref.mce);
      close(r.rmsce, ref.rmsce);
      close(r.nll, ref.nll, 1e-7);
      close(r.brier, ref.brier, 1e-7);
      expect(Array.from(r.bins.count)).toEqual(ref.count);  // rows per bin, weight 0 included
      for (let b = 0; b < bins; b++) {
        close(r.bins.weight[b], ref.binWeight[b], 1e-8);
        close(r.bins.accuracy[b], ref.binAccuracy[b]);
        close(r.bins.meanConfidence[b], ref.binConfidence[b]);
      }
      expect(await metrics.calibration(matrix(d.data, rows, C), d.labels, { bins, edges, weights: w })).toEqual(r);
    });
  }

  it('weights of 1 give the unweighted metrics; scaling every weight changes nothing', () => {
    const d = randomProbs(5, 800, 6);
    const m = matrix(d.data, 800, 6);
    const plain = metrics.calibrationSync(m, d.labels);
    const ones = metrics.calibrationSync(m, d.labels, { weights: new Float32Array(800).fill(1) });
    for (const k of ['accuracy', 'ece', 'mce', 'rmsce', 'nll', 'brier'] as const) close(ones[k], plain[k], 1e-8);
    expect(ones.weight).toBe(800);
    expect(Array.from(ones.bins.weight)).toEqual(Array.from(plain.bins.count));
    const w = weights(9, 800);
    const a = metrics.calibrationSync(m, d.labels, { weights: w });
    const b = metrics.calibrationSync(m, d.labels, { weights: w.map((v) => v * 1024) });  // exact in float32
    for (const k of ['accuracy', 'ece', 'mce', 'rmsce', 'nll', 'brier'] as const) close(b[k], a[k], 1e-12);
  });

  it('zero weights: the rows count for nothing (same as leaving them out); a bin of only such rows is empty', () => {
    const d = randomProbs(6, 300, 4);
    const w = Float32Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const kept = Array.from({ length: 300 }, (_, i) => i).filter((i) => i % 3 !== 0);
    const sub = new Float32Array(kept.length * 4);
    kept.forEach((i, r) => sub.set(d.data.subarray(i * 4, i * 4 + 4), r * 4));
    const a = metrics.calibrationSync(matrix(d.data, 300, 4), d.labels, { weights: w });
    const b = metrics.calibrationSync(matrix(sub, kept.length, 4), Int32Array.from(kept, (i) => d.labels[i]));
    for (const k of ['accuracy', 'ece', 'mce', 'rmsce', 'nll', 'brier'] as const) close(a[k], b[k], 1e-8);
    expect(a.rows).toBe(300);
    expect(a.weight).toBe(200);
    // one confident row of weight 0 alone in the top bin
    const p = new Float32Array([0.99, 0.01, 0.5, 0.5, 0.6, 0.4]);
    const r = metrics.calibrationSync(matrix(p, 3, 2), [0, 0, 1], { bins: 10, weights: [0, 1, 1] });
    expect(r.bins.count[9]).toBe(1);
    expect(r.bins.weight[9]).toBe(0);
    expect(r.bins.accuracy[9]).toBeNaN();
    expect(() => metrics.calibrationSync(matrix(p, 3, 2), [0, 0, 1], { weights: [0, 0, 0] })).toThrow(/all zero/);
  });

  it('integer weights equal repeated rows: top-label, classwise, group, binary, confidence', () => {
    const n = 240, C = 3;
    const d = randomProbs(11, n, C);
    const r = rng(12);
    const times = Int32Array.from({ length: n }, () => r.int(4));  // 0..3, zeros included
    const w = Float32Array.from(times);
    const rep = repeatRows(d.data, C, d.labels, times);
    const m = matrix(d.data, n, C);
    const same = (a: Record<string, unknown>, b: Record<string, unknown>, keys: string[]) => { for (const k of keys) close(a[k] as number, b[k] as number, 1e-8); };
    const keys = ['accuracy', 'ece', 'mce', 'rmsce', 'nll', 'brier'];
    same(metrics.calibrationSync(m, d.labels, { weights: w }), metrics.calibrationSync(rep.probs, rep.labels), keys);
    same(metrics.classwiseCalibrationSync(m, d.labels, { weights: w }), metrics.classwiseCalibrationSync(rep.probs, rep.labels), keys);
    const gid = Int32Array.from({ length: n }, (_, i) => i % 4);
    const gw = metrics.groupCalibrationSync(m, d.labels, gid, { weights: w });
    const gr = metrics.groupCalibrationSync(rep.probs, rep.labels, Int32Array.from(rep.groups, (i) => gid[i]), { numGroups: 4 });
    same(gw.overall, gr.overall, keys);
    gw.groups.forEach((g, k) => same(g, gr.groups[k], ['accuracy', 'ece', 'mce', 'rmsce']));
    const pos = Float32Array.from({ length: n }, (_, i) => d.data[i * C]);
    const yb = Int32Array.from(d.labels, (v) => (v === 0 ? 1 : 0));
    const repPos = Float32Array.from(rep.groups, (i) => pos[i]), repYb = Int32Array.from(rep.groups, (i) => yb[i]);
    same(metrics.binaryCalibrationSync(pos, yb, { weights: w }), metrics.binaryCalibrationSync(repPos, repYb), keys);
    const ok = Uint8Array.from(yb);
    same(metrics.confidenceCalibrationSync(pos, ok, { weights: w }), metrics.confidenceCalibrationSync(repPos, Uint8Array.from(repYb)), ['accuracy', 'ece', 'mce', 'rmsce']);
  });

  it('weighted accumulators merge exactly, in any split and order, and survive JSON', () => {
    const n = 1000, C = 5;
    const d = randomProbs(21, n, C);
    const w = weights(22, n);
    const m = matrix(d.data, n, C);
    const whole = metrics.calibrationSync(m, d.labels, { weights: w });
    const parts = [[0, 333], [333, 334], [334, 1000]];
    const accs = parts.map(([a, b]) => {
      const acc = new metrics.CalibrationAccumulator({ weighted: true });
      acc.updateSync(matrix(d.data.subarray(a * C, b * C), b - a, C), d.labels.subarray(a, b), { weights: w.subarray(a, b) });
      return acc;
    });
    const fwd = new metrics.CalibrationAccumulator({ weighted: true }), rev = new metrics.CalibrationAccumulator({ weighted: true });
    accs.forEach((a) => fwd.merge(a));
    [...accs].reverse().forEach((a) => rev.merge(a));
    expect(fwd.toJSON()).toEqual(rev.toJSON());  // the same integers
    expect(fwd.result()).toEqual(whole);
    const back = metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(fwd)));
    expect(back.weighted).toBe(true);
    expect(back.result()).toEqual(whole);
    // an update without weights weighs each row 1
    const ones = new metrics.CalibrationAccumulator({ weighted: true });
    ones.updateSync(m, d.labels);
    expect(ones.result().weight).toBe(n);
    expect(() => fwd.merge(new metrics.CalibrationAccumulator())).toThrow(/weighting/);
  });

  it('every mode: merged weighted accumulators equal one fed all rows (bit for bit), survive JSON, and match the naive reference', () => {
    const n = 301, C = 4;
    const d = randomProbs(41, n, C);
    const w = weights(42, n);
    const conf = Float32Array.from({ length: n }, (_, i) => d.data[i * C]);
    const correct = Uint8Array.from(d.labels, (y) => (y === 0 ? 1 : 0));
    const binary = Int32Array.from(d.labels, (y) => y % 2);
    const groups = Int32Array.from({ length: n }, (_, i) => i % 3);
    type Feed = (acc: metrics.CalibrationAccumulator, a: number, b: number) => void;
    const rowsOf = (a: number, b: number) => matrix(d.data.subarray(a * C, b * C), b - a, C);
    const modes: Array<[string, object, Feed]> = [
      ['top-label', {}, (acc, a, b) => acc.updateSync(rowsOf(a, b), d.labels.subarray(a, b), { weights: w.subarray(a, b) })],
      ['classwise', { mode: 'classwise', classes: C }, (acc, a, b) => acc.updateSync(rowsOf(a, b), d.labels.subarray(a, b), { weights: w.subarray(a, b) })],
      ['grouped', { groups: 3 }, (acc, a, b) => acc.updateSync(rowsOf(a, b), d.labels.subarray(a, b), { weights: w.subarray(a, b), groups: groups.subarray(a, b) })],
      ['binary', { mode: 'binary' }, (acc, a, b) => acc.updateSync(conf.subarray(a, b), binary.subarray(a, b), { weights: w.subarray(a, b) })],
      ['confidence', { mode: 'confidence', extras: false }, (acc, a, b) => acc.updateSync(conf.subarray(a, b), correct.subarray(a, b), { weights: w.subarray(a, b) })],
    ];
    for (const [name, options, feed] of modes) {
      const make = () => new metrics.CalibrationAccumulator({ ...options, bins: 7, weighted: true });
      const one = make();
      feed(one, 0, n);
      const merged = make();
      for (const [a, b] of [[0, 100], [100, 101], [101, 301]]) {
        const part = make();
        feed(part, a, b);
        merged.merge(metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(part))));
      }
      expect(merged.toJSON(), name).toEqual(one.toJSON());
      expect(metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(merged))).result(), name).toEqual(one.result());
    }
    // merged top-label accumulators against the naive weighted reference
    const acc = new metrics.CalibrationAccumulator({ bins: 7, weighted: true });
    for (const [lo, hi] of [[0, 150], [150, 301]]) {
      const part = new metrics.CalibrationAccumulator({ bins: 7, weighted: true });
      part.updateSync(rowsOf(lo, hi), d.labels.subarray(lo, hi), { weights: w.subarray(lo, hi) });
      acc.merge(part);
    }
    const r = acc.result(), ref = refWeightedCalibration(d.data, n, C, d.labels, w, 7);
    close(r.weight, ref.weight, 1e-8);
    for (const k of ['accuracy', 'ece', 'mce', 'rmsce'] as const) close(r[k], ref[k]);
    close(r.nll!, ref.nll, 1e-7);
    close(r.brier!, ref.brier, 1e-7);
    for (let b = 0; b < 7; b++) close(r.bins.weight[b], ref.binWeight[b], 1e-8);
  });

  it('bad weights name the argument', () => {
    const d = randomProbs(31, 4, 2);
    const m = matrix(d.data, 4, 2);
    expect(() => metrics.calibrationSync(m, d.labels, { weights: [1, -1, 1, 1] })).toThrow(/weights\[1\] = -1/);
    expect(() => metrics.calibrationSync(m, d.labels, { weights: [1, NaN, 1, 1] })).toThrow(RangeError);
    expect(() => metrics.calibrationSync(m, d.labels, { weights: [1, 2e8, 1, 1] })).toThrow(/weights\[1\]/);
    expect(() => metrics.calibrationSync(m, d.labels, { weights: [1, 1] })).toThrow(/expected 4 weights/);
    expect(() => metrics.calibrationSync(m, d.labels, { weights: [1, 1, 1, 1], binning: 'equal-mass' })).toThrow(/equal-mass/);
    const acc = new metrics.CalibrationAccumulator();
    expect(() => acc.updateSync(m, d.labels, { weights: [1, 1, 1, 1] })).toThrow(/not weighted/);
  });
});

describe('MoEClassifier.evaluate with weights', () => {
  it('weighted metrics and load; integer weights equal repeated rows', async () => {
    const { MoEClassifier } = await import('../src/index.js');
    const r = rng(41);
    const n = 120, d = 5;
    const x = Float32Array.from({ length: n * d }, () => r.normal());
    const y = Int32Array.from({ length: n }, () => r.int(3));
    const m = new MoEClassifier({ inputDim: d, classes: 3, experts: 3, seed: 2, init: { std: 0.7 } });
    const times = Int32Array.from({ length: n }, (_, i) => i % 3);
    const rows: number[] = [];
    times.forEach((t, i) => { for (let k = 0; k < t; k++) rows.push(i); });
    const xr = new Float32Array(rows.length * d);
    rows.forEach((i, k) => xr.set(x.subarray(i * d, i * d + d), k * d));
    const a = m.evaluateSync(matrix(x, n, d), y, { weights: Float32Array.from(times) });
    const b = m.evaluateSync(matrix(xr, rows.length, d), Int32Array.from(rows, (i) => y[i]));
    for (const k of ['accuracy', 'nll', 'brier', 'ece'] as const) close(a[k], b[k], 1e-8);
    for (let k = 0; k < 3; k++) {
      close(a.expertLoad.share[k], b.expertLoad.share[k], 1e-9);
      close(a.expertLoad.routingMass[k], b.expertLoad.routingMass[k], 1e-6);
    }
    expect((await m.evaluate(matrix(x, n, d), y, { weights: Float32Array.from(times) })).ece).toBe(a.ece);
  });
});

describe('audits with weights', () => {
  it('integer weights equal repeated rows: expert table, regret subset, mask and user groups', async () => {
    const { audit } = await import('../src/index.js');
    const r = rng(51);
    const B = 300, K = 3, C = 4;
    const sm = (v: number[]) => { const m = Math.max(...v); const e = v.map((x) => Math.exp(x - m)); const s = e.reduce((a, b) => a + b, 0); return e.map((x) => x / s); };
    const routing = new Float32Array(B * K), P = new Float32Array(B * K * C), p = new Float32Array(B * C), labels = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      sm([0, 1, 2].map(() => 1.5 * r.normal())).forEach((v, k) => (routing[i * K + k] = v));
      for (let k = 0; k < K; k++) sm([0, 1, 2, 3].map(() => 2 * r.normal())).forEach((v, j) => (P[(i * K + k) * C + j] = v));
      for (let j = 0; j < C; j++) for (let k = 0; k < K; k++) p[i * C + j] += routing[i * K + k] * P[(i * K + k) * C + j];
      labels[i] = r.int(C);
    }
    const times = Int32Array.from({ length: B }, () => r.int(3));
    const mask = Uint8Array.from({ length: B }, (_, i) => (i % 4 === 0 ? 1 : 0));
    const groups = Int32Array.from({ length: B }, (_, i) => i % 3);
    const rows: number[] = [];
    times.forEach((t, i) => { for (let k = 0; k < t; k++) rows.push(i); });
    const take = (a: Float32Array, w: number) => { const o = new Float32Array(rows.length * w); rows.forEach((i, n) => o.set(a.subarray(i * w, i * w + w), n * w)); return o; };
    const out = (rs: Float32Array, Ps: Float32Array, ps: Float32Array, ys: Int32Array, n: number) =>
      ({ routing: matrix(rs, n, K), expertProbs: audit.expertTensor(Ps, n, K, C), mixture: matrix(ps, n, C), labels: ys });
    const weighted = audit.moeAuditSync(out(routing, P, p, labels, B), { weights: Float32Array.from(times), mask, groups });
    const repeated = audit.moeAuditSync(out(take(routing, K), take(P, K * C), take(p, C), Int32Array.from(rows, (i) => labels[i]), rows.length),
      { mask: Uint8Array.from(rows, (i) => mask[i]), groups: Int32Array.from(rows, (i) => groups[i]) });
    const same = (a: Record<string, number>, b: Record<string, number>, keys: string[]) => { for (const k of keys) close(a[k], b[k], 1e-8); };
    weighted.experts.experts.forEach((e, k) => {
      same(e.own as never, repeated.experts.experts[k].own as never, ['accuracy', 'ece', 'meanConfidence']);
      same(e.mixture as never, repeated.experts.experts[k].mixture as never, ['accuracy', 'ece', 'meanConfidence']);
    });
    const keys = ['share', 'accuracy', 'ece', 'nll', 'meanConfidence'];
    same(weighted.subsets.overall as never, repeated.subsets.overall as never, keys);
    same(weighted.subsets.regret.inside as never, repeated.subsets.regret.inside as never, keys);
    same(weighted.subsets.mask!.inside as never, repeated.subsets.mask!.inside as never, keys);
    weighted.subsets.groups!.groups.forEach((g, k) => same(g as never, repeated.subsets.groups!.groups[k] as never, keys));
  });
});
