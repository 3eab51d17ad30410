/**
 * Typed options of the MoE classifier, their defaults, and their validation (names in errors are
 * the option paths a caller wrote: `optimizer.lr`, `objective.eta`, ...).
 */
import { rangeError, typeError } from '../errors.js';
import type { NativeMoEConfig, NativeMoEFitOptions } from '../native.js';
import { type Device, optBool, optChoice, optDevice, optInt, optNumber, readOptions } from '../validate.js';
import { limits } from '../limits.js';

export type Routing = 'soft' | 'topk' | 'hard';
export type Activation = 'relu' | 'gelu';
/**
 * How the CUDA engine multiplies (the CPU always computes in FP32): 'tf32' (default) tensor cores
 * with inputs rounded to TF32 and FP32 accumulation; 'fp32' exact, in the CPU's summation order
 * (the CPU's bits); 'bf16' tensor cores with inputs rounded to BF16 and FP32 accumulation.
 */
export type Precision = 'tf32' | 'fp32' | 'bf16';
export const PRECISIONS = ['tf32', 'fp32', 'bf16'] as const;

export interface MoEOptions {
  /** Input features per row. */
  inputDim: number;
  classes: number;
  experts: number;
  /** Hidden layer sizes of each expert (default [64]; [] = linear experts). */
  expertHidden?: number[];
  /** Hidden layer sizes of the router (default []: linear; the paper uses [128]). */
  routerHidden?: number[];
  activation?: Activation;
  /**
   * 'soft' (default): p = sum_k r_k p_k. 'topk': the topK largest r, renormalised (topK = 1 is
   * Switch-style top-1). 'hard': the argmax expert alone; trained with the competitive estimator.
   */
  routing?: Routing;
  /** Experts per row in 'topk' routing (default 2). */
  topK?: number;
  /** r = softmax(g / routerTemperature) (default 1). */
  routerTemperature?: number;
  /** Seed of the parameter initialisation (default 0). */
  seed?: number;
  /** 'default': PyTorch Linear init (U(+-1/sqrt(fan_in))); or { std }: every parameter ~ N(0, std). */
  init?: 'default' | { std: number };
  /**
   * Default device of this model's calls (default 'auto': CUDA when a GPU is usable, else the CPU).
   */
  device?: Device;
  /** Default GEMM arithmetic of this model's calls on CUDA (default 'tf32'; see Precision). */
  precision?: Precision;
  /** A name per class (`classes` distinct strings): labels may then be given as names; saved with the model. */
  classNames?: string[];
  /** A name per input column (`inputDim` distinct strings), saved with the model: the CLI reads CSV columns by these names. */
  featureNames?: string[];
}

export interface OptimizerOptions {
  type?: 'adamw' | 'sgd';
  /** Default 1e-3 (AdamW) or 1e-2 (SGD). */
  lr?: number;
  /** Default 1e-4 (AdamW, decoupled) or 0 (SGD, L2 on the gradient). */
  weightDecay?: number;
  /** SGD momentum (default 0). */
  momentum?: number;
  nesterov?: boolean;
  /** AdamW betas (default [0.9, 0.999]). */
  betas?: [number, number];
  eps?: number;
}

export interface ScheduleOptions {
  type?: 'constant' | 'cosine';
  /** Linear warm-up steps from 0 to lr (default 0). */
  warmupSteps?: number;
  /** Cosine floor as a fraction of lr (default 0). */
  minLrRatio?: number;
}

export interface ObjectiveOptions {
  /** 'erm' (default), 'robust' (tilted: w = softmax(eta * loss)), or 'robust-filtered'. */
  type?: 'erm' | 'robust' | 'robust-filtered';
  /** Tilt (default 2, as the paper). */
  eta?: number;
  /** 'term' (default): weights held constant; 'through': autograd through the weights. */
  gradient?: 'term' | 'through';
  /** ERM epochs before the robust term (default 0). */
  warmupEpochs?: number;
  /** robust-filtered: regret threshold (default 1e-6). */
  tauRegret?: number;
  /** robust-filtered: disagreement threshold (default 0.01). */
  tauDisagreement?: number;
  /** robust-filtered: disagreement above the batch median instead of tauDisagreement. */
  medianDisagreement?: boolean;
  /**
   * Hard routing, 'robust': which per-example loss the tilt weights come from: 'competitive'
   * (default: the training loss sum_k r_k l_k) or 'top1' (the routed top-1 expert's loss, the
   * loss of what hard routing predicts; needs gradient 'term'; CPU engine only for now).
   */
  tiltLoss?: 'competitive' | 'top1';
}

export const MODEL_OPTIONS = ['inputDim', 'classes', 'experts', 'expertHidden', 'routerHidden', 'activation', 'routing', 'topK',
  'routerTemperature', 'seed', 'init', 'device', 'precision', 'classNames', 'featureNames'] as const;

function intList(v: unknown, name: string, def: number[]): number[] {
  if (v === undefined) return def;
  if (!Array.isArray(v)) throw typeError(`${name}: expected an array of positive integers`);
  if (v.length > limits().maxHiddenLayers) throw rangeError(`${name}: expected at most ${limits().maxHiddenLayers} hidden layers, got ${v.length}`);
  return v.map((h, i) => optInt(h, `${name}[${i}]`, 1, 1, limits().maxWidth));
}

export interface ParsedModel {
  config: NativeMoEConfig;
  seed: number;
  init: { kind: 'default' | 'normal'; std: number };
  device: Device;
  precision: Precision;
  classNames?: string[];
  featureNames?: string[];
}

// classNames / featureNames: `count` distinct strings
function namesOption(v: unknown, name: string, count: number, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw typeError(`${name}: expected an array of strings`);
  if (v.length !== count) throw rangeError(`${name}: expected ${count} names (${what}), got ${v.length}`);
  if (new Set(v).size !== v.length) throw rangeError(`${name}: the names must be distinct`);
  return [...(v as string[])];
}

export function parseModelOptions(options: unknown): ParsedModel {
  if (options === undefined) throw typeError('options: expected { inputDim, classes, experts, ... }');
  const o = readOptions(options, 'options', MODEL_OPTIONS);
  for (const key of ['inputDim', 'classes', 'experts'] as const) {
    if (o[key] === undefined) throw typeError(`${key}: required (a positive integer)`);
  }
  const experts = optInt(o.experts, 'experts', 1, 1, limits().maxExperts);
  const config: NativeMoEConfig = {
    inputDim: optInt(o.inputDim, 'inputDim', 1, 1, limits().maxWidth),
    classes: optInt(o.classes, 'classes', 1, 1, limits().maxWidth),
    experts,
    expertHidden: intList(o.expertHidden, 'expertHidden', [64]),
    routerHidden: intList(o.routerHidden, 'routerHidden', []),
    activation: optChoice(o.activation, 'activation', 'relu', ['relu', 'gelu'] as const),
    routing: optChoice(o.routing, 'routing', 'soft', ['soft', 'topk', 'hard'] as const),
    topK: optInt(o.topK, 'topK', Math.min(2, experts), 1, limits().maxExperts),
    routerTemperature: optNumber(o.routerTemperature, 'routerTemperature', 1, Number.MIN_VALUE, Number.MAX_VALUE),
  };
  if (config.topK > experts) throw rangeError(`topK: expected an integer in [1, experts = ${experts}], got ${config.topK}`);
  if (o.topK !== undefined && config.routing !== 'topk') throw rangeError(`topK: only used with routing 'topk' (routing is '${config.routing}')`);
  let init: ParsedModel['init'] = { kind: 'default', std: 0 };
  if (o.init !== undefined && o.init !== 'default') {
    const i = readOptions(o.init, 'init', ['std']);
    if (i.std === undefined) throw typeError("init: expected 'default' or { std: number }");
    init = { kind: 'normal', std: optNumber(i.std, 'init.std', 0.05, 0, limits().maxInitStd) };
  }
  return { config, seed: optInt(o.seed, 'seed', 0, 0, Number.MAX_SAFE_INTEGER), init, device: optDevice(o.device),
    precision: optChoice(o.precision, 'precision', 'tf32', PRECISIONS), classNames: namesOption(o.classNames, 'classNames', config.classes, 'classes'),
    featureNames: namesOption(o.featureNames, 'featureNames', config.inputDim, 'inputDim') };
}

export const FIT_OPTIONS = ['epochs', 'batchSize', 'shuffle', 'seed', 'optimizer', 'schedule', 'clipNorm', 'objective', 'balanceLoss', 'balanceForm',
  'validation', 'signal', 'onEpochEnd', 'onBatchEnd', 'progressEvery', 'device', 'precision', 'progress', 'earlyStopping', 'bestCheckpoint',
  'checkpoint', 'resumeFrom'] as const;

export function parseFitOptions(o: Partial<Record<(typeof FIT_OPTIONS)[number], unknown>>): NativeMoEFitOptions {
  const opt = readOptions(o.optimizer, 'optimizer', ['type', 'lr', 'weightDecay', 'momentum', 'nesterov', 'betas', 'eps']);
  const type = optChoice(opt.type, 'optimizer.type', 'adamw', ['adamw', 'sgd'] as const);
  let betas: [number, number] = [0.9, 0.999];
  if (opt.betas !== undefined) {
    if (!Array.isArray(opt.betas) || opt.betas.length !== 2) throw typeError('optimizer.betas: expected [beta1, beta2]');
    betas = [optNumber(opt.betas[0], 'optimizer.betas[0]', 0.9, 0, limits().maxMomentum), optNumber(opt.betas[1], 'optimizer.betas[1]', 0.999, 0, limits().maxMomentum)];
  }
  const sch = readOptions(o.schedule, 'schedule', ['type', 'warmupSteps', 'minLrRatio']);
  const obj = readOptions(o.objective, 'objective', ['type', 'eta', 'gradient', 'warmupEpochs', 'tauRegret', 'tauDisagreement', 'medianDisagreement', 'tiltLoss']);
  return {
    epochs: optInt(o.epochs, 'epochs', 1, 1, limits().maxEpochs),
    batchSize: optInt(o.batchSize, 'batchSize', 128, 1, limits().maxBatchSize),
    shuffle: optBool(o.shuffle, 'shuffle', true),
    seed: optInt(o.seed, 'seed', 0, 0, Number.MAX_SAFE_INTEGER),
    progressEvery: optInt(o.progressEvery, 'progressEvery', o.onBatchEnd ? 1 : 0, 0, limits().maxSteps),
    clipNorm: optNumber(o.clipNorm, 'clipNorm', 0, 0, Number.MAX_VALUE),
    balanceLoss: optNumber(o.balanceLoss, 'balanceLoss', 0, 0, Number.MAX_VALUE),
    balanceForm: optChoice(o.balanceForm, 'balanceForm', 'switch', ['switch', 'squared-mean'] as const),
    optimizer: {
      type,
      lr: optNumber(opt.lr, 'optimizer.lr', type === 'adamw' ? 1e-3 : 1e-2, Number.MIN_VALUE, Number.MAX_VALUE),
      weightDecay: optNumber(opt.weightDecay, 'optimizer.weightDecay', type === 'adamw' ? 1e-4 : 0, 0, Number.MAX_VALUE),
      momentum: optNumber(opt.momentum, 'optimizer.momentum', 0, 0, limits().maxMomentum),
      nesterov: optBool(opt.nesterov, 'optimizer.nesterov', false),
      beta1: betas[0],
      beta2: betas[1],
      eps: optNumber(opt.eps, 'optimizer.eps', 1e-8, Number.MIN_VALUE, 1),
    },
    schedule: {
      type: optChoice(sch.type, 'schedule.type', 'constant', ['constant', 'cosine'] as const),
      warmupSteps: optInt(sch.warmupSteps, 'schedule.warmupSteps', 0, 0, limits().maxSteps),
      minLrRatio: optNumber(sch.minLrRatio, 'schedule.minLrRatio', 0, 0, 1),
    },
    objective: {
      type: optChoice(obj.type, 'objective.type', 'erm', ['erm', 'robust', 'robust-filtered'] as const),
      eta: optNumber(obj.eta, 'objective.eta', 2, -limits().maxEta, limits().maxEta),
      gradient: optChoice(obj.gradient, 'objective.gradient', 'term', ['term', 'through'] as const),
      warmupEpochs: optInt(obj.warmupEpochs, 'objective.warmupEpochs', 0, 0, limits().maxEpochs),
      tauRegret: optNumber(obj.tauRegret, 'objective.tauRegret', 1e-6, 0, Number.MAX_VALUE),
      tauDisagreement: optNumber(obj.tauDisagreement, 'objective.tauDisagreement', 0.01, 0, Number.MAX_VALUE),
      medianDisagreement: optBool(obj.medianDisagreement, 'objective.medianDisagreement', false),
      tiltLoss: optChoice(obj.tiltLoss, 'objective.tiltLoss', 'competitive', ['competitive', 'top1'] as const),
    },
  };
}
