import { describe, expect, it } from 'vitest';
import { audit, calibrate, matrix } from '../src/index.js';
import { refGridTemperature, refTemperatureNll, rng } from './reference.js';

/** B x K x C logits, softmax routing B x K, labels; expert k's labels drawn from softmax(z_k / T_k) on its rows. */
function moe(seed: number, B: number, K: number, C: number, temps?: number[]) {
  const r = rng(seed);
  const logits = Float32Array.from({ length: B * K * C }, () => 2 * r.normal());
  const routing = new Float32Array(B * K);
  const labels = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const g = Array.from({ length: K }, () => Math.exp(2 * r.normal()));
    const s = g.reduce((a, b) => a + b, 0);
    g.forEach((v, k) => (routing[i * K + k] = v / s));
    let top = 0;
    for (let k = 1; k < K; k++) if (routing[i * K + k] > routing[i * K + top]) top = k;
    const T = temps ? temps[top] : 1;
    const q = Array.from({ length: C }, (_, j) => Math.exp(logits[(i * K + top) * C + j] / T));
    const qs = q.reduce((a, b) => a + b, 0);
    let u = r.next() * qs;
    labels[i] = C - 1;
    for (let j = 0; j < C; j++) if ((u -= q[j]) < 0) { labels[i] = j; break; }
  }
  return { logits, routing, labels, B, K, C };
}

/** Expert k's logits as a dense B x C matrix. */
function slice(logits: Float32Array, B: number, K: number, C: number, k: number) {
  const out = new Float32Array(B * C);
  for (let i = 0; i < B; i++) out.set(logits.subarray((i * K + k) * C, (i * K + k + 1) * C), i * C);
  return matrix(out, B, C);
}

function top1(routing: Float32Array, B: number, K: number) {
  return Int32Array.from({ length: B }, (_, i) => {
    let t = 0;
    for (let k = 1; k < K; k++) if (routing[i * K + k] > routing[i * K + t]) t = k;
    return t;
  });
}

describe('fitExpertTemperatures', () => {
  for (const [B, K, C] of [[13, 1, 3], [1977, 3, 5], [500, 8, 2]] as const) {
    it(`dense ${B} x ${K} x ${C}: soft = each expert fitted with its routing weights, hard = on its top-1 rows`, () => {
      const d = moe(B + K, B, K, C);
      const t = audit.expertTensor(d.logits, B, K, C);
      // minRows: 0 so that every expert with rows is fitted (the minimum-size rule has its own test)
      const soft = calibrate.fitExpertTemperaturesSync(t, matrix(d.routing, B, K), d.labels, { minRows: 0 });
      const hard = calibrate.fitExpertTemperaturesSync(t, matrix(d.routing, B, K), d.labels, { mode: 'hard', minRows: 0 });
      expect(soft.temperatures.length).toBe(K);
      expect(soft.mode).toBe('soft');
      const top = top1(d.routing, B, K);
      for (let k = 0; k < K; k++) {
        const w = Float32Array.from({ length: B }, (_, i) => d.routing[i * K + k]);
        const ref = calibrate.fitTemperatureSync(slice(d.logits, B, K, C, k), d.labels, { weights: w, min: 0.1, max: 10 });
        expect(Math.abs(soft.temperatures[k] - ref.temperature) / ref.temperature).toBeLessThan(1e-8);
        expect(soft.experts[k].nllAfter).toBeCloseTo(ref.nllAfter, 10);
        expect(soft.experts[k].rows).toBe(B);
        const mine = Float32Array.from(top, (e) => (e === k ? 1 : 0));
        if (mine.some((v) => v > 0)) {
          const refHard = calibrate.fitTemperatureSync(slice(d.logits, B, K, C, k), d.labels, { weights: mine, min: 0.1, max: 10 });
          expect(Math.abs(hard.temperatures[k] - refHard.temperature) / refHard.temperature).toBeLessThan(1e-8);
          expect(hard.experts[k].rows).toBe(mine.filter((v) => v).length);
          expect(hard.experts[k].weight).toBe(hard.experts[k].rows);
        } else {
          expect(hard.temperatures[k]).toBe(1);
          expect(hard.experts[k].rows).toBe(0);
          expect(hard.experts[k].converged).toBe(false);
        }
      }
    });
  }

  it('recovers each expert\'s known temperature (hard assignment)', () => {
    const temps = [0.5, 1.5, 3];
    const d = moe(7, 30000, 3, 5, temps);
    const r = calibrate.fitExpertTemperaturesSync(audit.expertTensor(d.logits, d.B, 3, 5), matrix(d.routing, d.B, 3), d.labels, { mode: 'hard' });
    temps.forEach((T, k) => expect(Math.abs(r.temperatures[k] - T) / T).toBeLessThan(0.08));
    expect(r.experts.every((e) => e.converged && e.nllAfter <= e.nllBefore)).toBe(true);
  });

  it('clamps to [0.1, 10] by default', () => {
    // expert 0 always right (sharper is better), expert 1 always wrong (flatter is better)
    const B = 40, K = 2, C = 3;
    const logits = new Float32Array(B * K * C), routing = new Float32Array(B * K), labels = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      labels[i] = i % C;
      logits[(i * K) * C + labels[i]] = 3;
      logits[(i * K + 1) * C + ((labels[i] + 1) % C)] = 3;
      routing[i * K + (i % 2)] = 1;
    }
    const r = calibrate.fitExpertTemperaturesSync(audit.expertTensor(logits, B, K, C), matrix(routing, B, K), labels, { mode: 'hard' });
    expect(Array.from(r.temperatures)).toEqual([0.1, 10]);
    expect(r.experts.map((e) => e.atBound)).toEqual(['min', 'max']);
  });

  it('active-expert layout: a permuted listing of all experts gives the dense result; top-2 slots fit on their rows', () => {
    const B = 801, K = 4, C = 3;
    const d = moe(11, B, K, C);
    const r = rng(12);
    // permute each row's experts into slots
    const ids = new Int32Array(B * K), perm = new Float32Array(B * K * C), proute = new Float32Array(B * K);
    for (let i = 0; i < B; i++) {
      const order = [0, 1, 2, 3].sort(() => r.next() - 0.5);
      order.forEach((e, s) => {
        ids[i * K + s] = e;
        proute[i * K + s] = d.routing[i * K + e];
        perm.set(d.logits.subarray((i * K + e) * C, (i * K + e + 1) * C), (i * K + s) * C);
      });
    }
    for (const mode of ['soft', 'hard'] as const) {
      const dense = calibrate.fitExpertTemperaturesSync(audit.expertTensor(d.logits, B, K, C), matrix(d.routing, B, K), d.labels, { mode });
      const sparse = calibrate.fitExpertTemperaturesSync(audit.expertTensor(perm, B, K, C), matrix(proute, B, K), d.labels, { mode, experts: ids, numExperts: K });
      for (let k = 0; k < K; k++) expect(Math.abs(sparse.temperatures[k] - dense.temperatures[k]) / dense.temperatures[k]).toBeLessThan(1e-7);
    }
    // top-2 of 4: the renormalised weights of the two largest, their logits; expert e counts on the rows where it is active
    const top2 = new Int32Array(B * 2), w2 = new Float32Array(B * 2), l2 = new Float32Array(B * 2 * C);
    for (let i = 0; i < B; i++) {
      const order = [0, 1, 2, 3].sort((a, b) => d.routing[i * K + b] - d.routing[i * K + a] || a - b).slice(0, 2);
      const s = d.routing[i * K + order[0]] + d.routing[i * K + order[1]];
      order.forEach((e, slot) => {
        top2[i * 2 + slot] = e;
        w2[i * 2 + slot] = d.routing[i * K + e] / s;
        l2.set(d.logits.subarray((i * K + e) * C, (i * K + e + 1) * C), (i * 2 + slot) * C);
      });
    }
    const sp = calibrate.fitExpertTemperaturesSync(audit.expertTensor(l2, B, 2, C), matrix(w2, B, 2), d.labels, { experts: top2, numExperts: 6 });
    expect(sp.temperatures.length).toBe(6);
    expect(sp.experts[4].rows).toBe(0);
    expect(sp.temperatures[5]).toBe(1);
    for (let e = 0; e < K; e++) {
      const w = new Float32Array(B);
      for (let i = 0; i < B; i++) for (let s = 0; s < 2; s++) if (top2[i * 2 + s] === e) w[i] = w2[i * 2 + s];
      const ref = calibrate.fitTemperatureSync(slice(d.logits, B, K, C, e), d.labels, { weights: w, min: 0.1, max: 10 });
      expect(Math.abs(sp.temperatures[e] - ref.temperature) / ref.temperature).toBeLessThan(1e-7);
      expect(sp.experts[e].rows).toBe(w.filter((v) => v > 0).length);
    }
  });

  it('probabilities input and async equal their references', async () => {
    const d = moe(13, 600, 3, 4);
    const probs = new Float32Array(d.logits.length);
    for (let row = 0; row < 600 * 3; row++) {
      const z = d.logits.subarray(row * 4, row * 4 + 4);
      const m = Math.max(...z);
      const e = Array.from(z, (v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      e.forEach((v, j) => (probs[row * 4 + j] = v / s));
    }
    const a = calibrate.fitExpertTemperaturesSync(audit.expertTensor(d.logits, 600, 3, 4), matrix(d.routing, 600, 3), d.labels);
    const b = calibrate.fitExpertTemperaturesSync(audit.expertTensor(probs, 600, 3, 4), matrix(d.routing, 600, 3), d.labels, { input: 'probabilities' });
    for (let k = 0; k < 3; k++) expect(Math.abs(a.temperatures[k] - b.temperatures[k]) / a.temperatures[k]).toBeLessThan(1e-4);
    const c = await calibrate.fitExpertTemperatures(audit.expertTensor(d.logits, 600, 3, 4), matrix(d.routing, 600, 3), d.labels);
    expect(c).toEqual(a);
    // nested arrays work too
    const nested = Array.from({ length: 600 }, (_, i) => Array.from({ length: 3 }, (_, k) => Array.from(d.logits.subarray((i * 3 + k) * 4, (i * 3 + k + 1) * 4))));
    const routingRows = Array.from({ length: 600 }, (_, i) => Array.from(d.routing.subarray(i * 3, i * 3 + 3)));
    expect(calibrate.fitExpertTemperaturesSync(nested, routingRows, Array.from(d.labels)).temperatures).toEqual(a.temperatures);
  });

  it('bad input gives a named TypeError/RangeError', async () => {
    const d = moe(17, 4, 2, 3);
    const t = audit.expertTensor(d.logits, 4, 2, 3);
    const r = matrix(d.routing, 4, 2);
    function throwsWith(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp) {
      let err: unknown;
      try { fn(); } catch (e) { err = e; }
      expect(err, 'expected a throw').toBeInstanceOf(type);
      expect((err as Error).message).toMatch(message);
      expect((err as { code?: string }).code).toMatch(/^CALMOE_INVALID_ARG_/);
    }
    throwsWith(() => calibrate.fitExpertTemperaturesSync(d.logits as never, r, d.labels), TypeError, /^expertScores: expected/);
    throwsWith(() => audit.expertTensor(d.logits, 4, 2, 4), RangeError, /expertTensor: data has 24 elements but rows x experts x classes = 4 x 2 x 4 = 32/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, matrix(d.routing.subarray(0, 6), 3, 2), d.labels), RangeError, /routing: has 3 rows but the scores have 4/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, matrix(new Float32Array(12).fill(1 / 3), 4, 3), d.labels), RangeError, /routing: has 3 columns but the scores have 2 experts/);
    const badR = d.routing.slice();
    badR[2] = 0.9;
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, matrix(badR, 4, 2), d.labels), RangeError, /routing: row 1 sums to/);
    badR[2] = -0.1;
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, matrix(badR, 4, 2), d.labels), RangeError, /routing: row 1, column 0 = -0\.1 is not a weight/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, [0, 1, 2, 3]), RangeError, /labels\[3\] = 3 is outside \[0, 3\)/);
    const badL = d.logits.slice();
    badL[(2 * 2 + 1) * 3 + 1] = NaN;
    throwsWith(() => calibrate.fitExpertTemperaturesSync(audit.expertTensor(badL, 4, 2, 3), r, d.labels), RangeError, /expertScores\[:, 1, :\]: row 2, column 1 is not finite/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { mode: 'top1' as never }), RangeError, /mode: expected one of 'soft', 'hard'/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { experts: [[0, 1], [0, 1], [0, 1], [0, 9]], numExperts: 4 }), RangeError, /experts: contains expert 9 but numExperts is 4/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { experts: new Int32Array(7) }), RangeError, /experts: expected 8 ids/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { experts: [[0, 1], [0, 1], [0, 1], [0, -1]] }), RangeError, /experts\[3\]\[1\] = -1/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { numExperts: 3 }), RangeError, /numExperts: 3 differs from the 2 experts/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { min: 5, max: 2 }), RangeError, /min: 5 must be below max = 2/);
    throwsWith(() => calibrate.fitExpertTemperaturesSync(t, r, d.labels, { weights: [1] } as never), RangeError, /unknown option 'weights'/);
    await expect(calibrate.fitExpertTemperatures(t, r, [0, 1, 2, 5])).rejects.toBeInstanceOf(RangeError);
  });

  it('minimum size: experts below minRows (rows for hard, routing weight for soft) keep T = 1 and say so', () => {
    // 300 rows; expert 2 is the top-1 expert of exactly 5 of them, expert 3 of none
    const B = 300, K = 4, C = 3;
    const d = moe(41, B, K, C);
    const routing = new Float32Array(B * K);
    for (let i = 0; i < B; i++) {
      const top = i < 5 ? 2 : i % 2;
      for (let k = 0; k < K; k++) routing[i * K + k] = k === top ? 0.7 : k === 3 ? 0.01 : 0.145;
      const s = routing.subarray(i * K, i * K + K).reduce((a, b) => a + b, 0);
      for (let k = 0; k < K; k++) routing[i * K + k] /= s;
    }
    const t = audit.expertTensor(d.logits, B, K, C);
    const hard = calibrate.fitExpertTemperaturesSync(t, matrix(routing, B, K), d.labels, { mode: 'hard' });
    expect(hard.minRows).toBe(20);
    expect(hard.experts[2]).toMatchObject({ rows: 5, weight: 5, temperature: 1, skipped: 'too-few-rows', converged: false });
    expect(hard.experts[2].nllBefore).toBeCloseTo(refTemperatureNll(slice(d.logits, B, K, C, 2).data, B, C, d.labels, 1, Float32Array.from({ length: B }, (_, i) => (i < 5 ? 1 : 0))), 10);
    expect(hard.experts[3]).toMatchObject({ rows: 0, temperature: 1, skipped: 'no-rows' });
    expect(hard.experts[0].skipped).toBe(null);
    expect(hard.experts[0].temperature).not.toBe(1);
    // with the rule off, the 5-row expert is fitted
    const all = calibrate.fitExpertTemperaturesSync(t, matrix(routing, B, K), d.labels, { mode: 'hard', minRows: 0 });
    expect(all.experts[2].skipped).toBe(null);
    expect(all.experts[2].temperature).not.toBe(1);
    expect(all.temperatures[0]).toBe(hard.temperatures[0]);
    // soft: expert 3's routing weight sums to about 300 x 0.0099 = 3 < 20 though it has 300 rows
    const soft = calibrate.fitExpertTemperaturesSync(t, matrix(routing, B, K), d.labels);
    expect(soft.experts[3].rows).toBe(B);
    expect(soft.experts[3].weight).toBeLessThan(20);
    expect(soft.experts[3]).toMatchObject({ temperature: 1, skipped: 'too-few-rows' });
    expect(soft.experts[2].skipped).toBe(null);  // weight ~ 300 x 0.15 > 20
    throwsRange(() => calibrate.fitExpertTemperaturesSync(t, matrix(routing, B, K), d.labels, { minRows: -1 }), /minRows/);
  });

  it('fits on logits: the temperature is the brute-force grid minimiser, even for over-confident experts', () => {
    // experts 0 and 1 over-confident (logits x 12 and x 30: their probabilities underflow float32),
    // expert 2 under-confident (x 0.2)
    const B = 600, K = 3, C = 4;
    const d = moe(43, B, K, C);
    const scale = [12, 30, 0.2];
    const z = Float32Array.from(d.logits, (v, idx) => v * scale[Math.floor(idx / C) % K]);
    const fit = calibrate.fitExpertTemperaturesSync(audit.expertTensor(z, B, K, C), matrix(d.routing, B, K), d.labels, { mode: 'hard', min: 0.01, max: 1000 });
    const top = top1(d.routing, B, K);
    for (let k = 0; k < K; k++) {
      const w = Float32Array.from(top, (e) => (e === k ? 1 : 0));
      const zk = slice(z, B, K, C, k).data;
      const grid = refGridTemperature(zk, B, C, d.labels, 0.01, 1000, 4001, w);
      const T = fit.temperatures[k];
      expect(Math.abs(Math.log(T / grid.T))).toBeLessThanOrEqual(grid.step);
      expect(refTemperatureNll(zk, B, C, d.labels, T, w)).toBeLessThanOrEqual(grid.nll + 1e-12);
      expect(fit.experts[k].nllAfter).toBeCloseTo(refTemperatureNll(zk, B, C, d.labels, T, w), 9);
    }
    expect(fit.temperatures[1]).toBeGreaterThan(5);
    expect(fit.temperatures[2]).toBeLessThan(0.5);
  });
});

function throwsRange(fn: () => unknown, re: RegExp) {
  expect(fn).toThrow(RangeError);
  expect(fn).toThrow(re);
}
