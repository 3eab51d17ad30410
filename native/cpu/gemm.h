// Single-precision GEMM for the MoE expert layers: C = alpha * A B + beta * C with a fused epilogue
// (bias, activation, saved pre-activation, backward through an activation), optional row gathers
// fused into packing (X[idx] without a gathered copy), and a batch of independent GEMMs (one per
// expert) run as one parallel job.
//
// Builtin path (gemm.cpp, gemm_avx2.cpp; the default): BLIS-style packed panels, a 6x16 register
// tile, fixed KC blocking (A not transposed and with short rows is read in place instead of
// packed). Every output element is summed over k in the same order (one fused multiply-add chain
// per KC block, blocks added in k order) whatever the thread count, tiling or ISA: the AVX2 and
// the scalar kernels give the same bits, for 1 or N threads. Threads split the output into tiles;
// K is never split across threads. No allocation in steady state (per-thread panels grow once).
// BLAS path (built with CALMOE_WITH_BLAS; chosen with CALMOE_GEMM=blas or set_gemm_backend):
// cblas_sgemm on tiles of the output fixed by the shape, one single-threaded call per pool task
// (OpenBLAS is set to 1 thread, process-wide, on first use); gathered or unusual operands are copied
// to contiguous scratch first, epilogues run after. Its bits depend on the BLAS library, not on
// the thread count. It is opt-in: the builtin path measured as fast or faster on the MoE shapes,
// and a default that depends on what was installed at build time would change results.
#pragma once
#include <cstdint>

#include "core/gemm_order.h"

namespace calmoe::cpu {

// Logical M x K (for A) or K x N (for B) operand. Element (i, j) of the logical matrix is
// p[row(i) * ld + j], or with trans, p[row(j) * ld + i]; row(r) = rows ? rows[r] : r: a gather of
// storage rows fused into packing. Indices may repeat and come in any order.
struct GemmOperand {
  const float* p = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const int32_t* rows = nullptr;
};

// The activations and derivatives are core/activation.h's, the math every backend shares (the
// AVX2 epilogue repeats them lane by lane): gelu is the tanh approximation (PyTorch
// approximate='tanh'), 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as
// x * sigmoid(2u) with calmoe's exp; relu(x) = x > 0 ? x : 0 (NaN gives 0); relu'(x) = x > 0.
// gelu(-inf) is NaN (-inf * 0, as PyTorch's formula).
enum class Act : uint8_t { None, Relu, Gelu };

// Epilogue order, per element: v = alpha * sum_k A B + beta * C (C is not read when beta == 0;
// A and B are not read when alpha == 0 or K == 0); v += bias[j]; pre = v; v = act(v);
// v *= act'(dact_pre) (dact); C = v. C must not overlap A, B, bias, pre or dact_pre.
struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  GemmOperand a, b;
  float* c = nullptr;
  int64_t ldc = 0;                // >= N when M > 1
  float alpha = 1, beta = 0;
  const float* bias = nullptr;    // N values
  Act act = Act::None;
  float* pre = nullptr;           // M x N, ldpre (>= N when M > 1)
  int64_t ldpre = 0;
  const float* dact_pre = nullptr;  // M x N, ld_dact: the saved pre-activation of `dact`
  int64_t ld_dact = 0;
  Act dact = Act::None;
};

// Parallel over output tiles (the thread pool); inline when called from inside a pool task.
void sgemm(const GemmArgs& g);
// Independent GEMMs (e.g. one per expert, of different sizes) split into tiles and balanced over
// the pool in one parallel_for. The GEMMs must not write to each other's inputs or outputs.
void sgemm_batch(const GemmArgs* g, int64_t count);

// What sgemm runs now: "builtin-avx2", "builtin-scalar" or "openblas" ("blas" for another CBLAS).
const char* gemm_backend();
// Chooses the path, for tests and benchmarks. The default comes from env CALMOE_GEMM, read once:
// "blas" when this build has one, else (and for any other value) builtin. Names: "builtin" (AVX2
// when use_avx2()), "builtin-avx2", "builtin-scalar", "blas" (or "openblas"). Returns false,
// changing nothing, when that path is not available in this build or on this CPU. Not meant to be
// changed while GEMMs run on other threads.
bool set_gemm_backend(const char* name);
bool gemm_blas_available();  // built with a CBLAS (CMake CALMOE_BLAS=AUTO found one, or ON)

// ---- internal: shared by gemm.cpp and gemm_avx2.cpp ---------------------------------------------
namespace gemm_detail {

constexpr int kMR = 6;    // register tile rows (broadcasts of A)
constexpr int kNR = 16;   // register tile columns (two 8-float vectors of packed B): 12 accumulators
constexpr int64_t kKC = kGemmSumBlock;  // k block: fixes the summation order (core/gemm_order.h)

// The write-back of one register tile: (m <= kMR) x (n <= kNR) at c. `first`: the first k block
// (v = alpha * acc [+ beta * c]), else v = c + alpha * acc. `last`: apply the epilogue. The
// pointers are already offset to the tile's (i0, j0).
struct TileOut {
  float* c;
  int64_t ldc;
  int m, n;
  float alpha, beta;
  bool first, last;
  const float* bias;
  Act act;
  float* pre;
  int64_t ldpre;
  const float* dpre;
  int64_t lddpre;
  Act dact;
};

// Packed panels: rows i0..i0+m of A (k0..k0+kc) as ceil(m / kMR) slivers [k][kMR], columns
// j0..j0+n of B as ceil(n / kNR) slivers [k][kNR]; zero-padded. Slivers are a_sliver(kc) or
// b_sliver(kc) floats apart: 64 bytes more than their size, so that writing across slivers (one
// storage row at a time) does not hit a single L1 set (4 KB aliasing).
constexpr int64_t kSliverPad = 16;
inline int64_t a_sliver(int64_t kc) { return kc * kMR + kSliverPad; }
inline int64_t b_sliver(int64_t kc) { return kc * kNR + kSliverPad; }
void pack_a_scalar(const GemmOperand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* dst);
void pack_b_scalar(const GemmOperand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* dst);
void kernel_scalar(int64_t kc, const float* a, const float* b, const TileOut& o);
// Epilogue alone over an m x n block whose C already holds alpha A B + beta C (the BLAS path).
void epilogue_scalar(const TileOut& o);

namespace avx2 {  // gemm_avx2.cpp; call only when use_avx2()
void pack_a(const GemmOperand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* dst);
void pack_b(const GemmOperand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* dst);
void kernel(int64_t kc, const float* a, const float* b, const TileOut& o);
// The same with A read in place: a_rows[r] points at A(i0 + r, k0) (rows past m repeat a valid one).
void kernel_rows(int64_t kc, const float* const* a_rows, const float* b, const TileOut& o);
void epilogue(const TileOut& o);
}  // namespace avx2

}  // namespace gemm_detail
}  // namespace calmoe::cpu
