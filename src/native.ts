/**
 * The one place that loads the native addon, and the typed view of its surface.
 * Looks for CALMOE_ADDON_PATH, then build/Release and build/Debug under the package root.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type NativeDevice = 'auto' | 'cpu' | 'cuda';

export interface NativeBins {
  lower: Float64Array;
  upper: Float64Array;
  count: Float64Array;
  /** Total weight in each bin (= count unless weighted). */
  weight: Float64Array;
  meanConfidence: Float64Array;
  accuracy: Float64Array;
}

export interface NativeGroupSummary {
  rows: number;
  weight: number;
  accuracy: number;
  ece: number;
  mce: number;
  rmsce: number;
  bins: NativeBins;
}

export interface NativeSummary {
  rows: number;
  weight: number;
  accuracy: number;
  nll: number;
  brier: number;
  ece: number;
  mce: number;
  rmsce: number;
  overall: NativeGroupSummary;
  groups: NativeGroupSummary[];
}

export interface NativeGpu {
  index: number;
  name: string;
  memoryBytes: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface NativeCudaGemm {
  /** `'cublaslt'` when cuBLASLt was found and passed its self-check, else `'calmoe'`. */
  library: 'cublaslt' | 'calmoe';
  /** The libcublasLt.so.13 / .so.12 file found (also when it was refused), or null. */
  path: string | null;
  /** The search step that found it: 'CALMOE_CUBLASLT', 'already loaded', 'system loader', 'CUDA_HOME', 'VIRTUAL_ENV', ... */
  origin: string | null;
  /** cuBLASLt's version, e.g. '13.1.0', or null. */
  version: string | null;
  /** Why cuBLASLt is not used (not found, `CALMOE_CUBLASLT=off`, no GPU, a failed self-check), or null when it is. */
  reason: string | null;
  /** GEMMs for which cuBLASLt offered no algorithm, run on calmoe's kernel instead (since the process started). */
  fallbacks: number;
}

export interface NativeBackendInfo {
  cudaCompiled: boolean;
  cudaArchitectures: string;
  cudaRuntimeVersion: number;
  cudaDriverVersion: number;
  gpus: NativeGpu[];
  cudaUnavailableReason: string;
  cpuThreads: number;
  simd: string;
  /** The CPU GEMM in use ('builtin-avx2', 'builtin-scalar', 'openblas'; CALMOE_GEMM=blas selects a linked BLAS). */
  gemm: string;
  blasAvailable: boolean;
  /**
   * Which GEMM runs the CUDA backend's `'tf32'` and `'bf16'` precisions (`'fp32'` always runs calmoe's
   * exact kernel): NVIDIA's cuBLASLt, found at run time (`CALMOE_CUBLASLT=/path/to/libcublasLt.so.13`
   * points at one, `CALMOE_CUBLASLT=off` turns it off), or calmoe's own tensor-core kernel, with the
   * reason. `null` in a build without CUDA.
   */
  cudaGemm: NativeCudaGemm | null;
  /** Device memory calmoe's CUDA buffers hold now (bytes; 0 without CUDA): models' engines while they train or predict. */
  cudaMemoryBytes: number;
  /** The most they held at once since the process started or `resetCudaMemoryPeak()` (bytes). */
  cudaMemoryPeakBytes: number;
}

export type NativeCalibKind = 'top-label' | 'classwise' | 'binary' | 'confidence';
export type NativeScoreKind = 'probabilities' | 'logits';

export interface NativeTiltedResult {
  robustLoss: number;
  tiltedErm: number;
  meanLoss: number;
  maxWeight: number;
  effectiveRows: number;
  weights?: Float32Array;
  coefficients?: Float32Array;
}

export interface NativeEqualMassArgs {
  kind: NativeCalibKind;
  bins: number;
  extras: boolean;
  device: NativeDevice;
  scores?: Float32Array;
  rows?: number;
  cols?: number;
  labels?: Int32Array;
  input?: NativeScoreKind;
  sumTolerance?: number;
  confidence?: Float32Array;
  correct?: Uint8Array;
}

export interface NativeTemperatureEval {
  weight: number;
  nll: number;
  d1: number;
  d2: number;
  rows: number;
}

export interface NativeTemperatureOptions {
  input: NativeScoreKind;
  sumTolerance: number;
  device: NativeDevice;
  rowStride?: number;
  weights?: Float32Array;
  name?: string;
}

export interface NativeMoeAuditArgs {
  rows: number;
  slots: number;
  experts?: number;
  classes?: number;
  routing: Float32Array;
  expertIds?: Int32Array;
  expertProbs?: Float32Array;
  mixture?: Float32Array;
  labels?: Int32Array;
  sumTolerance: number;
  device: NativeDevice;
  outputs: { top1?: boolean; maxWeight?: boolean; entropy?: boolean; disagreement?: boolean; loss?: boolean; regret?: boolean; ownProbs?: boolean };
}

export interface NativeMoeAuditRows {
  top1?: Int32Array;
  maxWeight?: Float32Array;
  entropy?: Float32Array;
  disagreement?: Float32Array;
  loss?: Float32Array;
  regret?: Float32Array;
  ownProbs?: Float32Array;
}

interface RowsOptions {
  input: NativeScoreKind;
  sumTolerance: number;
  device: NativeDevice;
  groups?: Int32Array;
  weights?: Float32Array;
}

interface VecOptions {
  device: NativeDevice;
  groups?: Int32Array;
  weights?: Float32Array;
}

export interface NativeMoEConfig {
  inputDim: number;
  classes: number;
  experts: number;
  expertHidden: number[];
  routerHidden: number[];
  activation: 'relu' | 'gelu';
  routing: 'soft' | 'topk' | 'hard';
  topK: number;
  routerTemperature: number;
  /** The CUDA engine's GEMM arithmetic (absent: 'tf32'); the CPU always computes in FP32. */
  precision?: 'tf32' | 'fp32' | 'bf16';
}

export interface NativeMoEFitOptions {
  epochs: number;
  batchSize: number;
  shuffle: boolean;
  seed: number;
  progressEvery: number;
  /** Epoch-end reports carry a copy of the parameters (early stopping, best checkpoints). */
  snapshotEpochs?: boolean;
  /** Every this many epochs the epoch-end report carries `checkpoint` (and `parameters`). */
  checkpointEvery?: number;
  /** Resume after `epoch` finished epochs with this optimiser state; `rng` is the shuffle RNG's state then. */
  resume?: NativeResumeState & { epoch: number };
  clipNorm: number;
  balanceLoss: number;
  balanceForm?: 'switch' | 'squared-mean';
  optimizer: { type: 'sgd' | 'adamw'; lr: number; weightDecay: number; momentum: number; nesterov: boolean; beta1: number; beta2: number; eps: number };
  schedule: { type: 'constant' | 'cosine'; warmupSteps: number; minLrRatio: number };
  objective: {
    type: 'erm' | 'robust' | 'robust-filtered'; eta: number; gradient: 'term' | 'through'; warmupEpochs: number;
    tauRegret: number; tauDisagreement: number; medianDisagreement: boolean; tiltLoss?: 'competitive' | 'top1';
  };
}

/** The optimiser's moments (empty before the first step; v only for AdamW), its step count and the shuffle RNG state. */
export interface NativeResumeState {
  m: Float32Array;
  v: Float32Array;
  steps: number;
  rng: BigUint64Array;
}

export interface NativeEpochLog {
  epoch: number;
  steps: number;
  loss: number;
  objective: number;
  accuracy: number;
  lr: number;
  seconds: number;
  examplesPerSecond: number;
  robustActive: boolean;
  valLoss?: number;
  valAccuracy?: number;
  valEce?: number;
}

export interface NativeBatchLog {
  epoch: number;
  batch: number;
  batches: number;
  step: number;
  objective: number;
  loss: number;
  accuracy: number;
  gradNorm: number;
  lr: number;
  filtered: number;
}

export type NativeProgress = (NativeEpochLog & { type: 'epoch' }) | (NativeBatchLog & { type: 'batch' });

export interface NativePrediction {
  probs: Float32Array;
  routing?: Float32Array;
  selected?: Int32Array;
  gates?: Float32Array;
  expertProbs?: Float32Array;
  expertLogits?: Float32Array;
  active: number;
}

interface PredictFlags {
  routing: boolean;
  selected: boolean;
  gates: boolean;
  expertProbs: boolean;
  /** Each active expert's logits (CPU engine only). */
  expertLogits?: boolean;
  device: NativeDevice;
}

export type NativeKsMethod = 'auto' | 'exact' | 'asymp';
export type NativeCorrection = 'none' | 'bh' | 'by' | 'bonferroni';

export interface NativeDriftReportOptions {
  method: NativeKsMethod;
  epsilon: number;
  correction: NativeCorrection;
  alpha: number;
}

export interface NativeDriftCompareOptions extends NativeDriftReportOptions {
  ks: boolean;
  bins: number;
  device: NativeDevice;
}

export interface NativeDriftReport {
  features: number;
  referenceRows: number;
  currentRows: number;
  histogram: boolean;
  statistic: Float64Array;
  pValue: Float64Array;
  adjustedPValue: Float64Array;
  psi: Float64Array;
  sign: Int8Array;
  drifted: Uint8Array;
  order: Int32Array;
  method: Array<'exact' | 'asymp' | 'auto'>;
  psiBins: number;
  psiEdges: Float32Array;
  psiReferenceCounts: Float64Array;
  psiCurrentCounts: Float64Array;
}

export interface NativeDriftMonitorConfig {
  features: number;
  bins: number;
  refinement: number;
  referenceRows: number;
  currentRows: number;
  chunks: number;
}

/** Every size and range limit of the core: calmoe/limits.h, one field per constant (kMaxX -> maxX). */
export interface NativeLimits {
  readonly maxElements: number;
  readonly maxSampleRows: number;
  readonly maxIds: number;
  readonly maxFitRows: number;
  readonly maxCalibrationBins: number;
  readonly maxCalibrationCells: number;
  readonly maxStateRows: number;
  readonly maxWeightedStateRows: number;
  readonly maxWeight: number;
  readonly maxDriftBins: number;
  readonly maxWidth: number;
  readonly maxExperts: number;
  readonly maxHiddenLayers: number;
  readonly maxParams: number;
  readonly maxBatchSize: number;
  readonly maxEpochs: number;
  readonly maxSteps: number;
  readonly maxEta: number;
  readonly maxInitStd: number;
  readonly maxMomentum: number;
  readonly maxHistory: number;
  readonly maxThreads: number;
}

export interface NativeAddon {
  abiVersion: number;
  /** The core's limits (calmoe/limits.h), frozen. */
  limits: NativeLimits;
  moeLayout(config: NativeMoEConfig): { total: number; tensors: Array<{ name: string; offset: number; shape: number[] }> };
  moeParamCount(config: NativeMoEConfig): number;
  moeInit(config: NativeMoEConfig, params: Float32Array, seed: number, init: 'default' | 'normal', std: number): void;
  moePredict(config: NativeMoEConfig, params: Float32Array, temps: Float32Array | undefined, x: Float32Array, rows: number, o: PredictFlags, async?: false): NativePrediction;
  moePredict(config: NativeMoEConfig, params: Float32Array, temps: Float32Array | undefined, x: Float32Array, rows: number, o: PredictFlags, async: true): Promise<NativePrediction>;
  moeFit(
    config: NativeMoEConfig, params: Float32Array, temps: Float32Array | undefined, x: Float32Array, y: Int32Array, rows: number,
    xVal: Float32Array | undefined, yVal: Int32Array | undefined, valRows: number, options: NativeMoEFitOptions,
    onProgress: (p: NativeProgress) => void, device: NativeDevice,
  ): { promise: Promise<{ epochs: NativeEpochLog[]; cancelled: boolean }>; cancel: () => void };
  backendInfo(): NativeBackendInfo;
  resetCudaMemoryPeak(): void;
  setThreads(n: number): void;
  getThreads(): number;
  calibStateNew(o: { kind: NativeCalibKind; bins: number; classes?: number; groups?: number; edges: string; extras: boolean; weighted?: boolean }): BigUint64Array;
  calibUpdateRows(state: BigUint64Array, scores: Float32Array, rows: number, cols: number, labels: Int32Array, o: RowsOptions, async?: false): void;
  calibUpdateRows(state: BigUint64Array, scores: Float32Array, rows: number, cols: number, labels: Int32Array, o: RowsOptions, async: true): Promise<void>;
  calibUpdateBinary(state: BigUint64Array, scores: Float32Array, labels: Int32Array, o: VecOptions, async?: false): void;
  calibUpdateBinary(state: BigUint64Array, scores: Float32Array, labels: Int32Array, o: VecOptions, async: true): Promise<void>;
  calibUpdateConfidence(state: BigUint64Array, conf: Float32Array, correct: Uint8Array, o: VecOptions, async?: false): void;
  calibUpdateConfidence(state: BigUint64Array, conf: Float32Array, correct: Uint8Array, o: VecOptions, async: true): Promise<void>;
  calibMerge(into: BigUint64Array, from: BigUint64Array): void;
  calibFinalize(state: BigUint64Array): NativeSummary;
  calibStateCheck(state: BigUint64Array): void;
  calibEqualMass(o: NativeEqualMassArgs, async?: false): NativeSummary;
  calibEqualMass(o: NativeEqualMassArgs, async: true): Promise<NativeSummary>;
  tiltedWeights(losses: Float32Array, eta: number, gradient: 'term' | 'through',
    o: { weights: boolean; coefficients: boolean; device: NativeDevice }, async?: false): NativeTiltedResult;
  tiltedWeights(losses: Float32Array, eta: number, gradient: 'term' | 'through',
    o: { weights: boolean; coefficients: boolean; device: NativeDevice }, async: true): Promise<NativeTiltedResult>;
  temperatureNll(scores: Float32Array, rows: number, cols: number, labels: Int32Array, temperature: number, o: NativeTemperatureOptions, async?: false): NativeTemperatureEval;
  temperatureNll(scores: Float32Array, rows: number, cols: number, labels: Int32Array, temperature: number, o: NativeTemperatureOptions, async: true): Promise<NativeTemperatureEval>;
  temperatureApply(scores: Float32Array, rows: number, cols: number, temperature: number, o: NativeTemperatureOptions, async?: false): Float32Array;
  temperatureApply(scores: Float32Array, rows: number, cols: number, temperature: number, o: NativeTemperatureOptions, async: true): Promise<Float32Array>;
  moeAuditRows(o: NativeMoeAuditArgs, async?: false): NativeMoeAuditRows;
  moeAuditRows(o: NativeMoeAuditArgs, async: true): Promise<NativeMoeAuditRows>;
  driftCompare(ref: Float32Array, refRows: number, cur: Float32Array, curRows: number, cols: number, o: NativeDriftCompareOptions, async?: false): NativeDriftReport;
  driftCompare(ref: Float32Array, refRows: number, cur: Float32Array, curRows: number, cols: number, o: NativeDriftCompareOptions, async: true): Promise<NativeDriftReport>;
  driftKsPValue(statistic: number, n1: number, n2: number, method: NativeKsMethod): { pValue: number; statistic: number; method: 'exact' | 'asymp' };
  driftAdjust(pValues: Float64Array, method: NativeCorrection): Float64Array;
  driftMonitorNew(ref: Float32Array, rows: number, cols: number, o: { bins: number; refinement: number; device: NativeDevice }, async?: false): BigUint64Array;
  driftMonitorNew(ref: Float32Array, rows: number, cols: number, o: { bins: number; refinement: number; device: NativeDevice }, async: true): Promise<BigUint64Array>;
  driftMonitorUpdate(state: BigUint64Array, cur: Float32Array, rows: number, cols: number, o: { device: NativeDevice }, async?: false): void;
  driftMonitorUpdate(state: BigUint64Array, cur: Float32Array, rows: number, cols: number, o: { device: NativeDevice }, async: true): Promise<void>;
  driftMonitorMerge(into: BigUint64Array, from: BigUint64Array): void;
  driftMonitorReset(state: BigUint64Array): void;
  driftMonitorConfig(state: BigUint64Array): NativeDriftMonitorConfig;
  driftMonitorReport(state: BigUint64Array, o: NativeDriftReportOptions): NativeDriftReport;
}

const EXPECTED_ABI = 1;

/** The package root: this file lives in src/ (tests) or dist/ (built package). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function candidates(): string[] {
  const list: string[] = [];
  if (process.env.CALMOE_ADDON_PATH) list.push(resolve(process.env.CALMOE_ADDON_PATH));
  list.push(join(packageRoot, 'build', 'Release', 'calmoe.node'), join(packageRoot, 'build', 'Debug', 'calmoe.node'));
  return list;
}

let cached: NativeAddon | undefined;

/** Loads the addon once; throws an Error with code CALMOE_ADDON_NOT_FOUND that says how to fix it. */
export function native(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`${path} (not found)`);
      continue;
    }
    let mod: NativeAddon;
    try {
      mod = require(path) as NativeAddon;
    } catch (err) {
      throw Object.assign(
        new Error(
          `calmoe: the native addon at ${path} failed to load: ${(err as Error).message}\n` +
            'It was probably built for another Node.js or platform. Rebuild it with `npm rebuild calmoe` ' +
            '(needs CMake >= 3.18 and a C++17 compiler; nvcc optional for CUDA).',
        ),
        { code: 'CALMOE_ADDON_NOT_FOUND', cause: err },
      );
    }
    if (mod.abiVersion !== EXPECTED_ABI) {
      throw Object.assign(
        new Error(`calmoe: the native addon at ${path} is version ${mod.abiVersion}, this package expects ${EXPECTED_ABI}. Rebuild it with \`npm rebuild calmoe\`.`),
        { code: 'CALMOE_ADDON_NOT_FOUND' },
      );
    }
    cached = mod;
    return mod;
  }
  throw Object.assign(
    new Error(
      'calmoe: the native addon is not built. Looked in:\n  ' + tried.join('\n  ') +
        '\nBuild it with `npm rebuild calmoe` (needs CMake >= 3.18 and a C++17 compiler; nvcc optional for CUDA), ' +
        'or `npx node-gyp rebuild` in the package directory for a CPU-only build. ' +
        'Set CALMOE_ADDON_PATH to use an addon built elsewhere.',
    ),
    { code: 'CALMOE_ADDON_NOT_FOUND' },
  );
}
