/**
 * `npm run bench [-- <workload...>] [--rows N] [--classes C] [--repeat R] [--threads T]`
 * Prints one JSON line per measurement on stdout ({system, workload, mode, metric, value, unit,
 * threads, device}); progress and a readable summary on stderr. Workloads: w3 (default: all).
 */
import { setThreads } from 'calmoe';
import { note } from './common.js';
import { runW3 } from './w3-ece.js';

const argv = process.argv.slice(2);
const workloads: string[] = [];
const opts = { rows: 10_000_000, classes: 10, repeat: 5 };
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
  else if (a.startsWith('-')) throw new RangeError(`unknown option ${a}`);
  else workloads.push(a);
}
const all = ['w3'];
for (const w of workloads) if (!all.includes(w)) throw new RangeError(`unknown workload '${w}' (known: ${all.join(', ')})`);
const run = workloads.length ? workloads : all;
if (run.includes('w3')) await runW3(opts);
note('done');
