/**
 * `npm run bench [-- <workload...>] [--rows N] [--classes C] [--repeat R] [--threads T]
 *   [--batch B] [--backend cpu,wasm] [--epochs E] [--modes soft,hard] [--torch-flush-denormals]`
 * Prints one JSON line per measurement on stdout ({system, workload, mode, metric, value, unit,
 * threads, device}); progress and a readable summary on stderr. Workloads: w1, w2 (MoE train
 * step and eval, calmoe), w3 (ECE), w1-tfjs, w2-tfjs (peers in TensorFlow.js, bench/peers/)
 * (default: all of those), io (CSV/.npy loading, model save/load), w4 (a whole AdamW fit at the
 * paper's settings, IEEE and flushed subnormals; long: run it by name) and w4-tfjs (its
 * TensorFlow.js peer, soft routing, a reduced run: 6,000 rows, 2 epochs unless --rows / --epochs)
 * and w4-torch (its PyTorch CPU peer on the same rows at the same thread count, soft routing;
 * --torch-flush-denormals adds a run with torch.set_flush_denormal(True));
 * io, w4, w4-tfjs and w4-torch are not in the default set. --rows is W3's rows (10,000,000), W2's (200,000),
 * io's (100,000) or W4's (60,000); --epochs is W4's (15); --batch is W1's batch (2048); --backend
 * limits the TensorFlow.js backends; --modes W4's routing modes (soft,hard). async-inputs (the async
 * paths beside the sync ones: what copying inputs costs) and rss (memory over --rows calls of each
 * entry point, default 10,000; run with node --expose-gc) are not in the default set either.
 */
import { setThreads } from 'calmoe';
import { note } from './common.js';
import { runIo } from './io.js';
import { runTfjsW1, runTfjsW2 } from './peers/tfjs-moe.js';
import { runW1 } from './w1-train.js';
import { runW2 } from './w2-eval.js';
import { runW3 } from './w3-ece.js';
import { runW4 } from './w4-fit.js';
import { runTfjsW4 } from './peers/tfjs-w4.js';
import { runAsyncInputs } from './async-inputs.js';
import { runRss } from './rss.js';
import { runTorchW4 } from './peers/torch-w4.js';

const argv = process.argv.slice(2);
const workloads: string[] = [];
const opts = { rows: 0, classes: 10, repeat: 5, batch: 2048, backends: undefined as string[] | undefined, epochs: 0 };
let w4Modes: string[] | undefined;
let flushDenormals = false;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const next = () => {
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${a}: expected a positive integer, got ${argv[i]}`);
    return v;
  };
  if (a === '--rows') opts.rows = next();
  else if (a === '--classes') opts.classes = next();
  else if (a === '--repeat') opts.repeat = next();
  else if (a === '--threads') setThreads(next());
  else if (a === '--batch') opts.batch = next();
  else if (a === '--backend') opts.backends = (argv[++i] ?? '').split(',');
  else if (a === '--epochs') opts.epochs = next();
  else if (a === '--torch-flush-denormals') flushDenormals = true;
  else if (a === '--modes') w4Modes = (argv[++i] ?? '').split(',');
  else if (a.startsWith('-')) throw new RangeError(`unknown option ${a}`);
  else workloads.push(a);
}
const all = ['w1', 'w2', 'w3', 'w1-tfjs', 'w2-tfjs'];
const known = [...all, 'io', 'w4', 'w4-tfjs', 'w4-torch', 'async-inputs', 'rss'];
for (const w of workloads) if (!known.includes(w)) throw new RangeError(`unknown workload '${w}' (known: ${known.join(', ')})`);
const run = workloads.length ? workloads : all;
if (run.includes('w1')) await runW1(opts);
if (run.includes('w2')) await runW2({ ...opts, rows: opts.rows || 200_000 });
if (run.includes('w3')) await runW3({ ...opts, rows: opts.rows || 10_000_000 });
if (run.includes('w1-tfjs')) await runTfjsW1(opts);
if (run.includes('w2-tfjs')) await runTfjsW2({ ...opts, rows: opts.rows || 200_000 });
if (run.includes('io')) await runIo({ ...opts, rows: opts.rows || 100_000 });
if (run.includes('w4')) await runW4({ rows: opts.rows || undefined, epochs: opts.epochs || undefined, modes: w4Modes });
if (run.includes('w4-tfjs')) await runTfjsW4({ rows: opts.rows || undefined, epochs: opts.epochs || undefined, backends: opts.backends });
if (run.includes('w4-torch')) runTorchW4({ rows: opts.rows || undefined, epochs: opts.epochs || undefined, flushDenormals: flushDenormals });
if (run.includes('async-inputs')) await runAsyncInputs({ ...opts, w2Rows: 200_000, w3Rows: opts.rows || 10_000_000 });
if (run.includes('rss')) await runRss({ calls: opts.rows || 10_000 });
note('done');
