#include <string>

#include "calmoe/device.h"
#include "calmoe/error.h"
#include "core/cuda_probe.h"
#if CALMOE_WITH_CUDA
#include "calmoe_build_config.h"
#include "cuda/cublaslt_gemm.cuh"
#include "cuda/runtime.cuh"
#endif
#include "cpu/gemm.h"
#include "cpu/simd.h"

namespace calmoe {

BackendInfo backend_info() {
  BackendInfo info;
  info.cpu_threads = cpu_threads();
  info.simd = cpu::simd_level();
  info.gemm = cpu::gemm_backend();
  info.blas_available = cpu::gemm_blas_available();
#if CALMOE_WITH_CUDA
  info.cuda_compiled = true;
  info.cuda_architectures = CALMOE_CUDA_ARCHS;
  const cuda::Probe& p = cuda::probe();
  info.cuda_runtime_version = p.runtime_version;
  info.cuda_driver_version = p.driver_version;
  info.gpus = p.gpus;
  info.cuda_unavailable_reason = p.reason;
  {
    const cuda::LtInfo& lt = cuda::cublaslt_info();  // loads and checks cuBLASLt on first use
    info.cuda_gemm = lt.usable ? "cublaslt" : "calmoe";
    info.cuda_gemm_library = lt.path;
    info.cuda_gemm_library_origin = lt.origin;
    info.cuda_gemm_library_version = cuda::cublaslt_version_string(lt.version);
    info.cuda_gemm_reason = lt.reason;
    info.cuda_gemm_fallbacks = cuda::gemm_fallbacks();
  }
  const cuda::DeviceMemoryStats memory = cuda::device_memory_stats();
  info.cuda_memory_bytes = memory.live;
  info.cuda_memory_peak_bytes = memory.peak;
#else
  info.cuda_unavailable_reason =
      "calmoe was built without the CUDA backend (nvcc was not found at build time, or CALMOE_CUDA=OFF)";
#endif
  return info;
}

void reset_cuda_memory_peak() {
#if CALMOE_WITH_CUDA
  cuda::reset_device_memory_peak();
#endif
}

Device resolve_device(DeviceRequest request) {
  if (request == DeviceRequest::Cpu) return Device::Cpu;
#if CALMOE_WITH_CUDA
  const cuda::Probe& p = cuda::probe();
  const bool usable = p.reason.empty() && !p.gpus.empty();
#else
  const bool usable = false;
#endif
  if (usable) return Device::Cuda;
  if (request == DeviceRequest::Auto) return Device::Cpu;
  throw Error(ErrorKind::Unavailable,
              "device 'cuda' was requested but no GPU is usable: " + backend_info().cuda_unavailable_reason,
              "CALMOE_CUDA_UNAVAILABLE");
}

}  // namespace calmoe
