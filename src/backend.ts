/** What was built, what this machine offers, and the CPU thread count. */
import { native, type NativeBackendInfo } from './native.js';
import { reqChoice, reqInt } from './validate.js';

export type BackendInfo = NativeBackendInfo;

/**
 * Reports the backends: whether CUDA was compiled in (and for which architectures), the GPUs
 * found (name, memory, compute capability) or the reason none is used, CPU threads and SIMD level.
 *
 * @example
 * const info = backendInfo();
 * console.log(info.gpus.length ? info.gpus[0].name : `CPU only: ${info.cudaUnavailableReason}`);
 */
export function backendInfo(): BackendInfo {
  return native().backendInfo();
}

/** Sets the number of CPU threads the CPU backend uses (default: all cores, or CALMOE_NUM_THREADS). */
export function setThreads(threads: number): void {
  native().setThreads(reqInt(threads, 'threads', 1, 4096));
}

export function getThreads(): number {
  return native().getThreads();
}

/** The TF32 GEMM kernels of the CUDA backend (`backendInfo().cudaTf32Kernel`), and `'auto'`. */
export const CUDA_TF32_KERNELS = ['registers', 'async1', 'async2', 'mma', 'wgmma', 'wgmma256', 'auto'] as const;
export type CudaTf32Kernel = (typeof CUDA_TF32_KERNELS)[number];

/**
 * Chooses the TF32 GEMM kernel the CUDA backend runs from now on, for the whole process (as the
 * CALMOE_CUDA_TF32_KERNEL environment variable does at start-up). `'registers'` is the default and
 * the only one that has run on a GPU so far; `'auto'` checks, at the next TF32 GEMM, every kernel
 * the card runs against it (the same bits, or it is never used) and keeps the fastest on a training
 * step's GEMMs. A card that cannot run the kernel asked for runs a fallback. The kernels are built to
 * compute the same bits (so far checked on the CUDA emulator; `'auto'` checks it on the card), so
 * models already created train on unchanged. No effect without CUDA.
 *
 * @example
 * setCudaTf32Kernel('auto');
 * const { cudaTf32Kernel, cudaTf32KernelChoice } = backendInfo(); // chooses now, on a GPU
 * console.log(cudaTf32Kernel, cudaTf32KernelChoice);
 */
export function setCudaTf32Kernel(kernel: CudaTf32Kernel): void {
  native().setCudaTf32Kernel(reqChoice(kernel, 'kernel', CUDA_TF32_KERNELS));
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
