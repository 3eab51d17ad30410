import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { audit, matrix, metrics } from '../src/index.js';
import { refTopLabel, rng } from './reference.js';

// ---- generated MoE outputs and a naive float64 reference ------------------------------------

function softmax(v: number[]): number[] {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Dense (ids undefined) or active-expert (ids B x K in [0, E)) outputs; mixture = sum_k r_k p_k. */
function outputs(seed: number, B: number, K: number, C: number, E = 0) {
  const r = rng(seed);
  const routing = new Float32Array(B * K), P = new Float32Array(B * K * C), p = new Float32Array(B * C), labels = new Int32Array(B);
  const ids = E ? new Int32Array(B * K) : undefined;
  for (let i = 0; i < B; i++) {
    softmax(Array.from({ length: K }, () => 1.5 * r.normal())).forEach((v, k) => (routing[i * K + k] = v));
    if (ids) {
      const pool = Array.from({ length: E }, (_, e) => e);
      for (let k = 0; k < K; k++) ids[i * K + k] = pool.splice(r.int(pool.length), 1)[0];
    }
    for (let k = 0; k < K; k++) softmax(Array.from({ length: C }, () => 2 * r.normal())).forEach((v, j) => (P[(i * K + k) * C + j] = v));
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += routing[i * K + k] * P[(i * K + k) * C + j];
      p[i * C + j] = s;
    }
    labels[i] = r.int(C);
  }
  return {
    B, K, C, E: E || K, ids,
    o: { routing: matrix(routing, B, K), expertProbs: audit.expertTensor(P, B, K, C), mixture: matrix(p, B, C), labels, ...(ids ? { experts: ids, numExperts: E } : {}) },
  };
}

type Out = ReturnType<typeof outputs>;

function refRows(d: Out) {
  const { B, K, C } = d;
  const r = d.o.routing.data, P = d.o.expertProbs.data, p = d.o.mixture.data, y = d.o.labels;
  const id = (i: number, k: number) => (d.ids ? d.ids[i * K + k] : k);
  const nll = (v: number) => -Math.log(Math.max(v, 1e-12));
  const rows = [];
  for (let i = 0; i < B; i++) {
    let top = 0;
    for (let k = 1; k < K; k++) if (r[i * K + k] > r[i * K + top] || (r[i * K + k] === r[i * K + top] && id(i, k) < id(i, top))) top = k;
    let H = 0, dis = 0, best = Infinity;
    for (let k = 0; k < K; k++) {
      const rk = r[i * K + k];
      if (rk > 0) H -= rk * Math.log(rk);
      let sq = 0;
      for (let j = 0; j < C; j++) sq += (P[(i * K + k) * C + j] - p[i * C + j]) ** 2;
      dis += rk * sq;
      if (rk > 0) best = Math.min(best, nll(P[(i * K + k) * C + y[i]]));
    }
    const loss = nll(p[i * C + y[i]]);
    rows.push({ top1: id(i, top), topSlot: top, maxWeight: r[i * K + top], entropy: H, dis, loss, regret: Math.max(0, loss - best) });
  }
  return rows;
}

const close = (got: number, want: number, atol: number, rtol: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(atol + rtol * Math.abs(want));

describe('rowAudit: parity with a float64 reference', () => {
  for (const [B, K, C, E] of [[1, 1, 2, 0], [13, 3, 5, 0], [1977, 8, 10, 0], [13, 2, 4, 5], [1977, 3, 7, 9]] as const) {
    it(`B=${B} K=${K} C=${C}${E ? ` active experts of ${E}` : ' dense'}`, async () => {
      const d = outputs(B * 7 + K + E, B, K, C, E);
      const got = audit.rowAuditSync(d.o);
      const ref = refRows(d);
      expect(got.rows).toBe(B);
      expect(got.experts).toBe(E || K);
      for (let i = 0; i < B; i++) {
        expect(got.top1[i]).toBe(ref[i].top1);
        expect(got.maxWeight[i]).toBe(Math.fround(ref[i].maxWeight));
        close(got.entropy[i], ref[i].entropy, 1e-6, 1e-5);
        close(got.disagreement![i], ref[i].dis, 1e-7, 1e-5);
        close(got.loss![i], ref[i].loss, 1e-6, 1e-6);
        close(got.regret![i], ref[i].regret, 1e-5, 1e-5);
        for (let j = 0; j < C; j++) expect(got.top1Probs![i * C + j]).toBe(d.o.expertProbs.data[(i * K + ref[i].topSlot) * C + j]);
      }
      expect(await audit.rowAudit(d.o)).toEqual(got);
    });
  }

  it('outputs that lack their inputs are null; routing alone gives top-1, weight and entropy', () => {
    const d = outputs(3, 50, 3, 4);
    const r = audit.rowAuditSync({ routing: d.o.routing });
    expect(r.disagreement).toBeNull();
    expect(r.regret).toBeNull();
    expect(r.loss).toBeNull();
    expect(r.top1Probs).toBeNull();
    expect(Array.from(r.top1)).toEqual(refRows(d).map((x) => x.top1));
    const m = audit.rowAuditSync({ routing: d.o.routing, mixture: d.o.mixture, labels: d.o.labels });
    expect(m.loss).not.toBeNull();
    expect(m.regret).toBeNull();
  });

  it('hard routing: no disagreement, no regret, zero entropy', () => {
    const d = outputs(4, 300, 4, 3);
    const r = d.o.routing.data, P = d.o.expertProbs.data, p = d.o.mixture.data;
    for (let i = 0; i < 300; i++) {
      const k = i % 4;
      for (let s = 0; s < 4; s++) r[i * 4 + s] = s === k ? 1 : 0;
      p.set(P.subarray((i * 4 + k) * 3, (i * 4 + k + 1) * 3), i * 3);
    }
    const a = audit.rowAuditSync(d.o);
    expect(a.disagreement!.every((v) => v === 0)).toBe(true);
    expect(a.regret!.every((v) => v === 0)).toBe(true);
    expect(a.entropy.every((v) => v === 0)).toBe(true);
    const h = audit.hardSubsetsSync(d.o);
    expect(h.disagreement.inside.rows).toBe(0);
    expect(h.regret.inside.rows).toBe(0);
  });

  it('regret is never negative and disagreement never negative (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 6 }), fc.integer(), (B, K, C, seed) => {
      const d = outputs(seed, B, K, C);
      const a = audit.rowAuditSync(d.o);
      expect(a.regret!.every((v) => v >= 0)).toBe(true);
      expect(a.disagreement!.every((v) => v >= 0)).toBe(true);
      expect(a.entropy.every((v) => v >= 0 && v <= Math.log(K) + 1e-6)).toBe(true);
    }), { numRuns: 100 });
  });
});

describe('routingStats', () => {
  it('matches a reference: entropy distribution, usage, no-dominant share', async () => {
    for (const [B, K, E] of [[1977, 4, 0], [501, 2, 6]] as const) {
      const d = outputs(B + K, B, K, 3, E);
      const ref = refRows(d);
      const s = audit.routingStatsSync(d.o.routing, { ...(d.ids ? { experts: d.ids, numExperts: E } : {}), dominance: 0.6, entropyBins: 7 });
      expect(s.experts).toBe(E || K);
      expect(s.maxEntropy).toBe(Math.log(K));
      const H = ref.map((x) => Math.fround(x.entropy));
      close(s.entropy.mean, H.reduce((a, b) => a + b, 0) / B, 1e-6, 1e-5);
      const sorted = [...H].sort((a, b) => a - b);
      const q = (t: number) => { const h = (B - 1) * t, lo = Math.floor(h); return sorted[lo] + (h - lo) * (sorted[Math.min(B - 1, lo + 1)] - sorted[lo]); };
      close(s.entropy.quantiles.p50, q(0.5), 1e-5, 1e-5);
      close(s.entropy.quantiles.p90, q(0.9), 1e-5, 1e-5);
      expect(s.entropy.histogram.counts.length).toBe(7);
      expect(s.entropy.histogram.counts.reduce((a, b) => a + b, 0)).toBe(B);
      expect(s.noDominantShare).toBe(ref.filter((x) => x.maxWeight < 0.6).length / B);
      const count = new Float64Array(E || K), mass = new Float64Array(E || K);
      for (let i = 0; i < B; i++) {
        count[ref[i].top1]++;
        for (let k = 0; k < K; k++) mass[d.ids ? d.ids[i * K + k] : k] += d.o.routing.data[i * K + k];
      }
      expect(Array.from(s.usage.top1Count)).toEqual(Array.from(count));
      for (let e = 0; e < (E || K); e++) close(s.usage.mass[e], mass[e], 1e-9, 1e-9);
      close(s.usage.massShare.reduce((a, b) => a + b, 0), 1, 1e-5, 0);
      expect(await audit.routingStats(d.o.routing, d.ids ? { experts: d.ids, numExperts: E, dominance: 0.6, entropyBins: 7 } : { dominance: 0.6, entropyBins: 7 })).toEqual(s);
    }
  });

  it('one expert: entropy 0, normalised entropy NaN, always dominant', () => {
    const s = audit.routingStatsSync([[1], [1], [1]]);
    expect(s.entropy.mean).toBe(0);
    expect(s.normalizedEntropy).toBeNaN();
    expect(s.noDominantShare).toBe(0);
    expect(Array.from(s.usage.top1Share)).toEqual([1]);
  });
});

describe('expertAudit', () => {
  it('load and per-expert accuracy / ECE / confidence match a reference on each expert\'s top-1 rows', async () => {
    for (const [B, K, C, E] of [[1977, 3, 4, 0], [1001, 2, 5, 4]] as const) {
      const d = outputs(B + C, B, K, C, E);
      const ref = refRows(d);
      const temps = Array.from({ length: E || K }, (_, e) => 1 + e / 10);
      const a = audit.expertAuditSync(d.o, { bins: 10, temperatures: temps });
      expect(a.experts.length).toBe(E || K);
      for (let e = 0; e < (E || K); e++) {
        const rows = ref.map((x, i) => (x.top1 === e ? i : -1)).filter((i) => i >= 0);
        const row = a.experts[e];
        expect(row.top1Rows).toBe(rows.length);
        expect(row.top1Share).toBe(rows.length / B);
        expect(row.temperature).toBe(temps[e]);
        if (rows.length === 0) {
          expect(row.own.ece).toBeNaN();
          continue;
        }
        const own = new Float32Array(rows.length * C), mix = new Float32Array(rows.length * C);
        rows.forEach((i, r) => {
          own.set(d.o.expertProbs.data.subarray((i * K + ref[i].topSlot) * C, (i * K + ref[i].topSlot + 1) * C), r * C);
          mix.set(d.o.mixture.data.subarray(i * C, (i + 1) * C), r * C);
        });
        const y = rows.map((i) => d.o.labels[i]);
        const ro = refTopLabel(own, rows.length, C, y, 10, 'right-closed');
        const rm = refTopLabel(mix, rows.length, C, y, 10, 'right-closed');
        close(row.own.accuracy, ro.accuracy, 1e-12, 0);
        close(row.own.ece, ro.ece, 1e-9, 0);
        close(row.own.meanConfidence, ro.confSum.reduce((s, v) => s + v, 0) / rows.length, 1e-9, 0);
        close(row.mixture.accuracy, rm.accuracy, 1e-12, 0);
        close(row.mixture.ece, rm.ece, 1e-9, 0);
      }
      const nonEmpty = a.experts.filter((x) => x.top1Rows > 0);
      expect(a.worst.ece).toBe(nonEmpty.reduce((w, x) => (x.own.ece > w.own.ece ? x : w)).expert);
      expect(await audit.expertAudit(d.o, { bins: 10, temperatures: temps })).toEqual(a);
    }
  });
});

describe('hardSubsets', () => {
  it('disagreement, regret, mask and group splits match a reference', async () => {
    const B = 1977, K = 3, C = 4;
    const d = outputs(21, B, K, C);
    const ref = refRows(d);
    const r = rng(22);
    const mask = Array.from({ length: B }, () => r.next() < 0.3);
    const groups = Int32Array.from({ length: B }, () => r.int(5));
    const h = audit.hardSubsetsSync(d.o, { mask, groups, groupNames: ['a', 'b', 'c', 'd', 'e'], bins: 10, regretThreshold: 0.05, disagreementShare: 0.25 });
    const dis = Array.from(audit.rowAuditSync(d.o).disagreement!);
    const sorted = [...dis].sort((a, b) => a - b);
    const hq = (B - 1) * 0.75, lo = Math.floor(hq);
    const threshold = sorted[lo] + (hq - lo) * (sorted[lo + 1] - sorted[lo]);
    expect(h.disagreement.threshold).toBe(threshold);
    const stats = (sel: (i: number) => boolean) => {
      const rows = Array.from({ length: B }, (_, i) => i).filter(sel);
      const data = new Float32Array(rows.length * C);
      rows.forEach((i, k) => data.set(d.o.mixture.data.subarray(i * C, (i + 1) * C), k * C));
      const rt = refTopLabel(data, rows.length, C, rows.map((i) => d.o.labels[i]), 10, 'right-closed');
      return { rows: rows.length, accuracy: rt.accuracy, ece: rt.ece, nll: rows.reduce((s, i) => s + ref[i].loss, 0) / rows.length };
    };
    const check = (got: audit.SubsetStats, want: ReturnType<typeof stats>) => {
      expect(got.rows).toBe(want.rows);
      expect(got.share).toBe(want.rows / B);
      close(got.accuracy, want.accuracy, 1e-12, 0);
      close(got.ece, want.ece, 1e-9, 0);
      close(got.nll, want.nll, 1e-5, 1e-6);
    };
    check(h.disagreement.inside, stats((i) => dis[i] >= threshold && dis[i] > 0));
    check(h.disagreement.outside, stats((i) => !(dis[i] >= threshold && dis[i] > 0)));
    expect(h.disagreement.inside.rows).toBe(Math.ceil(B * 0.25));
    const regret = Array.from(audit.rowAuditSync(d.o).regret!);
    check(h.regret.inside, stats((i) => regret[i] > 0.05));
    check(h.mask!.inside, stats((i) => mask[i]));
    check(h.mask!.outside, stats((i) => !mask[i]));
    check(h.overall, stats(() => true));
    for (let g = 0; g < 5; g++) {
      check(h.groups!.groups[g], stats((i) => groups[i] === g));
      expect(h.groups!.groups[g].name).toBe('abcde'[g]);
    }
    const worst = h.groups!.groups.reduce((w, g) => (g.ece > w.ece ? g : w));
    expect(h.groups!.worst.ece).toBe(worst.group);
    expect(await audit.hardSubsets(d.o, { mask, groups, groupNames: ['a', 'b', 'c', 'd', 'e'], bins: 10, regretThreshold: 0.05, disagreementShare: 0.25 })).toEqual(h);
  });
});

describe('moeAudit', () => {
  it('equals its parts, sync and async', async () => {
    const d = outputs(31, 777, 4, 3);
    const groups = Int32Array.from({ length: 777 }, (_, i) => i % 3);
    const a = audit.moeAuditSync(d.o, { groups, temperatures: [1, 2, 3, 4], bins: 12, dominance: 0.4 });
    expect(a.experts).toEqual(audit.expertAuditSync(d.o, { temperatures: [1, 2, 3, 4], bins: 12 }));
    expect(a.subsets).toEqual(audit.hardSubsetsSync(d.o, { groups, bins: 12 }));
    expect(a.routing).toEqual(audit.routingStatsSync(d.o.routing, { dominance: 0.4 }));
    expect(await audit.moeAudit(d.o, { groups, temperatures: [1, 2, 3, 4], bins: 12, dominance: 0.4 })).toEqual(a);
    // the audit's overall numbers are the metrics'
    const m = metrics.calibrationSync(d.o.mixture, d.o.labels, { bins: 12 });
    expect(a.subsets.overall.ece).toBe(m.ece);
    expect(a.subsets.overall.accuracy).toBe(m.accuracy);
  });
});

describe('audit: bad input gives a named TypeError/RangeError', () => {
  const d = outputs(41, 6, 2, 3);
  function throwsWith(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: RegExp) {
    let err: unknown;
    try { fn(); } catch (e) { err = e; }
    expect(err, 'expected a throw').toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    expect((err as { code?: string }).code).toMatch(/^CALMOE_INVALID_ARG_/);
  }
  const withP = (p: Float32Array) => ({ ...d.o, expertProbs: audit.expertTensor(p, 6, 2, 3) });

  it('shapes and fields', () => {
    throwsWith(() => audit.moeAuditSync(null as never), TypeError, /outputs: expected an object/);
    throwsWith(() => audit.moeAuditSync({ ...d.o, extra: 1 } as never), RangeError, /outputs: unknown field 'extra'/);
    throwsWith(() => audit.moeAuditSync({ routing: d.o.routing } as never), TypeError, /expertProbs: missing/);
    throwsWith(() => audit.expertAuditSync({ ...d.o, labels: undefined }), TypeError, /labels: missing/);
    throwsWith(() => audit.rowAuditSync({} as never), TypeError, /routing: missing/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, mixture: matrix(new Float32Array(15), 5, 3) }), RangeError, /mixture: has 5 rows but routing has 6/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, mixture: matrix(new Float32Array(24), 6, 4) }), RangeError, /mixture: has 4 classes but expertProbs has 3/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, expertProbs: audit.expertTensor(new Float32Array(54), 6, 3, 3) }), RangeError, /expertProbs: has 3 experts per row but routing has 2 columns/);
    throwsWith(() => audit.rowAuditSync({ routing: d.o.routing, labels: d.o.labels }), TypeError, /labels: given without probabilities/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, labels: [0, 1] }), RangeError, /labels: expected 6 labels/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, numExperts: 5 }), RangeError, /numExperts: 5 differs from the 2 routing columns/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, experts: [[0, 1]] }), RangeError, /experts: expected 6 rows of ids/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, expertProbs: 'x' as never }), TypeError, /expertProbs: expected/);
  });

  it('values (checked natively, named by row and column)', async () => {
    const r = d.o.routing.data.slice();
    r[3] = 2;
    throwsWith(() => audit.rowAuditSync({ ...d.o, routing: matrix(r, 6, 2) }), RangeError, /routing: row 1, column 1 = 2 is not a weight in \[0, 1\]/);
    r[3] = 0.9;
    r[2] = 0.9;
    throwsWith(() => audit.rowAuditSync({ ...d.o, routing: matrix(r, 6, 2) }), RangeError, /routing: row 1 sums to 1\.8/);
    const P = d.o.expertProbs.data.slice();
    P[(4 * 2 + 1) * 3 + 2] = NaN;
    throwsWith(() => audit.rowAuditSync(withP(P)), RangeError, /expertProbs: row 4, expert slot 1, column 2 = nan is not a probability/);
    P[(4 * 2 + 1) * 3 + 2] = 0.9;
    P[(4 * 2 + 1) * 3 + 1] = 0.9;
    throwsWith(() => audit.rowAuditSync(withP(P)), RangeError, /expertProbs: row 4, expert slot 1 sums to/);
    const p = d.o.mixture.data.slice();
    p[5 * 3] = -1;
    throwsWith(() => audit.rowAuditSync({ ...d.o, mixture: matrix(p, 6, 3) }), RangeError, /mixture: row 5, column 0 = -1/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, labels: [0, 0, 0, 0, 0, 3] }), RangeError, /labels\[5\] = 3 is outside \[0, 3\)/);
    throwsWith(() => audit.rowAuditSync({ ...d.o, experts: [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [1, 7]], numExperts: 4 }), RangeError, /experts: contains expert 7 but numExperts is 4/);
    throwsWith(() => audit.rowAuditSync(d.o, { sumTolerance: 2 }), RangeError, /sumTolerance: expected a number in \[0, 1\]/);
    await expect(audit.moeAudit({ ...d.o, labels: [0, 0, 0, 0, 0, 3] })).rejects.toBeInstanceOf(RangeError);
    await expect(audit.rowAudit({ ...d.o, routing: matrix(r, 6, 2) })).rejects.toThrow(/routing: row 1 sums to/);
  });

  it('options', () => {
    throwsWith(() => audit.moeAuditSync(d.o, { bins: 0 }), RangeError, /bins/);
    throwsWith(() => audit.moeAuditSync(d.o, { temperatures: [1] }), RangeError, /temperatures: expected 2 temperatures/);
    throwsWith(() => audit.moeAuditSync(d.o, { temperatures: [1, -1] }), RangeError, /temperatures\[1\] = -1/);
    throwsWith(() => audit.moeAuditSync(d.o, { temperatures: 3 as never }), TypeError, /temperatures: expected an array/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { disagreementShare: 1.5 }), RangeError, /disagreementShare: expected a number in \[0, 1\]/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { regretThreshold: -1 }), RangeError, /regretThreshold/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { mask: [true] }), RangeError, /mask: expected 6 flags/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { groups: [0, 0, 0, 0, 0, -2] }), RangeError, /groups\[5\] = -2/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { groups: [0, 0, 0, 0, 0, 4], numGroups: 3 }), RangeError, /groups: contains id 4 but numGroups is 3/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { groups: [0, 0, 0, 0, 0, 1], groupNames: ['a'] }), RangeError, /groupNames: expected 2 names/);
    throwsWith(() => audit.hardSubsetsSync(d.o, { groupNames: ['a'] }), RangeError, /groupNames: given without groups/);
    throwsWith(() => audit.routingStatsSync(d.o.routing, { dominance: 2 }), RangeError, /dominance: expected a number in \[0, 1\]/);
    throwsWith(() => audit.routingStatsSync(d.o.routing, { entropyBins: 0 }), RangeError, /entropyBins/);
    throwsWith(() => audit.routingStatsSync(d.o.routing, { labels: [] } as never), RangeError, /unknown option 'labels'/);
    throwsWith(() => audit.moeAuditSync(d.o, { device: 'tpu' as never }), RangeError, /device/);
  });
});
