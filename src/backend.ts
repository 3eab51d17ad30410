/** What was built, what this machine offers, and the CPU thread count. */
import { native, type NativeBackendInfo, type NativeCudaGemm } from './native.js';
import { reqInt } from './validate.js';
import { limits } from './limits.js';

export type BackendInfo = NativeBackendInfo;
/** `backendInfo().cudaGemm`: which GEMM runs the CUDA backend's TF32 and BF16 precisions. */
export type CudaGemmInfo = NativeCudaGemm;

/**
 * Reports the backends: whether CUDA was compiled in (and for which architectures), the GPUs
 * found (name, memory, compute capability) or the reason none is used, CPU threads and SIMD level,
 * and which GEMM the GPU runs (`cudaGemm`: cuBLASLt with its path and version, or calmoe's own kernel
 * and why cuBLASLt is not used).
 *
 * @example
 * const info = backendInfo();
 * console.log(info.gpus.length ? info.gpus[0].name : `CPU only: ${info.cudaUnavailableReason}`);
 * if (info.cudaGemm) console.log(info.cudaGemm.library === 'cublaslt' ? `cuBLASLt ${info.cudaGemm.version}` : info.cudaGemm.reason);
 */
export function backendInfo(): BackendInfo {
  return native().backendInfo();
}

/** Sets the number of CPU threads the CPU backend uses (default: all cores, or CALMOE_NUM_THREADS). */
export function setThreads(threads: number): void {
  native().setThreads(reqInt(threads, 'threads', 1, limits().maxThreads));
}

export function getThreads(): number {
  return native().getThreads();
}

/**
 * Restarts `backendInfo().cudaMemoryPeakBytes` from what calmoe holds on the GPU now, so that the
 * peak of the work that follows can be read (as `torch.cuda.reset_peak_memory_stats()`).
 *
 * @example
 * resetCudaMemoryPeak();
 * // ... model.fit(x, y, { device: 'cuda' }) ...
 * console.log(`${(backendInfo().cudaMemoryPeakBytes / 2 ** 30).toFixed(2)} GiB at the peak`);
 */
export function resetCudaMemoryPeak(): void {
  native().resetCudaMemoryPeak();
}
