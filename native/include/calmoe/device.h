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
  // the TF32 GEMM kernel the CUDA backend runs: "registers", "async1", "async2", "mma", "wgmma" or
  // "wgmma256" (CALMOE_CUDA_TF32_KERNEL asks for one, or "auto" for the fastest that agrees with
  // "registers" on this card; a card without the one asked for runs a fallback); empty without a GPU
  std::string cuda_tf32_kernel;
  // how it was chosen: "default", "CALMOE_CUDA_TF32_KERNEL=mma", the automatic choice's trials and
  // times, or why a request was not met; empty without a GPU
  std::string cuda_tf32_kernel_choice;
  // device memory that calmoe's CUDA buffers hold now, and the most they held at once since the
  // process started or reset_cuda_memory_peak (bytes; 0 without CUDA)
  std::size_t cuda_memory_bytes = 0, cuda_memory_peak_bytes = 0;
};

BackendInfo backend_info();

// 'auto' picks CUDA when a usable GPU is present, else the CPU. 'cuda' without a usable GPU
// throws ErrorKind::Unavailable with the reason: never a silent fallback.
Device resolve_device(DeviceRequest request);

// The TF32 GEMM kernel the CUDA backend runs from now on, by name: "registers", "async1", "async2",
// "mma", "wgmma", "wgmma256" or "auto" (as CALMOE_CUDA_TF32_KERNEL; a card without it runs a
// fallback). ErrorKind::Range for any other name. Process-wide; no effect in a build without CUDA.
void set_cuda_tf32_kernel(const std::string& name);

// Restarts BackendInfo's cuda_memory_peak_bytes from what calmoe holds now.
void reset_cuda_memory_peak();

// CPU worker threads used by the CPU backend (default: hardware concurrency, or CALMOE_NUM_THREADS).
int cpu_threads();
void set_cpu_threads(int n);

// memcpy on the CPU worker threads (large copies are bound by memory bandwidth, which one thread
// does not reach). The ranges must not overlap.
void host_copy(void* dst, const void* src, std::size_t bytes);

}  // namespace calmoe
