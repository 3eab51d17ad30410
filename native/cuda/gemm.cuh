// CUDA GEMM of the MoE engine: C = alpha * A B + beta * C with the epilogue of cpu/gemm.h (bias,
// activation, saved pre-activation, backward through an activation), row gathers on either operand
// fused into the operand loads, and grouped launches (one launch for every expert's GEMM, sizes
// read on the device, so no host synchronisation is needed to learn them).
//
// Semantics are exactly cpu::GemmArgs' (native/cpu/gemm.h): element (i, j) of a logical operand
// is p[row(i) * ld + j], or with trans p[row(j) * ld + i], row(r) = rows ? rows[r] : r; epilogue
// per element: v = alpha * sum_k A B + beta * C (C unread when beta == 0; A and B unread when
// alpha == 0 or K == 0); v += bias[j]; pre = v; v = act(v); v *= act'(dact_pre); C = v.
//
// Math modes (the engine's MatmulPrecision, calmoe/moe.h):
//   Tf32 (the default precision, sm_80+): the tiles through tensor cores (nvcuda::wmma m16n16k8,
//     precision::tf32, FP32 accumulation); deterministic run to run, not equal to Fp32.
//   Fp32 (exact): a shared-memory tiled SIMT kernel. Every output element is one thread's fused
//     multiply-add chain over k in increasing order within blocks of kGemmKC = 256, blocks added in
//     k order (v = alpha*acc [+ beta*C] for the first, v = fma(alpha, acc, v) after) -- the
//     summation order of the CPU builtin GEMM, so both backends give the same bits for the same
//     operands (and run to run: no atomics, no split-K).
//   Bf16 (sm_80+): tensor cores with inputs rounded to nearest-even BF16 (m16n16k16), FP32
//     accumulation; deterministic run to run.
// On cards below sm_80 the tensor-core modes run as Fp32.
// This header is plain C++ outside the __CUDACC__ sections, so host tests can include it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "calmoe/moe.h"
#include "core/gemm_order.h"
#include "core/hd.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {

enum class GemmAct : int32_t { None = 0, Relu = 1, Gelu = 2 };
enum class GemmMath : int32_t { Fp32 = 0, Tf32 = 1, Bf16 = 2 };

// Device pointers. trans and rows as cpu::GemmOperand. No implicit padding in these structs: they
// are copied to and within device memory whole, and compute-sanitizer's initcheck would flag
// padding bytes that no member assignment writes (hence the reserved members, always 0).
struct GemmOperand {
  const float* p = nullptr;
  int64_t ld = 0;
  const int32_t* rows = nullptr;
  int32_t trans = 0;
  int32_t reserved = 0;
};

struct GemmDesc {
  int64_t M = 0, N = 0, K = 0;
  GemmOperand a, b;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1, beta = 0;
  const float* bias = nullptr;       // N values
  float* pre = nullptr;              // M x N, ldpre
  int64_t ldpre = 0;
  const float* dact_pre = nullptr;   // M x N, ld_dact
  int64_t ld_dact = 0;
  GemmAct act = GemmAct::None;
  GemmAct dact = GemmAct::None;
  int32_t reserved[2] = {0, 0};
};
static_assert(sizeof(GemmOperand) == 32 && sizeof(GemmDesc) == 8 * 3 + 2 * 32 + 8 * 10, "no padding");

constexpr int64_t kGemmKC = kGemmSumBlock;  // summation blocks, as the CPU's (core/gemm_order.h)

// The output tile of one thread block: 64 x 64 (Fp32, SIMT) or 128 x 128 (Tf32, Bf16: tensor
// cores). Grouped launches number their blocks by the tiles of this shape: plan with gemm_tile_of.
struct GemmTile {
  int32_t m = 128, n = 128;
};
CALMOE_HD GemmTile gemm_tile_of(GemmMath m) { return m == GemmMath::Fp32 ? GemmTile{64, 64} : GemmTile{128, 128}; }

// Thread blocks (output tiles) of one M x N GEMM: 0 when M or N is 0.
CALMOE_HD int64_t gemm_tiles(int64_t M, int64_t N, GemmTile t) {
  return (M > 0 && N > 0) ? ((M + t.m - 1) / t.m) * ((N + t.n - 1) / t.n) : 0;
}

// The math mode that runs for a precision on the current device: the tensor-core modes need
// sm_80 or newer, older cards run Fp32. Plans and launches must use the same (effective) mode.
GemmMath gemm_math_of(MatmulPrecision p);
bool gemm_tensor_cores();                // the current device runs Tf32 and Bf16
const char* gemm_math_name(GemmMath m);  // "fp32", "tf32", "bf16"

// Split-K, for GEMMs too small in M x N to fill the card but long in K (the router's dW: 1024 x 16
// over a batch of 16384 rows is 8 tiles): one partial product per summation block of kGemmKC k
// (one grouped launch over the blocks), then a fold in block order with the epilogue,
// v = alpha acc_0 (+ beta C), v = fma(alpha, acc_b, v): the summation order of the unsplit Fp32
// kernel, so Fp32 keeps its bits (and the CPU's); Tf32 and Bf16 stay deterministic run to run (their
// unsplit kernels keep one accumulator over all k, so their bits differ from the split ones). The
// caller owns the workspace, one per stream (it grows on demand).
struct GemmWorkspace {
  DeviceBuffer<float> partial;  // blocks x M x N
  DeviceBuffer<GemmDesc> descs;
  DeviceBuffer<int64_t> tile_start;
};
// The summation blocks gemm_one splits an M x N x K GEMM into when given a workspace (1: none):
// every block of K when the unsplit GEMM would keep fewer than half the SMs busy and K spans at
// least two blocks (and the partials fit in 32 M floats).
int64_t gemm_k_splits(int64_t M, int64_t N, int64_t K, GemmMath math);

// One GEMM described on the host (its pointers are device pointers): one launch on `stream`, or
// with a workspace and gemm_k_splits > 1, three (plan, partial products, fold).
// math must be Fp32 unless gemm_tensor_cores() (a tensor-core launch elsewhere traps).
void gemm_one(const GemmDesc& d, GemmMath math, cudaStream_t stream, GemmWorkspace* ws = nullptr);

// tile_start[0..count] = exclusive prefix of gemm_tiles(M, N, tile) over d_desc (all on the
// device): one tiny kernel, so descriptors written by an earlier kernel need no host round trip.
void gemm_plan(const GemmDesc* d_desc, int count, GemmTile tile, int64_t* d_tile_start, cudaStream_t stream);

// `count` GEMMs in one launch of max_tiles blocks (max_tiles >= tile_start[count], planned with
// gemm_tile_of(math); the blocks past it return at once). Each block finds its GEMM by a binary
// search over tile_start; the GEMMs may differ in shape and operand form.
void gemm_grouped(const GemmDesc* d_desc, const int64_t* d_tile_start, int count, int64_t max_tiles, GemmMath math,
                  cudaStream_t stream);

// For tests and benchmarks: descriptors in host memory (device pointers inside): uploads them,
// plans, runs one grouped launch and synchronises.
void gemm_batch_sync(const GemmDesc* host_desc, int count, GemmMath math);

// For the benchmark: one M x N x K GEMM (A transposed, B transposed, A's rows gathered through a
// permutation) on operands it allocates, timed with CUDA events; the best of `repeat` runs after a
// warm-up, in seconds.
struct GemmBenchCase {
  int64_t M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false, gather = false;
};
double gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat);
// The operands of a benchmark case (shared with cuBLASLt's timing, cuda/cublaslt_gemm.cuh): A and
// B as stored (row-major, lda / ldb), small integers (exact in BF16 and TF32: the timing does not
// depend on values, and the products stay finite), uploaded; out: M x N.
struct GemmBenchOperands {
  DeviceBuffer<float> a, b, out;
  int64_t lda = 0, ldb = 0;
};
void gemm_bench_operands(const GemmBenchCase& c, GemmBenchOperands* o);

}  // namespace calmoe::cuda
