/**
 * calmoe: calibrated Mixture-of-Experts classifiers for Node.js, on native CPU and CUDA kernels.
 *
 * @example
 * import { metrics, losses, backendInfo } from 'calmoe';
 * const report = await metrics.calibration(probs, labels, { bins: 15 });
 */
export * as metrics from './metrics/index.js';
export * as losses from './losses/index.js';
export { MoEClassifier } from './moe/index.js';
export type * from './moe/index.js';
export * as calibrate from './calibrate/index.js';
export * as audit from './audit/index.js';
export * as report from './report/index.js';
export * as drift from './drift/index.js';
export * as io from './io/index.js';
export { backendInfo, setThreads, getThreads, resetCudaMemoryPeak, type BackendInfo, type CudaGemmInfo } from './backend.js';
export { matrix, type Matrix, type MatrixInput, type LabelsInput, type ClassLabelsInput, type IntegerArray, type VectorInput, type Device } from './validate.js';
export { VERSION } from './version.js';
export type { ErrorCode } from './errors.js';
