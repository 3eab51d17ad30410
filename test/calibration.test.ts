import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { backendInfo, matrix, metrics } from '../src/index.js';
import { randomProbs, refConfidence, refTopLabel, rng } from './reference.js';

type Edges = 'right-closed' | 'left-closed';
const golden = JSON.parse(readFileSync(new URL('./fixtures/calibration-golden.json', import.meta.url), 'utf8')) as {
  cases: Array<{
    name: string; source: string; mode: 'binary' | 'top-label' | 'confidence'; bins: number; edges: Edges[];
    scores?: number[] | number[][]; labels?: number[]; confidence?: number[]; correct?: number[];
    expect: Record<string, number>; tolerance: number;
  }>;
};

describe('golden values (fixtures/calibration-golden.json)', () => {
  for (const g of golden.cases) {
    for (const edges of g.edges) {
      it(`${g.name} (${edges})`, () => {
        const opts = { bins: g.bins, edges };
        const r =
          g.mode === 'binary' ? metrics.binaryCalibrationSync(g.scores as number[], g.labels!, opts)
            : g.mode === 'top-label' ? metrics.calibrationSync(g.scores as number[][], g.labels!, opts)
              : metrics.confidenceCalibrationSync(g.confidence!, g.correct as Array<0 | 1>, opts);
        for (const [key, want] of Object.entries(g.expect)) {
          expect(Math.abs((r as unknown as Record<string, number>)[key] - want), `${key}: ${g.source}`).toBeLessThanOrEqual(g.tolerance);
        }
      });
    }
  }
});

describe('parity with the naive reference', () => {
  const sizes: Array<[number, number]> = [];
  for (const n of [1, 13, 1977, 100003]) for (const c of [2, 3, 10, 1000]) if (n * c <= 2_000_000) sizes.push([n, c]);
  let seed = 1;
  for (const [n, c] of sizes) {
    for (const input of ['probabilities', 'logits'] as const) {
      const s = seed++;
      it(`${n} x ${c} ${input}`, () => {
        const d = randomProbs(s, n, c);
        if (input === 'logits') for (let k = 0; k < d.data.length; k++) d.data[k] = Math.log(d.data[k]) * 1.3 + 0.7;
        const edges: Edges = s % 2 ? 'right-closed' : 'left-closed';
        const bins = [1, 10, 15, 37][s % 4];
        const got = metrics.calibrationSync(matrix(d.data, n, c), d.labels, { bins, edges, input });
        const ref = refTopLabel(d.data, n, c, d.labels, bins, edges, input);
        expect(got.rows).toBe(n);
        expect(got.accuracy).toBe(ref.accuracy);
        const tol = input === 'logits' ? 2e-5 : 1e-9;
        expect(Math.abs(got.ece - ref.ece)).toBeLessThanOrEqual(tol);
        expect(Math.abs(got.mce - ref.mce)).toBeLessThanOrEqual(input === 'logits' ? 1e-3 : 1e-9);
        expect(Math.abs(got.rmsce - ref.rmsce)).toBeLessThanOrEqual(input === 'logits' ? 1e-4 : 1e-9);
        expect(Math.abs(got.nll! - ref.nll)).toBeLessThanOrEqual(1e-6 + 1e-5 * ref.nll);
        expect(Math.abs(got.brier! - ref.brier)).toBeLessThanOrEqual(1e-6 + 1e-5 * ref.brier);
        for (let b = 0; b < bins; b++) {
          if (input === 'probabilities') expect(got.bins.count[b]).toBe(ref.count[b]);
          else expect(Math.abs(got.bins.count[b] - ref.count[b])).toBeLessThanOrEqual(1);
        }
        expect(got.bins.lower[0]).toBe(0);
        expect(got.bins.upper[bins - 1]).toBe(1);
      });
    }
  }

  it('ece() equals calibration().ece, sync and async', async () => {
    const d = randomProbs(5, 1977, 10);
    const m = matrix(d.data, d.rows, d.cols);
    const full = metrics.calibrationSync(m, d.labels);
    expect(metrics.eceSync(m, d.labels)).toBe(full.ece);
    expect(await metrics.ece(m, d.labels)).toBe(full.ece);
    expect(await metrics.calibration(m, d.labels)).toEqual(full);
  });

  it('classwise ECE is the mean of per-class binary-style ECEs', () => {
    const d = randomProbs(6, 1977, 3);
    const r = metrics.classwiseCalibrationSync(matrix(d.data, d.rows, d.cols), d.labels, { bins: 10 });
    let mean = 0;
    for (let j = 0; j < 3; j++) {
      const conf = Array.from({ length: d.rows }, (_, i) => d.data[i * 3 + j]);
      const ok = Array.from(d.labels, (y) => y === j);
      const ref = refConfidence(conf, ok, 10, 'right-closed');
      expect(Math.abs(r.classes[j].ece - ref.ece)).toBeLessThanOrEqual(1e-9);
      expect(Array.from(r.classes[j].bins.count)).toEqual(ref.count);
      mean += ref.ece / 3;
    }
    expect(Math.abs(r.ece - mean)).toBeLessThanOrEqual(1e-12);
  });

  it('equal-mass bins hold N/M rows each and match a sort-based reference', async () => {
    const n = 1977, bins = 15;
    const r = rng(8);
    const conf = Array.from({ length: n }, () => Math.round(r.next() * 40) / 40);
    const ok = conf.map((c) => r.next() < c);
    const got = await metrics.confidenceCalibration(conf, ok, { bins, binning: 'equal-mass' });
    const pairs = conf.map((c, i) => [Math.fround(c), ok[i] ? 1 : 0] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let ece = 0;
    for (let b = 0; b < bins; b++) {
      const lo = Math.floor((b * n) / bins), hi = Math.floor(((b + 1) * n) / bins);
      expect(got.bins.count[b]).toBe(hi - lo);
      let cs = 0, ps = 0;
      for (let i = lo; i < hi; i++) { cs += pairs[i][0]; ps += pairs[i][1]; }
      ece += Math.abs(ps - cs) / n;
    }
    expect(Math.abs(got.ece - ece)).toBeLessThanOrEqual(1e-12);
  });

  it('binary mode matches a positive-class reference', () => {
    const r = rng(9);
    const p = Array.from({ length: 1977 }, () => r.next());
    const y = p.map((v) => (r.next() < v * v ? 1 : 0));
    const got = metrics.binaryCalibrationSync(p, y, { bins: 10 });
    const ref = refConfidence(p, y, 10, 'right-closed');
    expect(Math.abs(got.ece - ref.ece)).toBeLessThanOrEqual(1e-12);
    const acc = p.filter((v, i) => (Math.fround(v) > 0.5 ? 1 : 0) === y[i]).length / p.length;
    expect(got.accuracy).toBeCloseTo(acc, 12);
    const brier = p.reduce((a, v, i) => a + (Math.fround(v) - y[i]) ** 2, 0) / p.length;
    expect(Math.abs(got.brier! - brier)).toBeLessThanOrEqual(1e-6);
  });
});

describe('CalibrationAccumulator', () => {
  it('merging chunks gives exactly the one-shot result', async () => {
    const d = randomProbs(10, 100003, 10);
    const oneShot = metrics.calibrationSync(matrix(d.data, d.rows, d.cols), d.labels);
    const parts: metrics.CalibrationAccumulator[] = [];
    const r = rng(11);
    for (let b = 0; b < d.rows;) {
      const n = Math.min(d.rows - b, 1 + r.int(30000));
      const acc = new metrics.CalibrationAccumulator();
      await acc.update(matrix(d.data.subarray(b * 10, (b + n) * 10), n, 10), d.labels.subarray(b, b + n));
      parts.push(acc);
      b += n;
    }
    const merged = parts.reduce((a, p) => a.merge(p));
    expect(merged.result()).toEqual(oneShot);
    // through JSON (e.g. across processes)
    const restored = metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(merged)));
    expect(restored.result()).toEqual(oneShot);
    expect(restored.rows).toBe(d.rows);
  });

  it('concurrent async updates of one accumulator all count', async () => {
    const d = randomProbs(12, 5000, 4);
    const acc = new metrics.CalibrationAccumulator({ bins: 10 });
    const m = matrix(d.data, d.rows, d.cols);
    await Promise.all([acc.update(m, d.labels), acc.update(m, d.labels), acc.update(m, d.labels)]);
    expect(acc.rows).toBe(15000);
    const once = metrics.calibrationSync(m, d.labels, { bins: 10 });
    expect((acc.result() as metrics.CalibrationReport).ece).toBeCloseTo(once.ece, 14);
  });

  it('a rejected chunk leaves the accumulator unchanged', () => {
    const acc = new metrics.CalibrationAccumulator({ bins: 10 });
    acc.updateSync([[0.9, 0.1]], [0]);
    const before = JSON.stringify(acc);
    expect(() => acc.updateSync([[0.9, 0.1], [0.5, 0.6]], [0, 1])).toThrow(RangeError);
    expect(JSON.stringify(acc)).toBe(before);
  });

  it('classwise, binary and confidence modes', () => {
    const cw = new metrics.CalibrationAccumulator({ mode: 'classwise', classes: 2, bins: 5 });
    cw.updateSync([[0.9, 0.1], [0.2, 0.8]], [0, 1]);
    expect((cw.result() as metrics.ClasswiseCalibrationReport).classes).toHaveLength(2);
    const bin = new metrics.CalibrationAccumulator({ mode: 'binary', bins: 2 });
    bin.updateSync([0.25, 0.25, 0.55], [0, 0, 1]);
    bin.updateSync([0.75, 0.75], [1, 1]);
    expect((bin.result() as metrics.CalibrationReport).ece).toBeCloseTo(0.29, 6);
    const conf = new metrics.CalibrationAccumulator({ mode: 'confidence', bins: 10 });
    conf.updateSync([0.95, 1], [true, false]);
    expect((conf.result() as metrics.CalibrationReport).nll).toBeNull();
  });
});

const info = backendInfo();
const gpu = info.gpus.length > 0 && info.cudaUnavailableReason === '';
if (!gpu) console.warn(`[calmoe] CUDA parity tests skipped: ${info.cudaUnavailableReason}`);

describe('device selection', () => {
  it.skipIf(gpu)("device: 'cuda' without a usable GPU is an error, never a fallback", () => {
    expect(() => metrics.calibrationSync([[0.5, 0.5]], [0], { device: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'CALMOE_CUDA_UNAVAILABLE' }),
    );
  });

  it.skipIf(!gpu)('CUDA gives the same report as the CPU', async () => {
    const d = randomProbs(13, 100003, 10);
    const m = matrix(d.data, d.rows, d.cols);
    for (const input of ['probabilities', 'logits'] as const) {
      const cpu = metrics.calibrationSync(m, d.labels, { device: 'cpu', input });
      expect(metrics.calibrationSync(m, d.labels, { device: 'cuda', input })).toEqual(cpu);
      expect(await metrics.calibration(m, d.labels, { device: 'cuda', input })).toEqual(cpu);
    }
  });
});

describe('group calibration', () => {
  it('each group equals calibration of its rows alone; overall equals the ungrouped report', async () => {
    const d = randomProbs(14, 1977, 5);
    const r = rng(15);
    const g = Int32Array.from({ length: d.rows }, () => r.int(4));
    const m = matrix(d.data, d.rows, d.cols);
    const got = await metrics.groupCalibration(m, d.labels, g, { bins: 10, numGroups: 5 });
    expect(got.overall).toEqual(metrics.calibrationSync(m, d.labels, { bins: 10 }));
    expect(got.groups).toHaveLength(5);
    expect(got.groups[4].rows).toBe(0);
    expect(Number.isNaN(got.groups[4].ece)).toBe(true);
    for (let k = 0; k < 4; k++) {
      const idx = [...g.keys()].filter((i) => g[i] === k);
      const rows = idx.map((i) => Array.from(d.data.subarray(i * 5, i * 5 + 5)));
      const one = metrics.calibrationSync(rows, idx.map((i) => d.labels[i]), { bins: 10 });
      expect(got.groups[k].ece).toBe(one.ece);
      expect(got.groups[k].accuracy).toBeCloseTo(one.accuracy, 14);
      expect(got.groups[k].rows).toBe(idx.length);
    }
    const worst = got.groups.slice(0, 4).reduce((a, b) => (b.ece > a.ece ? b : a));
    expect(got.worst.ece?.group).toBe(worst.group);
  });

  it('grouped accumulators merge exactly and round-trip through JSON', () => {
    const d = randomProbs(16, 3000, 3);
    const g = Int32Array.from({ length: d.rows }, (_, i) => i % 3);
    const a = new metrics.CalibrationAccumulator({ groups: 3 });
    const b = new metrics.CalibrationAccumulator({ groups: 3 });
    a.updateSync(matrix(d.data.subarray(0, 3000), 1000, 3), d.labels.subarray(0, 1000), { groups: g.subarray(0, 1000) });
    b.updateSync(matrix(d.data.subarray(3000), 2000, 3), d.labels.subarray(1000), { groups: g.subarray(1000) });
    const whole = metrics.groupCalibrationSync(matrix(d.data, d.rows, 3), d.labels, g);
    expect(a.merge(b).result()).toEqual(whole);
    expect(metrics.CalibrationAccumulator.fromJSON(JSON.parse(JSON.stringify(a))).result()).toEqual(whole);
    expect(() => a.updateSync([[0.5, 0.25, 0.25]], [0])).toThrow(/this accumulator is grouped/);
    expect(() => a.updateSync([[0.5, 0.25, 0.25]], [0], { groups: [3] })).toThrow(/contains id 3 but numGroups is 3/);
  });
});
