// CUDA GEMM of the MoE engine: C = alpha * A B + beta * C with the epilogue of cpu/gemm.h (bias,
// activation, saved pre-activation, backward through an activation), row gathers on either operand
// fused into the operand loads, and grouped launches (one launch for every expert's GEMM, sizes
// read on the device, so no host synchronisation is needed to learn them).
//
// Semantics are exactly cpu::GemmArgs' (native/cpu/gemm.h): element (i, j) of a logical operand
// is p[row(i) * ld + j], or with trans p[row(j) * ld + i], row(r) = rows ? rows[r] : r; epilogue
// per element: v = alpha * sum_k A B + beta * C (C unread when beta == 0; A and B unread when
// alpha == 0 or K == 0); v += bias[j]; pre = v; v = act(v); v *= act'(dact_pre); C = v. C may be
// stored transposed (ct: a product whose result is wanted as its transpose, e.g. dW^T computed
// with the big operand on the side the kernel reads best).
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
#include <cstring>
#include <string>
#include <vector>

#include "calmoe/moe.h"
#include "core/hd.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {

enum class GemmAct : int32_t { None = 0, Relu = 1, Gelu = 2 };
enum class GemmMath : int32_t { Fp32 = 0, Tf32 = 1, Bf16 = 2 };

// Device pointers. trans and rows as cpu::GemmOperand. No implicit padding in these structs: they
// are copied to and within device memory whole, and compute-sanitizer's initcheck would flag
// padding bytes that no member assignment writes.
// tf32: every value the GEMM reads is already a TF32 value rounded as the TF32 kernels round
// (cvt.rna: nearest, ties away from zero; e.g. written by a producer that rounded it), so the
// mma.sync and wgmma kernels skip their rounding pass over the operand's tiles (the same bits:
// rounding is idempotent). Ignored by the other kernels and modes.
// A float rounded to TF32 on the host as the kernels round it (cvt.rna: to nearest, ties away from
// zero; the low 13 bits cleared): for producers of marked operands (a NaN's payload may change).
inline float tf32_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}

struct GemmOperand {
  const float* p = nullptr;
  int64_t ld = 0;
  const int32_t* rows = nullptr;
  int32_t trans = 0;
  int32_t tf32 = 0;
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
  int32_t ct = 0;        // C stored transposed: element (i, j) of C at c[j * ldc + i] (pre, dact_pre as usual)
  int32_t reserved = 0;
};
static_assert(sizeof(GemmOperand) == 32 && sizeof(GemmDesc) == 8 * 3 + 2 * 32 + 8 * 10, "no padding");

constexpr int64_t kGemmKC = 256;   // summation blocks: cpu::gemm_detail::kKC

// The operand form of a GEMM: bit 0 A transposed, bit 1 B transposed (kernels are specialised
// on it); kGemmFormAny: not known on the host, or mixed within a grouped launch.
constexpr int32_t kGemmFormAny = -1;
inline int32_t gemm_form_of(const GemmDesc& d) { return (d.a.trans ? 1 : 0) | (d.b.trans ? 2 : 0); }

// The output tile of one thread block: 64 x 64 (Fp32, SIMT), 128 x 128 (Tf32, Bf16: tensor
// cores) or 128 x 256 (the Wgmma256 TF32 kernel, on operand forms 2 and 3). Grouped launches number their
// blocks by the tiles of the shape that runs: plan with gemm_tile(math, form).
struct GemmTile {
  int32_t m = 128, n = 128;
};
// The shape every kernel of math mode m runs but Wgmma256.
CALMOE_HD GemmTile gemm_tile_of(GemmMath m) { return m == GemmMath::Fp32 ? GemmTile{64, 64} : GemmTile{128, 128}; }

// Thread blocks (output tiles) of one M x N GEMM: 0 when M or N is 0.
CALMOE_HD int64_t gemm_tiles(int64_t M, int64_t N, GemmTile t) {
  return (M > 0 && N > 0) ? ((M + t.m - 1) / t.m) * ((N + t.n - 1) / t.n) : 0;
}

// Which kernel runs Tf32: Registers (the default: wmma, operands prefetched through registers, one
// block per SM; it has run on an H200), Async1 / Async2 (wmma, a cp.async pipeline, launched for one
// or two resident blocks per SM), Mma (mma.sync and ldmatrix, 4 warps of 64 x 64, a cp.async
// pipeline, two blocks per SM), Wgmma (sm_90a: warpgroup wgmma for operand forms 2 and 3, B^T
// k-contiguous, the only B TF32 wgmma reads; A k-contiguous from shared memory (form 2) or
// transposed, through registers (form 3); Mma for the other forms) or Wgmma256 (as Wgmma, on
// 128 x 256 tiles, one block per SM, a k step's products in flight while the next is issued).
// Async and Mma need ~110 KB of shared memory per block, so sm_80 and sm_90 (other cards run
// Registers); Wgmma and Wgmma256 need an sm_90 card and this build's sm_90a code (else Mma).
// None but Registers has run on a GPU yet (emulated only). Process-wide; for tests and benchmarks
// until a GPU run picks the default (or CALMOE_CUDA_TF32_KERNEL=registers|async1|async2|mma|wgmma|
// wgmma256|auto for a whole process). gemm_tf32_kernel() says which runs on this device. Every one
// computes the same products in the same order (k groups of 8 into one FP32 accumulator per output,
// k ascending), so they are expected to agree bit for bit.
// Auto: chosen on the card at the first use (gemm_choice.cu): every kernel the card runs is checked
// against the register-staged one (the same bits, or it is never used) and timed on the GEMMs of a
// training step; the fastest that agrees runs from then on. gemm_tf32_kernel() returns the chosen
// kernel, never Auto; gemm_tf32_kernel_choice() says how it was chosen.
enum class GemmTf32Kernel : int32_t { Async1 = 0, Async2 = 1, Registers = 2, Mma = 3, Wgmma = 4, Wgmma256 = 5, Auto = 6 };
void gemm_set_tf32_kernel(GemmTf32Kernel k);
GemmTf32Kernel gemm_tf32_kernel();
// "registers", "async1", "async2", "mma", "wgmma", "wgmma256", "auto"
const char* gemm_tf32_kernel_name(GemmTf32Kernel k);
// The kernel a name (CALMOE_CUDA_TF32_KERNEL's values: gemm_tf32_kernel_name's) stands for; false
// for any other string.
bool gemm_tf32_kernel_parse(const char* name, GemmTf32Kernel* k);
// How the kernel that runs was chosen: "default", "CALMOE_CUDA_TF32_KERNEL=mma", the automatic
// choice's trials and times, or why a request could not be met (a card without the kernel, a name
// that is no kernel's). Resolves an Auto request first.
std::string gemm_tf32_kernel_choice();

// The automatic choice, for the chooser and its tests. One trial per kernel the card runs (the
// register-staged reference first): differing of `values` outputs of the self-check GEMMs had other
// bits than the reference's; seconds: the timed GEMMs' total (only when nothing differed). error:
// what a kernel threw instead (then never chosen).
struct GemmTf32Trial {
  GemmTf32Kernel kernel = GemmTf32Kernel::Registers;
  int64_t differing = 0, values = 0;
  double seconds = 0;
  std::string error;
};
// Runs the trials now with `select` switching the kernel that runs (left on the chosen one);
// perturb_reference (tests only) flips one bit of the reference, so that every other kernel differs
// in one value and must be refused. Returns the trials; *chosen: the fastest that agreed; *summary:
// the trials in a line.
std::vector<GemmTf32Trial> gemm_tf32_trials(void (*select)(GemmTf32Kernel), GemmTf32Kernel* chosen, std::string* summary,
                                            bool perturb_reference = false);
// Wgmma or Wgmma256: the kernels that read forms 2 and 3 (B^T k-contiguous) fastest
inline bool gemm_tf32_kernel_is_wgmma(GemmTf32Kernel k) { return k == GemmTf32Kernel::Wgmma || k == GemmTf32Kernel::Wgmma256; }

// The math mode that runs for a precision on the current device: the tensor-core modes need
// sm_80 or newer, older cards run Fp32. Plans and launches must use the same (effective) mode.
GemmMath gemm_math_of(MatmulPrecision p);
// The tile gemm_one and gemm_grouped run for a GEMM of operand form `form` (gemm_form_of; or
// kGemmFormAny) in math mode m on this device, with the current TF32 kernel. n_max: the widest N of
// the launch's GEMMs when the caller knows it (-1: not known); a launch no wider than 128 runs
// 128 x 128 tiles with Wgmma256 too (of a 256-wide tile, N = 100 would fill 39%).
GemmTile gemm_tile(GemmMath m, int32_t form, int64_t n_max = -1);
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
int64_t gemm_k_splits(int64_t M, int64_t N, int64_t K, GemmMath math, int32_t form = kGemmFormAny);

// One GEMM described on the host (its pointers are device pointers): one launch on `stream`, or
// with a workspace and gemm_k_splits > 1, three (plan, partial products, fold).
// math must be Fp32 unless gemm_tensor_cores() (a tensor-core launch elsewhere traps).
void gemm_one(const GemmDesc& d, GemmMath math, cudaStream_t stream, GemmWorkspace* ws = nullptr);

// tile_start[0..count] = exclusive prefix of gemm_tiles(M, N, tile) over d_desc (all on the
// device): one tiny kernel, so descriptors written by an earlier kernel need no host round trip.
void gemm_plan(const GemmDesc* d_desc, int count, GemmTile tile, int64_t* d_tile_start, cudaStream_t stream);

// `count` GEMMs in one launch of max_tiles blocks (max_tiles >= tile_start[count], planned with
// `tile` = gemm_tile(math, form, n_max); the blocks past it return at once). Each block finds its
// GEMM by a binary search over tile_start. `form`: every GEMM's gemm_form_of, when the caller knows
// it (the async TF32 kernels need it; with kGemmFormAny the register-staged one runs). `tile` must
// be the one the plan numbered its blocks by (it picks the wgmma tile shape).
void gemm_grouped(const GemmDesc* d_desc, const int64_t* d_tile_start, int count, int64_t max_tiles, GemmMath math,
                  cudaStream_t stream, int32_t form, GemmTile tile);

// For tests and benchmarks: descriptors in host memory (device pointers inside): uploads them,
// plans, runs one grouped launch and synchronises.
void gemm_batch_sync(const GemmDesc* host_desc, int count, GemmMath math);

// For the benchmark: one M x N x K GEMM (A transposed, B transposed, A's rows gathered through a
// permutation) on operands it allocates, timed with CUDA events; the best of `repeat` runs after a
// warm-up, in seconds.
struct GemmBenchCase {
  int64_t M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false, gather = false;
  bool tf32 = false;  // both operands marked GemmOperand::tf32 (the values are small integers: exact)
  bool ct = false;    // C stored transposed (GemmDesc::ct)
};
double gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat);

}  // namespace calmoe::cuda
