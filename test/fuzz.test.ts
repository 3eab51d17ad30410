/**
 * Fuzz of the public API: random shapes, values (valid and not) and options, sync and async, with
 * inputs detached, shrunk or overwritten right after async calls start and the thread count
 * changed between and during calls. Every valid call is checked against the naive references
 * (test/reference.ts, test/drift-reference.ts); every invalid one must throw a TypeError or
 * RangeError with a CALMOE_ code, nothing else. CALMOE_FUZZ_CALLS sets the number of calls
 * (default 3,000, a few seconds; the full run is CALMOE_FUZZ_CALLS=100000) and
 * CALMOE_FUZZ_SEED the seed. A crash ends the process: the sanitizer stage runs this file too.
 */
import { describe, expect, it } from 'vitest';
import { MoEClassifier, drift, getThreads, losses, metrics, setThreads } from '../src/index.js';
import { refKs } from './drift-reference.js';
import { refConfidence, refTilted, refTopLabel, rng } from './reference.js';

const CALLS = Number(process.env.CALMOE_FUZZ_CALLS ?? 3000);
const SEED = Number(process.env.CALMOE_FUZZ_SEED ?? 18);
const close = (a: number, b: number, tol = 1e-6) => Math.abs(a - b) <= tol * (1 + Math.abs(b));

type R = ReturnType<typeof rng>;

// What the caller does to an async call's inputs right after it starts.
function disturb(r: R, arrays: Array<Float32Array | Int32Array | Uint8Array>): void {
  const what = r.int(4);
  for (const a of arrays) {
    if (what === 1) structuredClone(a.buffer, { transfer: [a.buffer] });
    else if (what === 2 && (a.buffer as ArrayBuffer).resizable) (a.buffer as ArrayBuffer).resize(0);
    else if (what === 3) a.fill(r.next() < 0.5 ? Number.NaN : 1e9);
  }
}

// A typed array, sometimes in a resizable buffer (so that shrinking it is possible).
function typed<T extends Float32Array | Int32Array | Uint8Array>(r: R, a: T): T {
  if (r.next() < 0.7) return a;
  const Ctor = a.constructor as new (b: ArrayBuffer) => T;
  const out = new Ctor(new ArrayBuffer(a.byteLength, { maxByteLength: a.byteLength + 64 }));
  out.set(a as never);
  return out;
}

function probsCase(r: R) {
  const rows = r.int(5) === 0 ? 0 : 1 + r.int(60), cols = 1 + r.int(8);
  const data = new Float32Array(rows * cols), labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += data[i * cols + j] = Math.exp(2 * r.normal());
    for (let j = 0; j < cols; j++) data[i * cols + j] /= s;
    labels[i] = r.int(cols);
  }
  let valid = rows > 0;
  const corrupt = r.int(6);
  if (corrupt === 0 && rows > 0) { data[r.int(data.length)] = [Number.NaN, -0.5, 2, Infinity][r.int(4)]; valid = false; }
  if (corrupt === 1 && rows > 0) { labels[r.int(rows)] = [cols, -1, 1e9][r.int(3)]; valid = false; }
  return { rows, cols, data, labels, valid };
}

function expectNamedError(e: unknown): void {
  expect(e instanceof TypeError || e instanceof RangeError, String(e)).toBe(true);
  expect((e as { code?: string }).code ?? '').toMatch(/^CALMOE_/);
}

async function checked(valid: boolean, call: () => unknown, check: (v: never) => void): Promise<void> {
  let out: unknown;
  try {
    out = await call();
  } catch (e) {
    if (valid) throw e;
    expectNamedError(e);
    return;
  }
  expect(valid, 'an invalid input was accepted').toBe(true);
  check(out as never);
}

const ops: Record<string, (r: R) => Promise<void>> = {
  async calibration(r) {
    const c = probsCase(r);
    const bins = 1 + r.int(20), edges = r.next() < 0.5 ? 'right-closed' as const : 'left-closed' as const;
    const ref = c.valid ? refTopLabel(c.data, c.rows, c.cols, c.labels, bins, edges) : undefined;
    const data = typed(r, c.data), labels = typed(r, c.labels);
    const async = r.next() < 0.5;
    await checked(c.valid, () => {
      if (!async) return metrics.calibrationSync({ data, rows: c.rows, cols: c.cols }, labels, { bins, edges });
      const p = metrics.calibration({ data, rows: c.rows, cols: c.cols }, labels, { bins, edges });
      disturb(r, [data, labels]);
      return p;
    }, (s: { ece: number; accuracy: number; mce: number; nll: number }) => {
      expect(close(s.ece, ref!.ece), `ece ${s.ece} vs ${ref!.ece}`).toBe(true);
      expect(s.accuracy).toBe(ref!.accuracy);
      expect(close(s.mce, ref!.mce)).toBe(true);
      expect(close(s.nll, ref!.nll, 1e-5)).toBe(true);
    });
  },
  async confidence(r) {
    const n = r.int(50);
    const conf = new Float32Array(n).map(() => r.next()), ok = new Uint8Array(n).map(() => r.int(2));
    let valid = n > 0;
    if (n > 0 && r.int(5) === 0) { conf[r.int(n)] = [Number.NaN, 1.5, -1][r.int(3)]; valid = false; }
    const bins = 1 + r.int(30);
    const ref = valid ? refConfidence(conf, ok, bins, 'right-closed') : undefined;
    const async = r.next() < 0.5;
    await checked(valid, () => {
      if (!async) return metrics.confidenceCalibrationSync(conf, ok, { bins });
      const p = metrics.confidenceCalibration(conf, ok, { bins });
      disturb(r, [conf, ok]);
      return p;
    }, (s: { ece: number }) => expect(close(s.ece, ref!.ece)).toBe(true));
  },
  async accumulator(r) {
    const bins = 1 + r.int(20);
    const acc = new metrics.CalibrationAccumulator({ bins });
    const parts = 1 + r.int(3);
    const all: Array<ReturnType<typeof probsCase>> = [];
    for (let k = 0; k < parts; k++) {
      const c = probsCase(r);
      const data = c.data.slice(), labels = c.labels.slice();
      await checked(c.valid, async () => {
        const p = acc.update({ data, rows: c.rows, cols: c.cols }, labels);
        disturb(r, [data, labels]);
        return p;
      }, () => all.push(c));
    }
    // a round trip through JSON, sometimes tampered with: a valid state or a RangeError
    const j = acc.toJSON();
    if (r.next() < 0.3) j.state[4 + r.int(j.state.length - 4)] = String(BigInt(r.int(1000)) + (r.next() < 0.5 ? 0n : 2n ** 63n));
    let back: InstanceType<typeof metrics.CalibrationAccumulator>;
    try {
      back = metrics.CalibrationAccumulator.fromJSON(j);
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
      return;
    }
    if (back.rows === 0 || all.length !== parts) return;
    // the same rows in one call (cols may differ between parts: compare each part's own report)
    const total = all.reduce((a, c) => a + c.rows, 0);
    if (all.every((c) => c.cols === all[0].cols) && total > 0 && back.toJSON().state.join() === acc.toJSON().state.join()) {
      const cols = all[0].cols;
      const data = new Float32Array(total * cols), labels = new Int32Array(total);
      let o = 0;
      for (const c of all) { data.set(c.data, o * cols); labels.set(c.labels, o); o += c.rows; }
      const ref = refTopLabel(data, total, cols, labels, bins, 'right-closed');
      expect(close(back.result().ece, ref.ece)).toBe(true);
    }
  },
  async tilted(r) {
    const n = r.int(40);
    const l = new Float32Array(n).map(() => Math.abs(3 * r.normal()));
    const eta = [0, 0.5, 2, -1, 50, 1e4][r.int(6)];
    let valid = n > 0;
    if (n > 0 && r.int(6) === 0) { l[r.int(n)] = Number.NaN; valid = false; }
    const ref = valid ? refTilted(l, eta) : undefined;
    const async = r.next() < 0.5;
    await checked(valid, () => {
      if (!async) return losses.tiltedWeightsSync(l, eta);
      const p = losses.tiltedWeights(l, eta);
      disturb(r, [l]);
      return p;
    }, (s: { robustLoss: number; weights: Float32Array }) => {
      expect(close(s.robustLoss, ref!.robust, 1e-4)).toBe(true);
      for (const w of s.weights) expect(Number.isFinite(w)).toBe(true);
    });
  },
  async ks(r) {
    const n1 = 1 + r.int(40), n2 = 1 + r.int(40);
    const a = new Float32Array(n1).map(() => Math.round(4 * r.normal()) / 2), b = new Float32Array(n2).map(() => Math.round(4 * r.normal() + 1) / 2);
    let valid = true;
    if (r.int(6) === 0) { a[r.int(n1)] = Number.NaN; valid = false; }
    const ref = valid ? refKs(Array.from(a), Array.from(b)) : undefined;
    const async = r.next() < 0.5;
    await checked(valid, () => {
      if (!async) return drift.ksTestSync({ data: a, rows: n1, cols: 1 }, { data: b, rows: n2, cols: 1 });
      const p = drift.ksTest({ data: a, rows: n1, cols: 1 }, { data: b, rows: n2, cols: 1 });
      disturb(r, [a, b]);
      return p;
    }, (s: { statistic: Float64Array; pValue: Float64Array }) => {
      expect(close(s.statistic[0], ref!.statistic, 1e-12)).toBe(true);
      expect(s.pValue[0] >= 0 && s.pValue[0] <= 1).toBe(true);
    });
  },
  async predict(r) {
    const d = 1 + r.int(6), K = 1 + r.int(4), C = 1 + r.int(4);
    const routing = (['soft', 'topk', 'hard'] as const)[r.int(3)];
    const m = new MoEClassifier({ inputDim: d, classes: C, experts: K, expertHidden: r.next() < 0.5 ? [] : [1 + r.int(8)], routing, seed: r.int(1000) });
    const rows = 1 + r.int(30);
    const x = new Float32Array(rows * d).map(() => r.normal() * [1, 10, 1e3][r.int(3)]);
    let valid = true;
    if (r.int(8) === 0) { x[r.int(x.length)] = [Number.NaN, Infinity][r.int(2)]; valid = false; }
    const want = valid ? m.predictSync({ data: x, rows, cols: d }).probs.data : undefined;
    await checked(valid, () => {
      const xs = x.slice();
      const p = m.predict({ data: xs, rows, cols: d });
      disturb(r, [xs]);
      return p;
    }, (p: { probs: { data: Float32Array } }) => {
      expect(p.probs.data).toEqual(want);
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let j = 0; j < C; j++) s += p.probs.data[i * C + j];
        expect(close(s, 1, 1e-5)).toBe(true);
      }
    });
  },
  async garbage(r) {
    // wrong types and shapes in every position: a named TypeError/RangeError, nothing else
    const junk = [undefined, null, 3, 'x', {}, [], [[1, 2], [3]], new Float64Array(4), new Int32Array(3), { data: new Float32Array(3), rows: 2, cols: 2 },
      new Float32Array(new SharedArrayBuffer(16)), { data: new Float32Array(4), rows: -1, cols: 4 }];
    const pick = () => junk[r.int(junk.length)];
    const calls: Array<() => unknown> = [
      () => metrics.eceSync(pick() as never, pick() as never, pick() as never),
      () => metrics.calibration(pick() as never, pick() as never),
      () => losses.tiltedWeightsSync(pick() as never, pick() as never),
      () => drift.driftReportSync(pick() as never, pick() as never, pick() as never),
      () => new MoEClassifier(pick() as never),
      () => metrics.CalibrationAccumulator.fromJSON(pick()),
      () => drift.DriftMonitor.fromJSON(pick()),
      () => MoEClassifier.fromJSON(pick()),
    ];
    try {
      await calls[r.int(calls.length)]();
    } catch (e) {
      expectNamedError(e);
    }
  },
};

describe('fuzz of the public API', () => {
  it(`${CALLS} calls (seed ${SEED}): references hold, bad input gives named errors, no crash`, async () => {
    const r = rng(SEED);
    const names = Object.keys(ops);
    const before = getThreads();
    const counts: Record<string, number> = {};
    try {
      for (let i = 0; i < CALLS; i++) {
        if (r.int(50) === 0) setThreads(1 + r.int(8));
        const name = names[r.int(names.length)];
        counts[name] = (counts[name] ?? 0) + 1;
        const pending = ops[name](r);
        if (r.int(20) === 0) setThreads(1 + r.int(8));  // while the call may be running
        try {
          await pending;
        } catch (e) {
          throw new Error(`fuzz call ${i} (${name}, seed ${SEED}): ${(e as Error).message}`, { cause: e });
        }
      }
    } finally {
      setThreads(before);
    }
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(CALLS);
  });
});
