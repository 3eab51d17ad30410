// The tensor-core GEMMs of the CUDA engine on NVIDIA's cuBLASLt, opened at run time
// (cuda/cublaslt_loader.h). 'tf32' and 'bf16' precisions run here when the library is found and
// passes its self-check; 'fp32' (exact, the CPU's bits) always runs calmoe's own kernel
// (cuda/gemm.cuh), and so does every precision when cuBLASLt is missing or refused.
//
// Row-major calmoe GEMMs map onto cuBLASLt's column-major ones by transposition: C = op(A) op(B)
// (M x N, row-major) is C^T = op(B)^T op(A)^T (N x M, column-major), so the operands swap places
// and keep their storage; the bias (one value per column of C) is cuBLASLt's per-row bias of D.
//
// Determinism: cuBLASLt gives the same bits run to run for the same shapes, algorithm, card (and
// SM count) and library version (NVIDIA's documented reproducibility); each LtRunner owns its
// workspace (never shared by two streams) and caches the heuristic's algorithm per shape, so a
// training run asks for each shape once and then repeats the same algorithm. A different cuBLASLt
// version or card may give other last bits; 'fp32' is calmoe's when bits must not move.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/cublaslt_api.h"
#include "cuda/gemm.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {

// What this process found: the library, its version and where it came from, or why none is used.
struct LtInfo {
  bool usable = false;          // found, loaded and passed the self-check: TF32 / BF16 GEMMs run on it
  std::string path, origin;     // the file and the search step that found it
  std::size_t version = 0;      // cublasLtGetVersion()
  bool fake = false;            // tools/fake-cublaslt (emulated tests only)
  std::string reason;           // when not usable: why (not found, CALMOE_CUBLASLT=off, self-check failed, no GPU)
};

// Loads cuBLASLt and runs its self-check on the current device, once per process (thread-safe);
// later calls return the same answer. Without a usable GPU: not usable, with the reason.
const LtInfo& cublaslt_info();
// "13.1.0" for cublasLtGetVersion()'s 130100 (an empty string for 0: no library).
std::string cublaslt_version_string(std::size_t version);
// The library's description for backendInfo and the benchmark: "cublaslt 13.1.0 (path, origin)"
// or "calmoe (reason)".
std::string cublaslt_summary();

// A strided batch of `batch` row-major GEMMs: for b < batch,
//   C_b = alpha op(A_b) op(B_b) + beta C_b, then + bias_b (N values) and ReLU when asked,
// op(A_b) M x K (stored K x M with trans_a), op(B_b) K x N (stored N x K with trans_b); X_b = X +
// b * stride_x floats (a stride of 0: one operand shared by the whole batch).
struct LtGemm {
  int64_t M = 0, N = 0, K = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  bool trans_a = false;
  const float* b = nullptr;
  int64_t ldb = 0;
  bool trans_b = false;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1, beta = 0;
  const float* bias = nullptr;
  bool relu = false;
  int32_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0, stride_bias = 0;
};

// The GEMMs of one stream (one engine): its cuBLASLt workspace and its cache of matmul plans (a
// descriptor, layouts and the heuristic's algorithm per shape). Not thread-safe: one user at a time.
class LtRunner {
 public:
  LtRunner();  // cublaslt_info().usable must be true
  ~LtRunner();
  LtRunner(const LtRunner&) = delete;
  LtRunner& operator=(const LtRunner&) = delete;
  // Queues g on `stream` in math mode Tf32 or Bf16. False, with nothing queued, when cuBLASLt
  // offers no algorithm for it (the caller then runs calmoe's kernel: gemm_fallbacks() counts
  // these); a failed call throws calmoe::Error.
  bool run(const LtGemm& g, GemmMath math, cudaStream_t stream);
  std::size_t plans() const { return plans_.size(); }

 private:
  using Key = std::vector<int64_t>;
  struct Plan;
  Plan* plan(const Key& key, const LtGemm& g, GemmMath math);
  std::map<Key, Plan*> plans_;
  lt::Handle handle_ = nullptr;  // one per runner: nothing of cuBLASLt's is shared between engines' threads
  DeviceBuffer<unsigned char> workspace_;
};

// For the benchmark: the case of gemm_seconds (cuda/gemm.cuh; no row gathers: cuBLASLt has none)
// on cuBLASLt, timed the same way (best of `repeat` after a warm-up, seconds).
double lt_gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat);

// GEMMs that had to run on calmoe's kernel because cuBLASLt offered no algorithm for their shape,
// since the process started (backendInfo reports it: never a silent slowdown).
int64_t gemm_fallbacks();

}  // namespace calmoe::cuda
