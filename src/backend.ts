/** What was built, what this machine offers, and the CPU thread count. */
import { native, type NativeBackendInfo } from './native.js';
import { reqInt } from './validate.js';

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
