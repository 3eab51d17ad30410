export { DOMAINS, corruptRow, domainSplits, seededRandom, toUnitRange, type DomainSplit, type DomainSplits } from './domains.js';
export { difficultSubsetWeights } from './difficult-subset.js';
export { FASHION_MNIST_DIR, FASHION_MNIST_DIR_ENV, FULL_RUN, fashionMnistDir, fashionMnistFiles, type FashionMnistFiles } from './full-run.js';
export { loadMnistPackage } from './mnist-package.js';
export { domainHeavyWeights, routePurity, routeShiftWeights, topRoutes } from './shifts.js';
export { conclude, formatSpread, spread, type Conclusion, type Spread, type TiltEffect } from './summary.js';
export {
  EVALUATIONS, METRICS, MODELS, TILTED_MODELS, runExperiment, type EvaluationName, type ExperimentOptions, type ExperimentProgress, type ExperimentResult,
  type ExperimentRow, type MetricName, type ModelName,
} from './runner.js';
export { experimentReport } from './report.js';
export { experimentText } from './text.js';
