// Backend selection and the report of what was built and what can run here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace calmoe {

enum class Device : uint8_t { Cpu = 0, Cuda = 1 };
enum class DeviceRequest : uint8_t { Auto = 0, Cpu = 1, Cuda = 2 };

struct GpuInfo {
  int index = 0;
  std::string name;
  std::size_t total_memory = 0;  // bytes
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
};

struct BackendInfo {
  bool cuda_compiled = false;
  std::string cuda_architectures;   // what the kernels were compiled for
  int cuda_runtime_version = 0;     // e.g. 13000
  int cuda_driver_version = 0;      // 0 when no driver is installed
  std::vector<GpuInfo> gpus;
  std::string cuda_unavailable_reason;  // empty when a GPU is usable
  int cpu_threads = 1;
  std::string simd;                 // "avx2+fma" or "scalar"
  std::string gemm;                 // the CPU GEMM in use: "builtin-avx2", "builtin-scalar", "openblas", "blas"
  bool blas_available = false;      // a BLAS was linked at build time (CALMOE_GEMM=blas selects it)
  // Which GEMM runs the CUDA backend's 'tf32' and 'bf16' precisions: "cublaslt" (NVIDIA's cuBLASLt,
  // opened at run time and self-checked) or "calmoe" (calmoe's own tensor-core kernel, with the
  // reason cuBLASLt is not used); "fp32" always runs calmoe's exact kernel. Empty without CUDA.
  std::string cuda_gemm;
  std::string cuda_gemm_library;          // the cuBLASLt file found (also when it was refused after loading)
  std::string cuda_gemm_library_origin;   // the search step that found it (CALMOE_CUBLASLT, system loader, VIRTUAL_ENV, ...)
  std::string cuda_gemm_library_version;  // "13.1.0"
  std::string cuda_gemm_reason;           // why cuBLASLt is not used; empty when it is
  int64_t cuda_gemm_fallbacks = 0;        // GEMMs cuBLASLt had no algorithm for, run on calmoe's kernel instead
  // device memory that calmoe's CUDA buffers hold now, and the most they held at once since the
  // process started or reset_cuda_memory_peak (bytes; 0 without CUDA)
  std::size_t cuda_memory_bytes = 0, cuda_memory_peak_bytes = 0;
};

BackendInfo backend_info();

// 'auto' picks CUDA when a usable GPU is present, else the CPU. 'cuda' without a usable GPU
// throws ErrorKind::Unavailable with the reason: never a silent fallback.
Device resolve_device(DeviceRequest request);

// Restarts BackendInfo's cuda_memory_peak_bytes from what calmoe holds now.
void reset_cuda_memory_peak();

// CPU worker threads used by the CPU backend (default: hardware concurrency, or CALMOE_NUM_THREADS).
int cpu_threads();
void set_cpu_threads(int n);

// memcpy on the CPU worker threads (large copies are bound by memory bandwidth, which one thread
// does not reach). The ranges must not overlap.
void host_copy(void* dst, const void* src, std::size_t bytes);

// Whether training (moe_fit) runs with subnormals flushed to zero (FTZ/DAZ; native/core/float_mode.h
// says why the math allows it). Default on; the environment variable CALMOE_DENORMALS=keep, or
// set_flush_denormals(false), keeps IEEE subnormals (slower once optimiser state decays).
bool flush_denormals();
void set_flush_denormals(bool on);

}  // namespace calmoe
