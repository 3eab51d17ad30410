/** `calmoe train`: a model from a data file, saved as safetensors. */
import { Command, Option } from 'commander';
import { setThreads } from '../backend.js';
import type { Dataset } from '../io/dataset.js';
import { classNamesOf, encodeLabels } from '../io/labels.js';
import { MoEClassifier, type FitOptions } from '../moe/classifier.js';
import type { MoEOptions } from '../moe/options.js';
import type { Matrix } from '../validate.js';
import { CliError, EXIT, EXIT_CODES_HELP, deviceOptions, fixed, intArg, listArg, loadData, numArg, output } from './common.js';
import { limits } from '../limits.js';

interface TrainArgs {
  label?: string; labels?: string; output: string; validation?: string; valLabels?: string; valSplit: number;
  experts: number; expertHidden: number[]; routerHidden: number[]; activation: 'relu' | 'gelu'; routing: 'soft' | 'topk' | 'hard';
  topK?: number; routerTemperature: number; seed: number; initStd?: number; classes?: number;
  epochs: number; batchSize: number; shuffle: boolean; optimizer: 'adamw' | 'sgd'; lr?: number; weightDecay?: number; momentum: number;
  nesterov?: boolean; beta1: number; beta2: number; eps: number; schedule: 'constant' | 'cosine'; warmupSteps: number; minLrRatio: number;
  clipNorm: number; objective: 'erm' | 'robust' | 'robust-filtered'; eta: number; gradient: 'term' | 'through'; robustWarmupEpochs: number;
  tauRegret: number; tauDisagreement: number; medianDisagreement?: boolean; balanceLoss: number;
  patience?: number; best?: string; checkpoint?: string; checkpointEvery?: number; resume?: string; monitor?: 'loss' | 'valLoss' | 'valEce' | 'valAccuracy';
  device: 'auto' | 'cpu' | 'cuda'; precision: 'tf32' | 'fp32' | 'bf16'; threads?: number; progress: boolean; json?: boolean;
}

/** Rows `idx` of a matrix. */
function rowsOf(m: Matrix, idx: Int32Array): Matrix {
  const data = new Float32Array(idx.length * m.cols);
  idx.forEach((r, i) => data.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols));
  return { data, rows: idx.length, cols: m.cols };
}

/** A seeded random split: the last `fraction` of a shuffled order is held out. */
export function splitRows(rows: number, fraction: number, seed: number): { train: Int32Array; val: Int32Array } {
  const order = Int32Array.from({ length: rows }, (_, i) => i);
  let s = (seed >>> 0) ^ 0x9e3779b9;
  for (let i = rows - 1; i > 0; i--) {  // Fisher-Yates with xorshift32
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const nVal = Math.round(rows * fraction);
  return { train: order.slice(0, rows - nVal), val: order.slice(rows - nVal) };
}

function intLabels(d: Dataset, classNames: string[] | undefined, path: string): Int32Array {
  const l = d.labels!;
  if (l instanceof Int32Array) {
    if (classNames) throw new CliError(`${path}: integer labels, but the training labels were names`, EXIT.input);
    return l;
  }
  if (!classNames) throw new CliError(`${path}: labels are names, but the training labels were integers`, EXIT.input);
  try {
    return encodeLabels(l, classNames).labels;
  } catch (err) {
    throw new CliError(`${path}: ${(err as Error).message}`, EXIT.input);
  }
}

export function trainCommand(): Command {
  const c = new Command('train')
    .description('train a Mixture-of-Experts classifier on a data file and save it (safetensors)')
    .argument('<data>', 'training data: .csv/.tsv (with --label), .npy or IDX (with --labels)')
    .option('-l, --label <column>', 'the CSV column holding the labels (integers or class names)')
    .option('--labels <file>', 'labels in a .npy or IDX file (for .npy/IDX features)')
    .option('-o, --output <file>', 'where to save the model', 'model.safetensors')
    .option('--validation <file>', 'validation data (same format and label column as the training data)')
    .option('--val-labels <file>', 'labels of --validation, for .npy/IDX data')
    .option('--val-split <fraction>', 'hold out this fraction of the training rows for validation (seeded by --seed)', numArg(0, 0.9), 0)
    .option('--classes <n>', 'number of classes (default: the largest integer label + 1, or the number of distinct names)', intArg(1))
    // model
    .option('--experts <n>', 'number of experts', intArg(1, () => limits().maxExperts), 8)
    .option('--expert-hidden <sizes>', "each expert's hidden layer sizes, comma-separated ('none': linear experts)", listArg, [64])
    .option('--router-hidden <sizes>', "the router's hidden layer sizes ('none': linear router)", listArg, [])
    .addOption(new Option('--activation <name>', 'hidden activation').choices(['relu', 'gelu']).default('relu'))
    .addOption(new Option('--routing <mode>', 'soft: mix all experts; topk: the k largest; hard: the argmax expert alone').choices(['soft', 'topk', 'hard']).default('soft'))
    .option('--top-k <k>', 'experts per row with --routing topk (default 2)', intArg(1, () => limits().maxExperts))
    .option('--router-temperature <t>', 'r = softmax(g / t)', numArg(Number.MIN_VALUE), 1)
    .option('--seed <n>', 'seed of the initialisation, shuffling and --val-split', intArg(0), 0)
    .option('--init-std <std>', 'initialise every parameter ~ N(0, std) (default: PyTorch Linear init)', numArg(0, () => limits().maxInitStd))
    // training
    .option('--epochs <n>', 'epochs', intArg(1, () => limits().maxEpochs), 10)
    .option('--batch-size <n>', 'minibatch rows', intArg(1, () => limits().maxBatchSize), 128)
    .option('--no-shuffle', 'keep the rows in file order')
    .addOption(new Option('--optimizer <name>', 'optimiser').choices(['adamw', 'sgd']).default('adamw'))
    .option('--lr <rate>', 'learning rate (default 1e-3 AdamW, 1e-2 SGD)', numArg(Number.MIN_VALUE))
    .option('--weight-decay <wd>', 'weight decay (default 1e-4 AdamW, decoupled; 0 SGD)', numArg(0))
    .option('--momentum <m>', 'SGD momentum', numArg(0, () => limits().maxMomentum), 0)
    .option('--nesterov', 'SGD Nesterov momentum')
    .option('--beta1 <b>', 'AdamW beta1', numArg(0, () => limits().maxMomentum), 0.9)
    .option('--beta2 <b>', 'AdamW beta2', numArg(0, () => limits().maxMomentum), 0.999)
    .option('--eps <e>', 'AdamW epsilon', numArg(Number.MIN_VALUE, 1), 1e-8)
    .addOption(new Option('--schedule <name>', 'learning-rate schedule').choices(['constant', 'cosine']).default('constant'))
    .option('--warmup-steps <n>', 'linear warm-up steps', intArg(0), 0)
    .option('--min-lr-ratio <r>', 'cosine floor as a fraction of --lr', numArg(0, 1), 0)
    .option('--clip-norm <n>', 'clip the global gradient norm (0: off)', numArg(0), 0)
    .addOption(new Option('--objective <name>', 'erm; robust: tilted loss w = softmax(eta * loss); robust-filtered').choices(['erm', 'robust', 'robust-filtered']).default('erm'))
    .option('--eta <eta>', 'tilt of the robust objectives', numArg(() => -limits().maxEta, () => limits().maxEta), 2)
    .addOption(new Option('--gradient <kind>', "robust gradient: 'term' holds the weights constant, 'through' differentiates them").choices(['term', 'through']).default('term'))
    .option('--robust-warmup-epochs <n>', 'ERM epochs before the robust term', intArg(0), 0)
    .option('--tau-regret <t>', 'robust-filtered regret threshold', numArg(0), 1e-6)
    .option('--tau-disagreement <t>', 'robust-filtered disagreement threshold', numArg(0), 0.01)
    .option('--median-disagreement', 'robust-filtered: disagreement above the batch median')
    .option('--balance-loss <alpha>', 'Switch load-balancing loss weight (0: off)', numArg(0), 0)
    .option('--patience <epochs>', 'early stopping: stop after this many epochs without improvement and keep the best epoch', intArg(0))
    .option('--best <file>', 'also save the best epoch so far (by --monitor) to this file while training runs')
    .addOption(new Option('--monitor <metric>', 'the metric of --patience and --best (default valLoss with validation data, else loss)').choices(['loss', 'valLoss', 'valEce', 'valAccuracy']))
    .option('--checkpoint <file>', 'write a training checkpoint (model, optimiser state, schedule position, shuffle state) to this file every --checkpoint-every epochs')
    .option('--checkpoint-every <epochs>', 'epochs between checkpoints (default 1 with --checkpoint)', intArg(1))
    .option('--resume <file>', 'continue the run that wrote this checkpoint: give the same data and options (epochs: the run\'s total); the result equals the uninterrupted run')
    // where
    .option('--threads <n>', 'CPU threads (default: all cores)', intArg(1, () => limits().maxThreads))
    .option('--no-progress', 'no progress display on stderr')
    .option('--json', 'print the result as one JSON object')
    .addHelpText('after', `
Examples:
  $ calmoe train iris.csv --label species --val-split 0.2 --epochs 50 -o iris.safetensors
  $ calmoe train train.csv --label y --validation val.csv --routing hard --experts 4 \\
      --objective robust --eta 2 --robust-warmup-epochs 1 --schedule cosine --patience 5
  $ calmoe train train.csv --label y --epochs 100 --checkpoint run.ckpt --checkpoint-every 5
  $ calmoe train train.csv --label y --epochs 100 --checkpoint run.ckpt --checkpoint-every 5 --resume run.ckpt
  $ calmoe train train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \\
      --expert-hidden 128 --epochs 15 -o mnist.safetensors
${EXIT_CODES_HELP}`);
  return deviceOptions(c).action(async (data: string, o: TrainArgs) => {
    if (o.checkpointEvery !== undefined && o.checkpoint === undefined) throw new CliError('--checkpoint-every: needs --checkpoint <file>', EXIT.usage);
    if (o.threads) setThreads(o.threads);
    const train = await loadData(data, o, true);
    const names = Array.isArray(train.labels) ? classNamesOf(train.labels) : undefined;
    let y = intLabels(train, names, data);
    let x = train.x;
    let val: { x: Matrix; y: Int32Array } | undefined;
    if (o.validation) {
      if (o.valSplit) throw new CliError('--validation and --val-split: give one', EXIT.usage);
      const v = await loadData(o.validation, { label: o.label, labels: o.valLabels, features: train.featureNames }, true);
      val = { x: v.x, y: intLabels(v, names, o.validation) };
    } else if (o.valSplit > 0) {
      const s = splitRows(x.rows, o.valSplit, o.seed);
      if (s.val.length === 0 || s.train.length === 0) throw new CliError(`--val-split ${o.valSplit} of ${x.rows} rows leaves an empty split`, EXIT.usage);
      val = { x: rowsOf(x, s.val), y: s.val.map((r) => y[r]) };
      [x, y] = [rowsOf(x, s.train), s.train.map((r) => y[r])];
    }
    let maxLabel = 0;
    for (const v of y) maxLabel = Math.max(maxLabel, v);
    const classes = names ? names.length : o.classes ?? maxLabel + 1;
    const options: MoEOptions = {
      inputDim: x.cols, classes, experts: o.experts, expertHidden: o.expertHidden, routerHidden: o.routerHidden, activation: o.activation,
      routing: o.routing, ...(o.topK !== undefined ? { topK: o.topK } : {}), routerTemperature: o.routerTemperature, seed: o.seed,
      ...(o.initStd !== undefined ? { init: { std: o.initStd } } : {}), device: o.device, precision: o.precision, ...(names ? { classNames: names } : {}), ...(train.featureNames ? { featureNames: train.featureNames } : {}),
    };
    const model = new MoEClassifier(options);
    const ac = new AbortController();
    const onSigint = () => ac.abort(new Error('interrupted'));
    process.once('SIGINT', onSigint);
    const fit: FitOptions = {
      epochs: o.epochs, batchSize: o.batchSize, shuffle: o.shuffle, seed: o.seed, clipNorm: o.clipNorm, balanceLoss: o.balanceLoss,
      optimizer: { type: o.optimizer, lr: o.lr, weightDecay: o.weightDecay, momentum: o.momentum, nesterov: !!o.nesterov, betas: [o.beta1, o.beta2], eps: o.eps },
      schedule: { type: o.schedule, warmupSteps: o.warmupSteps, minLrRatio: o.minLrRatio },
      objective: { type: o.objective, eta: o.eta, gradient: o.gradient, warmupEpochs: o.robustWarmupEpochs, tauRegret: o.tauRegret,
        tauDisagreement: o.tauDisagreement, medianDisagreement: !!o.medianDisagreement },
      ...(val ? { validation: val } : {}),
      ...(o.patience !== undefined ? { earlyStopping: { patience: o.patience, monitor: o.monitor } } : {}),
      ...(o.best !== undefined ? { bestCheckpoint: { path: o.best, monitor: o.monitor } } : {}),
      ...(o.checkpoint !== undefined ? { checkpoint: { path: o.checkpoint, everyEpochs: o.checkpointEvery ?? 1 } } : {}),
      ...(o.resume !== undefined ? { resumeFrom: o.resume } : {}),
      progress: o.progress, signal: ac.signal,
    };
    let history;
    try {
      history = await model.fit(x, y, fit);
    } catch (err) {
      const e = err as { name?: string; history?: { epochs: unknown[] } };
      if (e.name === 'AbortError') {
        const again = o.checkpoint !== undefined ? `; continue from the last checkpoint with --resume ${o.checkpoint}` : '';
        throw new CliError(`interrupted after ${e.history?.epochs.length ?? 0} finished epochs; ${o.output} was not written${again}`, EXIT.interrupted);
      }
      throw err;
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    model.save(o.output);
    const last = history.epochs[history.epochs.length - 1];
    output(!!o.json, { model: o.output, rows: x.rows, validationRows: val?.x.rows ?? 0, features: x.cols, classes, classNames: names, parameters: model.parameterCount,
      epochs: history.epochs, best: history.best, stoppedEarly: history.stoppedEarly }, () =>
      `saved ${o.output}: ${model.parameterCount.toLocaleString('en-US')} parameters, ${x.rows} rows x ${x.cols} features, ${classes} classes, ` +
      `${history.epochs.length} epochs${history.stoppedEarly ? ` (stopped early; best epoch ${history.best!.epoch + 1})` : ''}; ` +
      `final loss ${fixed(last.loss)}, accuracy ${fixed(last.accuracy)}` + (last.valLoss !== undefined ? `, val accuracy ${fixed(last.valAccuracy)}, val ECE ${fixed(last.valEce)}` : ''));
  });
}
