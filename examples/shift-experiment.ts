/**
 * A short run of the paper's question on real data: are hard-routed MoEs with calibrated experts
 * still calibrated when a shift moves the route mix, and soft-routed ones less so?
 *   npm run demo:shift [-- --seeds 3 --epochs 10]   (18 fits: about a minute on 2 shared cores)
 * The experiment itself is the library's `experiment.runExperiment` (also `calmoe experiment`,
 * which writes an HTML report with --out); this prints its table and conclusion.
 */
import { experiment } from 'calmoe';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name}: expected a positive integer, got ${args[i + 1]}`);
  return v;
};

const r = await experiment.runExperiment({
  seeds: opt('--seeds', 3), epochs: opt('--epochs', 10),
  onProgress: (p) => console.error(`[${p.done}/${p.total}] ${p.message}`),
});
console.log(`\n${r.data.name}: ${r.data.train} train / ${r.data.validation} validation / ${r.data.testPool} test pool; domains: ${r.data.domains.join(', ')}`);
console.log(`${r.settings.seeds} seed(s), ${r.settings.epochs} epochs; mean ± sd over seeds; ECE with 15 bins\n`);
console.log('model | evaluation | accuracy | ECE | NLL | Brier');
console.log('--- | --- | --- | --- | --- | ---');
for (const t of r.table) console.log([t.model, t.evaluation, ...[t.accuracy, t.ece, t.nll, t.brier].map((s) => experiment.formatSpread(s))].join(' | '));
console.log(`\n${r.conclusion.text}`);
