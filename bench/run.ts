/**
 * `npm run bench [-- <workload...>] [--rows N] [--classes C] [--repeat R] [--threads T]
 *   [--batch B] [--backend cpu,wasm]`
 * Prints one JSON line per measurement on stdout ({system, workload, mode, metric, value, unit,
 * threads, device}); progress and a readable summary on stderr. Workloads: w1, w2 (MoE train
 * step and eval, calmoe), w3 (ECE), w1-tfjs, w2-tfjs (peers in TensorFlow.js, bench/peers/),
 * async-inputs (the async paths beside the sync ones: what copying inputs costs), rss (memory over
 * --rows calls of each entry point, default 10,000; run with node --expose-gc) (default: all but
 * async-inputs and rss). --rows is W3's rows (10,000,000) or W2's
 * (200,000); --batch is W1's batch (2048); --backend limits the TensorFlow.js backends.
 */
import { setThreads } from 'calmoe';
import { note } from './common.js';
import { runTfjsW1, runTfjsW2 } from './peers/tfjs-moe.js';
import { runW1 } from './w1-train.js';
import { runW2 } from './w2-eval.js';
import { runW3 } from './w3-ece.js';
import { runAsyncInputs } from './async-inputs.js';
import { runRss } from './rss.js';

const argv = process.argv.slice(2);
const workloads: string[] = [];
const opts = { rows: 0, classes: 10, repeat: 5, batch: 2048, backends: undefined as string[] | undefined };
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
  else if (a.startsWith('-')) throw new RangeError(`unknown option ${a}`);
  else workloads.push(a);
}
const all = ['w1', 'w2', 'w3', 'w1-tfjs', 'w2-tfjs', 'async-inputs', 'rss'];
const extra = ['async-inputs', 'rss'];  // run when named
for (const w of workloads) if (!all.includes(w)) throw new RangeError(`unknown workload '${w}' (known: ${all.join(', ')})`);
const run = workloads.length ? workloads : all.filter((w) => !extra.includes(w));
if (run.includes('w1')) await runW1(opts);
if (run.includes('w2')) await runW2({ ...opts, rows: opts.rows || 200_000 });
if (run.includes('w3')) await runW3({ ...opts, rows: opts.rows || 10_000_000 });
if (run.includes('w1-tfjs')) await runTfjsW1(opts);
if (run.includes('async-inputs')) await runAsyncInputs({ ...opts, w2Rows: 200_000, w3Rows: opts.rows || 10_000_000 });
if (run.includes('rss')) await runRss({ calls: opts.rows || 10_000 });
if (run.includes('w2-tfjs')) await runTfjsW2({ ...opts, rows: opts.rows || 200_000 });
note('done');
