// Scenarios that change a call's inputs while it runs: detach (structuredClone transfer), shrink
// (resizable ArrayBuffer), overwrite, and setThreads(). Run in a child process by
// test/async-inputs.test.ts (`node --expose-gc async-inputs.mjs <scenario>`) so that a crash is a
// failed test, not a dead vitest worker. Prints one JSON line: { ok, detail }.
// CALMOE_DIST picks the build under test (default: this checkout's dist/).
const dist = process.env.CALMOE_DIST ?? new URL('../../dist/index.js', import.meta.url).href;
const { metrics, drift, calibrate, losses, MoEClassifier, setThreads, getThreads } = await import(dist);

function probabilities(rows, classes, seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const data = new Float32Array(rows * classes);
  const labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let sum = 0;
    for (let j = 0; j < classes; j++) sum += data[i * classes + j] = u() * u() + 1e-3;
    for (let j = 0; j < classes; j++) data[i * classes + j] /= sum;
    labels[i] = Math.floor(u() * classes);
  }
  return { data, labels };
}

function gaussian(rows, cols, seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return x;
}

// Detaches a typed array's buffer: the memory moves to a new owner, which overwrites it with NaN
// (what a worker reading it would see), then drops it for the collector to free.
function detach(a) {
  const moved = structuredClone(a.buffer, { transfer: [a.buffer] });
  new Uint8Array(moved).fill(0xff);
  globalThis.gc?.();
}

// A copy in a resizable buffer (length-tracking view), for shrinking mid-call.
function resizable(a) {
  const buf = new ArrayBuffer(a.byteLength, { maxByteLength: a.byteLength });
  const out = new a.constructor(buf);
  out.set(a);
  return out;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const ROWS = 1_500_000, C = 10;

const scenarios = {
  // metrics.calibration on probabilities whose buffer is transferred right after the call
  async 'detach-calibration'() {
    const { data, labels } = probabilities(ROWS, C, 1);
    const want = metrics.calibrationSync({ data, rows: ROWS, cols: C }, labels);
    const p = metrics.calibration({ data, rows: ROWS, cols: C }, labels);
    detach(data);
    detach(labels);
    const got = await p;
    return { ok: got.ece === want.ece && got.accuracy === want.accuracy && got.nll === want.nll, detail: [got.ece, want.ece] };
  },
  // the same with a resizable buffer shrunk to nothing
  async 'shrink-calibration'() {
    const { data, labels } = probabilities(ROWS, C, 2);
    const want = metrics.calibrationSync({ data, rows: ROWS, cols: C }, labels);
    const r = resizable(data), y = resizable(labels);
    const p = metrics.calibration({ data: r, rows: ROWS, cols: C }, y);
    r.buffer.resize(0);
    y.buffer.resize(0);
    globalThis.gc?.();
    const got = await p;
    return { ok: got.ece === want.ece && got.nll === want.nll, detail: [got.ece, want.ece] };
  },
  // labels overwritten with out-of-range values after the call: the result is the original data's
  async 'mutate-labels-calibration'() {
    const { data, labels } = probabilities(ROWS, C, 3);
    const want = metrics.calibrationSync({ data, rows: ROWS, cols: C }, labels);
    const p = metrics.calibration({ data, rows: ROWS, cols: C }, labels);
    labels.fill(1e9);
    data.fill(0.5);
    const got = await p;
    return { ok: got.ece === want.ece && got.accuracy === want.accuracy, detail: [got.ece, want.ece] };
  },
  // every other async entry point, its inputs detached right after the call
  async 'detach-everything'() {
    const n = 400_000, d = 8;
    const { data, labels } = probabilities(n, C, 4);
    const copy = (a) => a.slice();
    const m = (x) => ({ data: x, rows: n, cols: C });
    const ref = gaussian(n, d, 5), cur = gaussian(n, d, 6);
    const checks = [];
    const run = async (name, sync, async_, inputs) => {
      const want = sync(...inputs.map(copy));
      const args = inputs.map(copy);
      const p = async_(...args);
      for (const a of args) detach(a);
      const got = await p;
      checks.push([name, same(got, want)]);
    };
    await run('ece', (p, y) => metrics.eceSync(m(p), y), (p, y) => metrics.ece(m(p), y), [data, labels]);
    await run('classwise', (p, y) => metrics.classwiseCalibrationSync(m(p), y).ece, async (p, y) => (await metrics.classwiseCalibration(m(p), y)).ece, [data, labels]);
    await run('equal-mass', (p, y) => metrics.calibrationSync(m(p), y, { binning: 'equal-mass' }).ece,
      async (p, y) => (await metrics.calibration(m(p), y, { binning: 'equal-mass' })).ece, [data, labels]);
    const bin = data.subarray(0, n);
    const y01 = labels.map((v) => v & 1);
    await run('binary', (p, y) => metrics.binaryCalibrationSync(p, y).ece, async (p, y) => (await metrics.binaryCalibration(p, y)).ece, [bin, y01]);
    await run('drift', (a, b) => drift.driftReportSync({ data: a, rows: n, cols: d }, { data: b, rows: n, cols: d }).features.map((f) => f.psi),
      async (a, b) => (await drift.driftReport({ data: a, rows: n, cols: d }, { data: b, rows: n, cols: d })).features.map((f) => f.psi), [ref, cur]);
    await run('temperature', (p, y) => calibrate.temperatureObjectiveSync(m(p), y, 1.5).nll,
      async (p, y) => (await calibrate.temperatureObjective(m(p), y, 1.5)).nll, [data, labels]);
    await run('apply-temperature', (p) => Array.from(calibrate.applyTemperatureSync(m(p), 1.5).data.subarray(0, 1000)),
      async (p) => Array.from((await calibrate.applyTemperature(m(p), 1.5)).data.subarray(0, 1000)), [data]);
    const losses_ = new Float32Array(n).map((_, i) => (i % 97) / 50);
    await run('tilted', (l) => losses.tiltedWeightsSync(l, 2).robustLoss, async (l) => (await losses.tiltedWeights(l, 2)).robustLoss, [losses_]);
    const acc = new metrics.CalibrationAccumulator();
    const accWant = new metrics.CalibrationAccumulator();
    accWant.updateSync(m(copy(data)), copy(labels));
    const pd = copy(data), pl = copy(labels);
    const pu = acc.update(m(pd), pl);
    detach(pd);
    detach(pl);
    await pu;
    checks.push(['accumulator', acc.result().ece === accWant.result().ece]);
    const monWant = drift.DriftMonitor.fromReferenceSync({ data: copy(ref), rows: n, cols: d });
    monWant.updateSync({ data: copy(cur), rows: n, cols: d });
    const r2 = copy(ref), c2 = copy(cur);
    const pm = drift.DriftMonitor.fromReference({ data: r2, rows: n, cols: d });
    detach(r2);
    const mon = await pm;
    const pmu = mon.update({ data: c2, rows: n, cols: d });
    detach(c2);
    await pmu;
    checks.push(['monitor', same(mon.result().features.map((f) => f.psi), monWant.result().features.map((f) => f.psi))]);
    return { ok: checks.every((c) => c[1]), detail: checks };
  },
  // labels overwritten with 1e9 (then -1) after fit started: the fit is the one on the original labels
  async 'mutate-labels-fit'() {
    const n = 4000, d = 16;
    const x = gaussian(n, d, 7);
    const y = new Int32Array(n).map((_, i) => i % 3);
    const opts = { inputDim: d, classes: 3, experts: 4, seed: 3 };
    const want = new MoEClassifier(opts);
    await want.fit({ data: x, rows: n, cols: d }, y.slice(), { epochs: 3, batchSize: 64 });
    const m = new MoEClassifier(opts);
    const xs = x.slice(), ys = y.slice();
    const p = m.fit({ data: xs, rows: n, cols: d }, ys, { epochs: 3, batchSize: 64 });
    ys.fill(1e9);
    xs.fill(Number.NaN);
    await new Promise((r) => setTimeout(r, 5));
    ys.fill(-1);
    await p;
    return { ok: same(Array.from(m.parameters), Array.from(want.parameters)), detail: m.parameters.slice(0, 3) };
  },
  // training data and the model's parameters transferred during fit
  async 'detach-fit'() {
    const n = 4000, d = 16;
    const x = gaussian(n, d, 8);
    const y = new Int32Array(n).map((_, i) => i % 3);
    const m = new MoEClassifier({ inputDim: d, classes: 3, experts: 4, seed: 3 });
    const params = m.parameters;
    const p = m.fit({ data: x, rows: n, cols: d }, y, { epochs: 5, batchSize: 32 });
    detach(x);
    detach(y);
    detach(params);
    const err = await p.then(() => null, (e) => e);
    return { ok: err !== null && err.code === 'CALMOE_DETACHED', detail: String(err) };
  },
  // an async predict that started before fit gives the pre-fit model's result
  async 'predict-then-fit'() {
    const n = 60_000, d = 32;
    const x = gaussian(n, d, 9);
    const y = new Int32Array(n).map((_, i) => i % 4);
    const m = new MoEClassifier({ inputDim: d, classes: 4, experts: 8, expertHidden: [64], seed: 1 });
    const want = m.predictSync({ data: x, rows: n, cols: d }).probs.data;
    const p = m.predict({ data: x, rows: n, cols: d });
    const f = m.fit({ data: x, rows: n, cols: d }, y, { epochs: 1, batchSize: 32, optimizer: { type: 'sgd', lr: 0.5 } });
    const got = (await p).probs.data;
    await f;
    return { ok: same(Array.from(got), Array.from(want)), detail: [got[0], want[0]] };
  },
  // thread count changed again and again while grouped updates (large per-worker buffers) run
  async 'set-threads-mid-call'() {
    const n = 300_000, groups = 2_000;
    const { data, labels } = probabilities(n, C, 10);
    const g = new Int32Array(n).map((_, i) => (i * 7919) % groups);
    const m = { data, rows: n, cols: C };
    const before = getThreads();
    const want = metrics.groupCalibrationSync(m, labels, g, { bins: 100 }).groups.map((s) => s.ece);
    const calls = [];
    for (let i = 0; i < 30; i++) calls.push(metrics.groupCalibration(m, labels, g, { bins: 100 }));
    const until = Date.now() + 400;
    for (let i = 0; Date.now() < until; i++) setThreads(i % 2 ? 1 : 16);
    const got = await Promise.all(calls);
    setThreads(before);
    return { ok: got.every((r) => same(r.groups.map((s) => s.ece), want)), detail: got.length };
  },
  // worker.terminate() while the worker's fit runs: the fit stops at its next step
  // worker.terminate() at random moments of a fit: while progress events are queued for a
  // JavaScript that is being stopped (a throw there used to be a fatal error of the whole process:
  // node-addon-api's NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS), and right as the fit starts
  async 'terminate-during-fit'() {
    const { Worker } = await import('node:worker_threads');
    const runs = 60;
    let slowest = 0;
    for (let i = 0; i < runs; i++) {
      const code = `
        const { parentPort } = require('node:worker_threads');
        import(${JSON.stringify(dist)}).then(async ({ MoEClassifier }) => {
          const n = 2000, d = 8, x = new Float32Array(n * d).map((_, i) => Math.sin(i)), y = new Int32Array(n).map((_, i) => i % 2);
          const m = new MoEClassifier({ inputDim: d, classes: 2, experts: 2, seed: 1 });
          let told = false;
          const fit = m.fit({ data: x, rows: n, cols: d }, y, { epochs: 1e9, batchSize: ${[1, 4, 16][i % 3]},
            onBatchEnd: () => { if (!told) { told = true; parentPort.postMessage('training'); } } });
          ${i % 4 === 3 ? "parentPort.postMessage('started');" : ''}
          await fit;
        });`;
      const w = new Worker(code, { eval: true });
      await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
      await new Promise((resolve) => setTimeout(resolve, (i * 7) % 20));
      const t0 = Date.now();
      await w.terminate();
      slowest = Math.max(slowest, Date.now() - t0);
    }
    return { ok: true, detail: `${runs} workers terminated mid-fit; the slowest terminate() took ${slowest} ms` };
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.log(JSON.stringify({ ok: false, detail: `unknown scenario ${name} (known: ${Object.keys(scenarios).join(', ')})` }));
  process.exit(2);
}
const r = await scenarios[name]();
console.log(JSON.stringify(r));
