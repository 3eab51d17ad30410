/** `calmoe drift`: per-feature drift of current data against a reference (KS and PSI). */
import { Command, Option } from 'commander';
import { driftReport } from '../drift/report.js';
import { CliError, EXIT, EXIT_CODES_HELP, fixed, intArg, loadData, numArg, output } from './common.js';
import { limits } from '../limits.js';

interface DriftArgs { label?: string; alpha: number; correction: 'bh' | 'by' | 'bonferroni' | 'none'; bins: number; top: number; device: 'auto' | 'cpu' | 'cuda'; json?: boolean }

export function driftCommand(): Command {
  return new Command('drift')
    .description(`test every feature of current data against reference data (two-sample KS with a correction, PSI); exit code ${EXIT.drift} when a feature drifted`)
    .argument('<reference>', 'reference features (e.g. the training data): .csv/.tsv, .npy or IDX')
    .argument('<current>', 'current features, the same columns')
    .option('-l, --label <column>', 'a CSV column to leave out (e.g. the labels)')
    .option('--alpha <a>', 'significance level on the adjusted p-values', numArg(0, 1), 0.05)
    .addOption(new Option('--correction <c>', 'multiple-testing correction across features').choices(['bh', 'by', 'bonferroni', 'none']).default('bh'))
    .option('--bins <n>', 'PSI bins', intArg(2, () => limits().maxDriftBins), 10)
    .option('--top <n>', 'features listed (most severe first)', intArg(1), 10)
    .addOption(new Option('--device <device>').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--json', 'print one JSON object (every feature)')
    .addHelpText('after', `
Examples:
  $ calmoe drift train.csv today.csv --label y
  $ calmoe drift train.npy batch.npy --alpha 0.01 --json || echo "drift found"
${EXIT_CODES_HELP}`)
    .action(async (refPath: string, curPath: string, o: DriftArgs) => {
      const ref = await loadData(refPath, { label: o.label }, false);
      const cur = await loadData(curPath, { label: o.label, features: ref.featureNames }, false);
      if (ref.x.cols !== cur.x.cols) throw new CliError(`${curPath} has ${cur.x.cols} feature columns, ${refPath} has ${ref.x.cols}`, EXIT.input);
      const r = await driftReport(ref.x, cur.x, { alpha: o.alpha, correction: o.correction, bins: o.bins, featureNames: ref.featureNames, device: o.device });
      output(!!o.json, r, () => {
        const lines = [`${r.drifted} of ${r.features.length} features drifted (alpha ${o.alpha}, ${o.correction}); ${r.referenceRows} reference rows, ${r.currentRows} current rows`];
        lines.push('feature               KS D     p (adj.)     PSI     drifted');
        for (const f of r.features.slice(0, o.top))
          lines.push(`${(f.name ?? String(f.feature)).slice(0, 20).padEnd(20)}  ${fixed(f.statistic)}  ${f.adjustedPValue.toExponential(2).padStart(9)}  ${fixed(f.psi).padStart(7)}  ${f.drifted ? 'yes' : 'no'}`);
        return lines.join('\n');
      });
      if (r.drifted > 0) process.exitCode = EXIT.drift;
    });
}
