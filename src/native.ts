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
  meanConfidence: Float64Array;
  accuracy: Float64Array;
}

export interface NativeGroupSummary {
  rows: number;
  accuracy: number;
  ece: number;
  mce: number;
  rmsce: number;
  bins: NativeBins;
}

export interface NativeSummary {
  rows: number;
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

export interface NativeBackendInfo {
  cudaCompiled: boolean;
  cudaArchitectures: string;
  cudaRuntimeVersion: number;
  cudaDriverVersion: number;
  gpus: NativeGpu[];
  cudaUnavailableReason: string;
  cpuThreads: number;
  simd: string;
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

interface RowsOptions {
  input: NativeScoreKind;
  sumTolerance: number;
  device: NativeDevice;
  groups?: Int32Array;
}

interface VecOptions {
  device: NativeDevice;
  groups?: Int32Array;
}

export interface NativeAddon {
  abiVersion: number;
  backendInfo(): NativeBackendInfo;
  setThreads(n: number): void;
  getThreads(): number;
  calibStateNew(o: { kind: NativeCalibKind; bins: number; classes?: number; groups?: number; edges: string; extras: boolean }): BigUint64Array;
  calibUpdateRows(state: BigUint64Array, scores: Float32Array, rows: number, cols: number, labels: Int32Array, o: RowsOptions, async?: false): void;
  calibUpdateRows(state: BigUint64Array, scores: Float32Array, rows: number, cols: number, labels: Int32Array, o: RowsOptions, async: true): Promise<void>;
  calibUpdateBinary(state: BigUint64Array, scores: Float32Array, labels: Int32Array, o: VecOptions, async?: false): void;
  calibUpdateBinary(state: BigUint64Array, scores: Float32Array, labels: Int32Array, o: VecOptions, async: true): Promise<void>;
  calibUpdateConfidence(state: BigUint64Array, conf: Float32Array, correct: Uint8Array, o: VecOptions, async?: false): void;
  calibUpdateConfidence(state: BigUint64Array, conf: Float32Array, correct: Uint8Array, o: VecOptions, async: true): Promise<void>;
  calibMerge(into: BigUint64Array, from: BigUint64Array): void;
  calibFinalize(state: BigUint64Array): NativeSummary;
  calibEqualMass(o: NativeEqualMassArgs, async?: false): NativeSummary;
  calibEqualMass(o: NativeEqualMassArgs, async: true): Promise<NativeSummary>;
  tiltedWeights(losses: Float32Array, eta: number, gradient: 'term' | 'through',
    o: { weights: boolean; coefficients: boolean; device: NativeDevice }, async?: false): NativeTiltedResult;
  tiltedWeights(losses: Float32Array, eta: number, gradient: 'term' | 'through',
    o: { weights: boolean; coefficients: boolean; device: NativeDevice }, async: true): Promise<NativeTiltedResult>;
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
