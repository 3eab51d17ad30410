// CUDA GEMM (see gemm.cuh for the semantics and the summation order).
//
// Fp32 (exact, SIMT): a block of 256 threads owns a 64 x 64 output tile and walks k in steps of
// kBK = 16. Each step stages A(m0.., k0..) as As[k][m] and B(k0.., n0..) as Bs[k][n] in shared
// memory (gathered rows and transposes resolved in the loads; the load order follows the storage
// order of the operand, so global reads are contiguous either way; every staged element is
// written, out-of-range ones as 0, so no uninitialised shared memory is read). Thread (tx, ty) =
// (tid % 16, tid / 16) owns the 4 x 4 outputs (4 ty + i, 4 tx + j), reads its 4 values of A and of
// B per k as one 16-byte shared load each, and runs one fma chain per output over exactly the
// valid k (no padded k enters a chain, so zeros keep their sign as on the CPU).
// Tf32 and Bf16 (tensor cores, sm_80+): a block of 256 threads (8 warps as 2 x 4) owns a 128 x 128
// tile; warp (wm, wn) accumulates rows 64 wm.. and columns 32 wn.. as 4 x 2 wmma fragments in
// FP32. k advances in steps of 32 staged in shared memory (Bf16: converted to BF16 while stored);
// the next step's global loads are issued into registers before the current step's products, so
// memory latency overlaps the tensor cores. The accumulators then go through shared memory, half
// the tile at a time, to an element-wise epilogue shared with Fp32 (coalesced stores). Measured on
// an H200: 27 TFLOP/s TF32 (one block per SM, latency-bound); the default TF32 kernel until one of
// the others below (tca: wmma through a cp.async pipeline; tcm: mma.sync) has run on a GPU.
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "core/activation.h"
#include "cuda/gemm.cuh"
#include "cuda/mma_tf32.cuh"
#include "cuda/wgmma_tf32.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMinBlocks = 2;  // resident blocks per SM the register budget must allow (<= 128 registers)
constexpr int kBM = 64, kBN = 64, kBK = 16;
constexpr int kPad = 4;          // row padding of the staged tiles (fewer bank conflicts; keeps wmma's 32-byte alignment)
constexpr int kTM = 4, kTN = 4;  // outputs per thread
static_assert(kBM == 16 * kTM && kBN == 16 * kTN, "16 x 16 threads of kTM x kTN outputs");
static_assert(kGemmKC % kBK == 0, "summation blocks are whole k steps");

struct __align__(32) Tiles {
  float a[kBK][kBM + kPad];
  float b[kBK][kBN + kPad];
};

__device__ __forceinline__ int64_t storage_row(const GemmOperand& o, int64_t r) { return o.rows ? int64_t(o.rows[r]) : r; }

// Output tile t of d, tiles of kTM x kTN numbered row by row: its first row and column, and the k
// extent that enters the products (none when alpha == 0: A and B are then not read).
struct TileOrigin {
  int64_t m0, n0, K;
};
template <int kTM, int kTN>
__device__ __forceinline__ TileOrigin tile_origin(const GemmDesc& d, int64_t t) {
  const int64_t tiles_n = (d.N + kTN - 1) / kTN;
  return {t / tiles_n * kTM, t % tiles_n * kTN, d.alpha == 0.0f ? 0 : d.K};
}

// Stages A(m0 + i, k0 + k) into t.a[k][i] and B(k0 + k, n0 + j) into t.b[k][j] (0 outside).
__device__ __forceinline__ void load_tiles(const GemmDesc& d, int64_t m0, int64_t n0, int64_t k0, int64_t K, Tiles& t) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int q = 0; q < kBM * kBK / kThreads; ++q) {
    const int e = tid + q * kThreads;
    int i, k;
    if (d.a.trans) { i = e % kBM; k = e / kBM; }  // storage rows run along k: read along m
    else { k = e % kBK; i = e / kBK; }
    const int64_t gi = m0 + i, gk = k0 + k;
    float v = 0.0f;
    if (gi < d.M && gk < K) v = d.a.trans ? d.a.p[storage_row(d.a, gk) * d.a.ld + gi] : d.a.p[storage_row(d.a, gi) * d.a.ld + gk];
    t.a[k][i] = v;
  }
#pragma unroll
  for (int q = 0; q < kBN * kBK / kThreads; ++q) {
    const int e = tid + q * kThreads;
    int j, k;
    if (d.b.trans) { k = e % kBK; j = e / kBK; }  // storage rows run along n: read along k
    else { j = e % kBN; k = e / kBN; }
    const int64_t gj = n0 + j, gk = k0 + k;
    float v = 0.0f;
    if (gj < d.N && gk < K) v = d.b.trans ? d.b.p[storage_row(d.b, gj) * d.b.ld + gk] : d.b.p[storage_row(d.b, gk) * d.b.ld + gj];
    t.b[k][j] = v;
  }
}

// The thread's outputs: rows 4 ty + i, columns 4 tx + j of the tile.
__device__ __forceinline__ int tile_row(int i) { return int(threadIdx.x / 16) * kTM + i; }
__device__ __forceinline__ int tile_col(int j) { return int(threadIdx.x % 16) * kTN + j; }

// Where element (i, j) of C is stored (GemmDesc::ct: transposed).
__device__ __forceinline__ int64_t c_index(const GemmDesc& d, int64_t gi, int64_t gj) { return d.ct ? gj * d.ldc + gi : gi * d.ldc + gj; }

// v = alpha * acc (+ beta * C): the value of the first summation block (C read only in range).
__device__ __forceinline__ float first_value(const GemmDesc& d, int64_t gi, int64_t gj, float acc) {
  float x = d.alpha * acc;
  if (d.beta != 0.0f && gi < d.M && gj < d.N) x = __fmaf_rn(d.beta, d.c[c_index(d, gi, gj)], x);
  return x;
}

// The epilogue of cpu::gemm_detail::epilogue_value for one in-range element, then the store.
__device__ __forceinline__ void store_value(const GemmDesc& d, int64_t gi, int64_t gj, float x) {
  if (d.bias) x = x + d.bias[gj];
  if (d.pre) d.pre[gi * d.ldpre + gj] = x;
  if (d.act == GemmAct::Relu) x = act::relu(x);
  else if (d.act == GemmAct::Gelu) x = act::gelu(x);
  if (d.dact != GemmAct::None) {
    const float p = d.dact_pre[gi * d.ld_dact + gj];
    x = x * (d.dact == GemmAct::Relu ? act::relu_grad(p) : act::gelu_grad(p));
  }
  d.c[c_index(d, gi, gj)] = x;
}

// Folds one summation block into v (as the CPU kernel's write-back of a KC block).
__device__ __forceinline__ void fold(const GemmDesc& d, int64_t m0, int64_t n0, bool first, const float (&acc)[kTM][kTN],
                                     float (&v)[kTM][kTN]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j)
      v[i][j] = first ? first_value(d, m0 + tile_row(i), n0 + tile_col(j), acc[i][j]) : __fmaf_rn(d.alpha, acc[i][j], v[i][j]);
  }
}

__device__ __forceinline__ void epilogue(const GemmDesc& d, int64_t m0, int64_t n0, const float (&v)[kTM][kTN]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int64_t gi = m0 + tile_row(i);
    if (gi >= d.M) continue;
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t gj = n0 + tile_col(j);
      if (gj < d.N) store_value(d, gi, gj, v[i][j]);
    }
  }
}

static_assert(kTM == 4 && kTN == 4 && (kBM + kPad) % 4 == 0 && (kBN + kPad) % 4 == 0, "16-byte shared loads");
__device__ __forceinline__ void fma_step(const Tiles& t, int k, float (&acc)[kTM][kTN]) {
  const float4 a4 = *reinterpret_cast<const float4*>(&t.a[k][tile_row(0)]);
  const float4 b4 = *reinterpret_cast<const float4*>(&t.b[k][tile_col(0)]);
  const float a[kTM] = {a4.x, a4.y, a4.z, a4.w}, b[kTN] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int j = 0; j < kTN; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
}

// One output tile, Fp32 (the exact mode).
__device__ void tile_fp32(const GemmDesc& d, int64_t tile, Tiles& t) {
  const auto [m0, n0, K] = tile_origin<kBM, kBN>(d, tile);
  float acc[kTM][kTN], v[kTM][kTN];
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int j = 0; j < kTN; ++j) acc[i][j] = v[i][j] = 0.0f;
  bool first = true;
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    load_tiles(d, m0, n0, k0, K, t);
    __syncthreads();
    const int kc = int(min(int64_t(kBK), K - k0));
    if (kc == kBK) {
#pragma unroll
      for (int k = 0; k < kBK; ++k) fma_step(t, k, acc);
    } else {
      for (int k = 0; k < kc; ++k) fma_step(t, k, acc);
    }
    __syncthreads();
    const int64_t k1 = k0 + kBK;
    if (k1 % kGemmKC == 0 || k1 >= K) {  // end of a summation block
      fold(d, m0, n0, first, acc, v);
      first = false;
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;
    }
  }
  if (K == 0) fold(d, m0, n0, true, acc, v);  // C = beta C (+ epilogue)
  epilogue(d, m0, n0, v);
}

// ---- tensor cores (Tf32, Bf16) ----------------------------------------------------------------------
// (the sm_75 pass compiles tile() to a trap, leaving these helpers unreferenced there)
#pragma nv_diag_suppress 177
namespace tc {
constexpr int kBM = 128, kBN = 128, kBK = 32;
constexpr int kWarpM = 64, kWarpN = 32;                       // a warp's share: 4 x 2 fragments of 16 x 16
constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 16;
constexpr int kPadF = 8, kPadH = 8;                           // wmma: ldm a multiple of 16 bytes; a float row stride of
                                                              // 8 mod 32 banks puts the fragment loads' 32 lanes (t * ld + g,
                                                              // t < 4, g < 8) in distinct banks (4 mod 32: 2-way conflicts)
constexpr int kLdF = kBM + kPadF, kLdH = kBM + kPadH;         // (kBM == kBN)
constexpr int kPerThread = kBM * kBK / kThreads;              // staged elements per thread, A and B each
constexpr int kSmemBytes = 2 * kBK * kLdF * 4;                // the larger user: Tf32's A and B, or half of C
static_assert(kBM == kBN && kBM == 2 * kWarpM && kBN == 4 * kWarpN, "8 warps as 2 x 4");
static_assert(kBM / 2 * kLdF * 4 <= kSmemBytes, "half of the C tile fits");
static_assert(kGemmKC % kBK == 0 && kBM * kBK % kThreads == 0, "whole steps");

template <GemmMath kMath>
struct Elem { using T = float; static constexpr int kLd = kLdF; };
template <>
struct Elem<GemmMath::Bf16> { using T = __nv_bfloat16; static constexpr int kLd = kLdH; };

__device__ __forceinline__ float to_stage(float v, float*) { return v; }
__device__ __forceinline__ __nv_bfloat16 to_stage(float v, __nv_bfloat16*) { return __float2bfloat16_rn(v); }

// Staged element e (0 .. kBM * kBK) of the A tile as (m, k), read along the storage rows.
__device__ __forceinline__ void a_coords(const GemmOperand& o, int e, int& m, int& k) {
  if (o.trans) { m = e % kBM; k = e / kBM; }  // storage rows run along k: read along m
  else { k = e % kBK; m = e / kBK; }
}
__device__ __forceinline__ void b_coords(const GemmOperand& o, int e, int& k, int& n) {
  if (o.trans) { k = e % kBK; n = e / kBK; }  // storage rows run along n: read along k
  else { n = e % kBN; k = e / kBN; }
}

// The thread's share of the k step at k0 into registers (0 outside the matrices).
__device__ __forceinline__ void fetch(const GemmDesc& d, int64_t m0, int64_t n0, int64_t k0, int64_t K, float (&ra)[kPerThread],
                                      float (&rb)[kPerThread]) {
#pragma unroll
  for (int q = 0; q < kPerThread; ++q) {
    const int e = int(threadIdx.x) + q * kThreads;
    int m, k, n;
    a_coords(d.a, e, m, k);
    const int64_t gi = m0 + m, gk = k0 + k;
    ra[q] = (gi < d.M && gk < K) ? (d.a.trans ? d.a.p[storage_row(d.a, gk) * d.a.ld + gi] : d.a.p[storage_row(d.a, gi) * d.a.ld + gk]) : 0.0f;
    b_coords(d.b, e, k, n);
    const int64_t gj = n0 + n, gk2 = k0 + k;
    rb[q] = (gj < d.N && gk2 < K) ? (d.b.trans ? d.b.p[storage_row(d.b, gj) * d.b.ld + gk2] : d.b.p[storage_row(d.b, gk2) * d.b.ld + gj]) : 0.0f;
  }
}

// Registers to shared memory: A as as[k][m] (col-major for matrix_a), B as bs[k][n] (row-major).
template <class T, int kLd>
__device__ __forceinline__ void stage(const GemmDesc& d, const float (&ra)[kPerThread], const float (&rb)[kPerThread], T* as, T* bs) {
#pragma unroll
  for (int q = 0; q < kPerThread; ++q) {
    const int e = int(threadIdx.x) + q * kThreads;
    int m, k, n;
    a_coords(d.a, e, m, k);
    as[k * kLd + m] = to_stage(ra[q], as);
    b_coords(d.b, e, k, n);
    bs[k * kLd + n] = to_stage(rb[q], bs);
  }
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// The accumulators of a 128 x 128 tile (warp w: rows 64 (w / 4), columns 32 (w % 4)) through
// shared memory (cs: at least kBM / 2 rows of kLdF floats), half of the tile (the warps of one
// row of warps) at a time, then alpha, beta C and the epilogue per element. Every thread calls it.
template <class Acc>
__device__ __forceinline__ void write_tile(const GemmDesc& d, int64_t m0, int64_t n0, const Acc (&acc)[kFragsM][kFragsN], float* cs) {
  using namespace nvcuda;
  const int warp = int(threadIdx.x) / 32, wm = warp / 4, wn = warp % 4;
  for (int half = 0; half < 2; ++half) {
    if (wm == half) {
#pragma unroll
      for (int i = 0; i < kFragsM; ++i)
#pragma unroll
        for (int j = 0; j < kFragsN; ++j)
          wmma::store_matrix_sync(cs + (16 * i) * kLdF + kWarpN * wn + 16 * j, acc[i][j], kLdF, wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = int(threadIdx.x); e < kBM / 2 * kBN; e += kThreads) {
      const int r = e / kBN, c = e % kBN;
      const int64_t gi = m0 + half * (kBM / 2) + r, gj = n0 + c;
      if (gi < d.M && gj < d.N) store_value(d, gi, gj, first_value(d, gi, gj, cs[r * kLdF + c]));
    }
    __syncthreads();
  }
}
#endif

template <GemmMath kMath>
__device__ void tile(const GemmDesc& d, int64_t t, unsigned char* smem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)d;
  (void)t;
  (void)smem;
  __trap();  // never launched there: gemm_math_of gives Fp32 below sm_80
#elif defined(__CUDA_ARCH__)
  using namespace nvcuda;
  using T = typename Elem<kMath>::T;
  constexpr int kLd = Elem<kMath>::kLd;
  constexpr int kFragK = kMath == GemmMath::Bf16 ? 16 : 8;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, kFragK, std::conditional_t<kMath == GemmMath::Bf16, __nv_bfloat16, wmma::precision::tf32>, wmma::col_major>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, kFragK, std::conditional_t<kMath == GemmMath::Bf16, __nv_bfloat16, wmma::precision::tf32>, wmma::row_major>;
  T* as = reinterpret_cast<T*>(smem);
  T* bs = as + kBK * kLd;
  const auto [m0, n0, K] = tile_origin<kBM, kBN>(d, t);
  const int warp = int(threadIdx.x) / 32, wm = warp / 4, wn = warp % 4;
  wmma::fragment<wmma::accumulator, 16, 16, kFragK, float> acc[kFragsM][kFragsN];
#pragma unroll
  for (int i = 0; i < kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < kFragsN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  float ra[kPerThread], rb[kPerThread];
  if (K > 0) fetch(d, m0, n0, 0, K, ra, rb);
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    stage<T, kLd>(d, ra, rb, as, bs);
    __syncthreads();
    if (k0 + kBK < K) fetch(d, m0, n0, k0 + kBK, K, ra, rb);  // in flight during the products below
#pragma unroll
    for (int kk = 0; kk < kBK; kk += kFragK) {  // padded k are zeros: they add exactly 0
      FragA fa[kFragsM];
      FragB fb[kFragsN];
#pragma unroll
      for (int i = 0; i < kFragsM; ++i) {
        wmma::load_matrix_sync(fa[i], as + kk * kLd + kWarpM * wm + 16 * i, kLd);
        if constexpr (kMath == GemmMath::Tf32) {
#pragma unroll
          for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
        }
      }
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        wmma::load_matrix_sync(fb[j], bs + kk * kLd + kWarpN * wn + 16 * j, kLd);
        if constexpr (kMath == GemmMath::Tf32) {
#pragma unroll
          for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
        }
      }
#pragma unroll
      for (int i = 0; i < kFragsM; ++i)
#pragma unroll
        for (int j = 0; j < kFragsN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();  // the stage is read; the next iteration overwrites it
  }
  write_tile(d, m0, n0, acc, reinterpret_cast<float*>(smem));
#else
  (void)d;
  (void)t;
  (void)smem;
#endif
}
}  // namespace tc

// ---- tensor cores, TF32 through a cp.async pipeline (the default TF32 kernel) ------------------------
// The same 128 x 128 tile, 8 warps of 64 x 32 and k steps of 32 as tc::tile, but the operands go
// from global to shared memory with asynchronous copies (16 bytes where the rows allow, else 4),
// kStages steps in flight, in their storage layout (k-contiguous tiles are read as row-major A or
// col-major B fragments, m/n-contiguous ones as col-major A or row-major B), so no registers hold
// prefetched data. Launched with one block per SM in the register budget (Async1, no spills) or two
// (Async2: <= 128 registers, 2 x 108 KB of shared memory; ptxas spills 4-8 bytes on sm_90), one
// kernel per operand form (the form must be known on the host: gemm_grouped's `form`). Which is
// faster has not been measured, and neither has run on a GPU (emulated only), so the default TF32
// kernel is still tc::tile (gemm_set_tf32_kernel), which measured 27 TFLOP/s on an H200 with one
// block per SM (ncu: latency-bound, 12.5% occupancy).
namespace tca {
using tc::kBM;
using tc::kBN;
using tc::kBK;
using tc::kWarpM;
using tc::kWarpN;
using tc::kFragsM;
using tc::kFragsN;
constexpr int kStages = 3;
constexpr int kLdK = kBK + 4;    // a tile of 128 storage rows of 32 k: [128][kLdK]
constexpr int kLdMN = kBM + 8;   // a tile of 32 storage rows (k) of 128: [32][kLdMN] (8 mod 32 banks: see tc::kPadF)
constexpr int kOperandFloats = kBM * kLdK;
constexpr int kStageFloats = 2 * kOperandFloats;
constexpr std::size_t kSmemBytes = std::size_t(kStages) * kStageFloats * sizeof(float);
static_assert(kBK * kLdMN <= kOperandFloats && kBM == kBN, "either layout fits an operand's slot");
static_assert(kBM / 2 * tc::kLdF <= kStages * kStageFloats, "write_tile's staging fits");
static_assert((kLdK * 4) % 16 == 0 && (kLdMN * 4) % 16 == 0 && (kOperandFloats * 4) % 128 == 0, "wmma and cp.async alignment");

// Issues one operand's copies for a k step: a tile of R storage rows (row_base + r, mapped through
// o.rows, valid below row_limit) of W contiguous floats (col_base + w, valid below col_limit) into
// dst[r * kLds + w]; elements outside the matrix are zero-filled.
template <int R, int W, int kLds>
__device__ __forceinline__ void issue(const GemmOperand& o, int64_t row_base, int64_t row_limit, int64_t col_base, int64_t col_limit, bool vec,
                                      float* dst) {
  constexpr int kChunksPerRow = W / 4;
  static_assert(R * W / 4 % kThreads == 0, "whole chunks per thread");
#pragma unroll 1
  for (int q = 0; q < R * W / 4 / kThreads; ++q) {
    const int c = int(threadIdx.x) + q * kThreads;
    const int r = c / kChunksPerRow, w = c % kChunksPerRow * 4;
    const int64_t gr = row_base + r, gc = col_base + w;
    int valid = 0;
    const float* src = o.p;
    if (gr < row_limit && gc < col_limit) {
      valid = int(min(int64_t(4), col_limit - gc));
      src = o.p + storage_row(o, gr) * o.ld + gc;
    }
    float* to = dst + r * kLds + w;
    if (vec) {
      __pipeline_memcpy_async(to, src, 16, std::size_t(4 - valid) * 4);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) __pipeline_memcpy_async(to + e, e < valid ? src + e : o.p, 4, e < valid ? 0 : 4);
    }
  }
}

// Both operands of the k step at k0 into stage buffer `st` (A first, then B).
template <bool kAT, bool kBT>
__device__ __forceinline__ void issue_step(const GemmDesc& d, int64_t m0, int64_t n0, int64_t k0, int64_t K, bool vec_a, bool vec_b, float* st) {
  if (kAT) issue<kBK, kBM, kLdMN>(d.a, k0, K, m0, d.M, vec_a, st);  // A^T stored K x M: rows are k
  else issue<kBM, kBK, kLdK>(d.a, m0, d.M, k0, K, vec_a, st);       // rows are m, k contiguous
  float* bt = st + kOperandFloats;
  if (kBT) issue<kBN, kBK, kLdK>(d.b, n0, d.N, k0, K, vec_b, bt);   // B^T stored N x K: rows are n
  else issue<kBK, kBN, kLdMN>(d.b, k0, K, n0, d.N, vec_b, bt);      // rows are k, n contiguous
}

__device__ __forceinline__ bool vec_ok(const GemmOperand& o) { return o.ld % 4 == 0 && (reinterpret_cast<uintptr_t>(o.p) & 15u) == 0; }

template <bool kAT, bool kBT>
__device__ void tile(const GemmDesc& d, int64_t t, float* smem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)d;
  (void)t;
  (void)smem;
  __trap();  // never launched there
#elif defined(__CUDA_ARCH__)
  using namespace nvcuda;
  using LayoutA = std::conditional_t<kAT, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<kBT, wmma::col_major, wmma::row_major>;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutA>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutB>;
  const auto [m0, n0, K] = tile_origin<kBM, kBN>(d, t);
  const int64_t steps = (K + kBK - 1) / kBK;
  const bool va = vec_ok(d.a), vb = vec_ok(d.b);
  const int warp = int(threadIdx.x) / 32, wm = warp / 4, wn = warp % 4;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[kFragsM][kFragsN];
#pragma unroll
  for (int i = 0; i < kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < kFragsN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  // kStages - 1 steps in flight before the first product; one batch committed per step (empty
  // past the end) so that wait_prior counts steps
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) issue_step<kAT, kBT>(d, m0, n0, int64_t(s) * kBK, K, va, vb, smem + s * kStageFloats);
    __pipeline_commit();
  }
  for (int64_t s = 0; s < steps; ++s) {
    __pipeline_wait_prior(kStages - 2);  // this thread's copies of step s have landed
    __syncthreads();                     // everyone's have, and step s - 1's buffer is free
    const int64_t next = s + kStages - 1;
    if (next < steps) issue_step<kAT, kBT>(d, m0, n0, next * kBK, K, va, vb, smem + (next % kStages) * kStageFloats);
    __pipeline_commit();
    const float* as = smem + (s % kStages) * kStageFloats;
    const float* bs = as + kOperandFloats;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {  // k past K are zeros: they add exactly 0
      FragB fb[kFragsN];
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        const int n = kWarpN * wn + 16 * j;
        if (kBT) wmma::load_matrix_sync(fb[j], bs + n * kLdK + kk, kLdK);
        else wmma::load_matrix_sync(fb[j], bs + kk * kLdMN + n, kLdMN);
#pragma unroll
        for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < kFragsM; ++i) {  // one A fragment live at a time (registers)
        FragA fa;
        const int m = kWarpM * wm + 16 * i;
        if (kAT) wmma::load_matrix_sync(fa, as + kk * kLdMN + m, kLdMN);
        else wmma::load_matrix_sync(fa, as + m * kLdK + kk, kLdK);
#pragma unroll
        for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(fa.x[e]);
#pragma unroll
        for (int j = 0; j < kFragsN; ++j) wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
      }
    }
  }
  __pipeline_wait_prior(0);  // nothing may land in the buffers write_tile reuses
  __syncthreads();
  tc::write_tile(d, m0, n0, acc, smem);
#else
  (void)d;
  (void)t;
  (void)smem;
#endif
}

}  // namespace tca

// ---- tensor cores, TF32 through mma.sync (tcm) ------------------------------------------------------
// The 128 x 128 tile and k steps of 32 of the other TF32 kernels, with 4 warps as 2 x 2 of 64 x 64
// (4 x 8 fragments of m16n8k8: 32 products per 12 fragment loads, where the wmma kernels' 64 x 32
// warp tiles do 16 per 12), operands through a cp.async pipeline of kStages steps in their storage
// layout, rounded to TF32 once in shared memory by the thread that copied them (unless the operand
// holds TF32 values already: GemmOperand::tf32), fragments read by
// ldmatrix from k-contiguous tiles and by conflict-free scalar loads from m/n-contiguous ones
// (mma_tf32.cuh has the layouts), and the epilogue applied straight from the accumulator
// registers. The storage rows of the tile's m (A) or n (B) rows are looked up once per tile, not
// per k step, so gathered operands cost no dependent global load in the pipeline.
// Two blocks per SM (<= 255 registers, 2 x 110 KB of shared memory). Summation: per output, the
// products of each k group of 8 added to one FP32 accumulator in k order, as the wmma kernels do.
namespace tcm {
constexpr int kThreads = 128;
constexpr int kBM = 128, kBN = 128, kBK = 32;
constexpr int kWarpM = 64, kWarpN = 64;
constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 8;
constexpr int kStages = 3;
constexpr int kLdK = kBK + 4;   // k-contiguous tile [128][36]: the 8 rows of an ldmatrix phase 144 B apart hit 32 banks
constexpr int kLdMN = kBM + 8;  // m/n-contiguous tile [32][136]: see tc::kPadF
constexpr int kOperandFloats = kBM * kLdK;
constexpr int kStageFloats = 2 * kOperandFloats;
constexpr int kRowSlots = kBM + kBN;  // storage rows of the tile's m rows (A) and n rows (B^T)
constexpr std::size_t kSmemBytes = std::size_t(kStages) * kStageFloats * sizeof(float) + kRowSlots * sizeof(int64_t);
static_assert(kBM == kBN && kBM == 2 * kWarpM && kBN == 2 * kWarpN && kThreads == 4 * 32, "4 warps as 2 x 2");
static_assert(kBK * kLdMN <= kOperandFloats, "either layout fits an operand's slot");
static_assert((kLdK * 4) % 16 == 0 && (kLdMN * 4) % 16 == 0 && (kOperandFloats * 4) % 128 == 0, "ldmatrix and cp.async alignment");
static_assert(kBM * kBK / 4 == 8 * kThreads && kBK * kBM / 4 == 8 * kThreads, "8 chunks of 16 bytes per thread and operand");

// Four floats at dst (16-byte aligned) from src[0 .. valid) (zeros after): one 16-byte copy when the
// operand allows (vec), else four 4-byte ones; `base` (the operand's aligned start) when valid = 0.
__device__ __forceinline__ void copy4(float* dst, const float* src, int valid, bool vec, const float* base) {
  if (vec) {
    __pipeline_memcpy_async(dst, valid > 0 ? src : base, 16, std::size_t(4 - valid) * 4);
  } else {
#pragma unroll
    for (int e = 0; e < 4; ++e) __pipeline_memcpy_async(dst + e, e < valid ? src + e : base, 4, e < valid ? 0 : 4);
  }
}

// The tile row and the offset in an operand's stage slot of the thread's chunk q (0..7) of 16
// bytes: chunk tid + 128 q. kKRows: the operand's storage rows run along k (A^T, B), the tile is
// [kBK][kLdMN], 32 rows of 128 m/n values; else along m/n (A, B^T), [128][kLdK], 128 rows of 32 k.
template <bool kKRows>
__device__ __forceinline__ int chunk_row(int q) { return kKRows ? int(threadIdx.x) / 32 + 4 * q : int(threadIdx.x) / 8 + 16 * q; }
template <bool kKRows>
__device__ __forceinline__ int chunk_col(int q) { return kKRows ? int(threadIdx.x) % 32 * 4 : int(threadIdx.x) % 8 * 4; }
template <bool kKRows>
__device__ __forceinline__ int chunk_offset(int q) { return chunk_row<kKRows>(q) * (kKRows ? kLdMN : kLdK) + chunk_col<kKRows>(q); }

// One operand's share of a k step at k0 (chunk_offset's chunks). srow (not kKRows): the storage
// rows of the tile's rows (-1 past M or N). mn0/mn_limit: the tile's first m (or n) and M (or N).
template <bool kKRows>
__device__ __forceinline__ void load_operand(const GemmOperand& o, const int64_t* srow, int64_t mn0, int64_t mn_limit, int64_t k0, int64_t K,
                                             bool vec, float* dst) {
  if constexpr (kKRows) {
    const int w = chunk_col<true>(0);
    const int64_t gc = mn0 + w;
    const int valid = gc < mn_limit ? int(min(int64_t(4), mn_limit - gc)) : 0;
    int64_t rows[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) {  // the row lookups first: independent loads in flight together
      const int64_t gr = k0 + chunk_row<true>(q);
      rows[q] = gr < K ? storage_row(o, gr) : -1;
    }
#pragma unroll
    for (int q = 0; q < 8; ++q) copy4(dst + chunk_offset<true>(q), o.p + rows[q] * o.ld + gc, rows[q] >= 0 ? valid : 0, vec, o.p);
  } else {
    const int64_t gk = k0 + chunk_col<false>(0);
    const int valid = gk < K ? int(min(int64_t(4), K - gk)) : 0;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const int64_t sr = srow[chunk_row<false>(q)];
      copy4(dst + chunk_offset<false>(q), o.p + sr * o.ld + gk, sr >= 0 ? valid : 0, vec, o.p);
    }
  }
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Rounds the thread's own chunks of a landed stage to TF32 in place (cvt.rna, as the wmma kernels
// round their fragments): each element once, not once per fragment load of each warp using it.
__device__ __forceinline__ void round_chunk(float* chunk) {  // 4 floats, 16-byte aligned
  float4* p = reinterpret_cast<float4*>(chunk);
  float4 v = *p;
  v.x = __uint_as_float(mma::tf32_bits(v.x));
  v.y = __uint_as_float(mma::tf32_bits(v.y));
  v.z = __uint_as_float(mma::tf32_bits(v.z));
  v.w = __uint_as_float(mma::tf32_bits(v.w));
  *p = v;
}
template <bool kKRows>
__device__ __forceinline__ void round_operand(float* st) {
#pragma unroll
  for (int q = 0; q < 8; ++q) round_chunk(st + chunk_offset<kKRows>(q));
}
#endif

template <bool kAT, bool kBT>
__device__ __forceinline__ void load_step(const GemmDesc& d, const int64_t* srow, int64_t m0, int64_t n0, int64_t k0, int64_t K, bool va, bool vb,
                                          float* st) {
  load_operand<kAT>(d.a, srow, m0, d.M, k0, K, va, st);
  load_operand<!kBT>(d.b, srow + kBM, n0, d.N, k0, K, vb, st + kOperandFloats);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// The warp's fragments of one k group of 8 (kk) from a stage (already rounded to TF32).
template <bool kAT, bool kBT>
__device__ __forceinline__ void load_fragments(const float* as, const float* bs, int kk, int wm, int wn, uint32_t (&a)[kFragsM][4],
                                               uint32_t (&b)[kFragsN][2]) {
  const int lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < kFragsM; ++i) {
    const int m = kWarpM * wm + 16 * i;
    if constexpr (!kAT) {  // [m][k]: matrices (m, kk), (m + 8, kk), (m, kk + 4), (m + 8, kk + 4)
      mma::ldsm_x4(a[i], as + (m + lane % 8 + lane / 8 % 2 * 8) * kLdK + kk + lane / 16 * 4);
    } else {  // [k][m]
      const float* p = as + (kk + t) * kLdMN + m + g;
      a[i][0] = __float_as_uint(p[0]);
      a[i][1] = __float_as_uint(p[8]);
      a[i][2] = __float_as_uint(p[4 * kLdMN]);
      a[i][3] = __float_as_uint(p[4 * kLdMN + 8]);
    }
  }
#pragma unroll
  for (int j = 0; j < kFragsN; j += 2) {
    const int n = kWarpN * wn + 8 * j;
    if constexpr (kBT) {  // [n][k]: matrices (n, kk), (n, kk + 4), (n + 8, kk), (n + 8, kk + 4)
      uint32_t r[4];
      mma::ldsm_x4(r, bs + (n + lane % 8 + lane / 16 * 8) * kLdK + kk + lane / 8 % 2 * 4);
      b[j][0] = r[0];
      b[j][1] = r[1];
      b[j + 1][0] = r[2];
      b[j + 1][1] = r[3];
    } else {  // [k][n]
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float* p = bs + (kk + t) * kLdMN + n + 8 * h + g;
        b[j + h][0] = __float_as_uint(p[0]);
        b[j + h][1] = __float_as_uint(p[4 * kLdMN]);
      }
    }
  }
}
#endif

template <bool kAT, bool kBT>
__device__ void tile(const GemmDesc& d, int64_t t, float* smem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)d;
  (void)t;
  (void)smem;
  __trap();  // never launched there
#elif defined(__CUDA_ARCH__)
  int64_t* srow = reinterpret_cast<int64_t*>(smem + kStages * kStageFloats);
  const auto [m0, n0, K] = tile_origin<kBM, kBN>(d, t);
  const int64_t steps = (K + kBK - 1) / kBK;
  const bool va = tca::vec_ok(d.a), vb = tca::vec_ok(d.b);
  const int tid = int(threadIdx.x), warp = tid / 32, wm = warp / 2, wn = warp % 2;
  for (int r = tid; r < kBM; r += kThreads) {  // the tile's m rows of A, n rows of B^T: fixed over k
    if (!kAT) srow[r] = m0 + r < d.M ? storage_row(d.a, m0 + r) : -1;
    if (kBT) srow[kBM + r] = n0 + r < d.N ? storage_row(d.b, n0 + r) : -1;
  }
  __syncthreads();
  float acc[kFragsM][kFragsN][4];
#pragma unroll
  for (int i = 0; i < kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < kFragsN; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;
  // kStages - 1 steps in flight before the first product; one batch committed per step (empty
  // past the end) so that wait_prior counts steps
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load_step<kAT, kBT>(d, srow, m0, n0, int64_t(s) * kBK, K, va, vb, smem + s * kStageFloats);
    __pipeline_commit();
  }
  for (int64_t s = 0; s < steps; ++s) {
    __pipeline_wait_prior(kStages - 2);  // this thread's copies of step s have landed
    float* st = smem + (s % kStages) * kStageFloats;
    if (!d.a.tf32) round_operand<kAT>(st);
    if (!d.b.tf32) round_operand<!kBT>(st + kOperandFloats);
    __syncthreads();  // everyone's copies have landed and are rounded; step s - 1's buffer is free
    const int64_t next = s + kStages - 1;
    if (next < steps) load_step<kAT, kBT>(d, srow, m0, n0, next * kBK, K, va, vb, smem + (next % kStages) * kStageFloats);
    __pipeline_commit();
    const float* as = st;
    const float* bs = as + kOperandFloats;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {  // k past K are zeros: they add exactly 0
      uint32_t a[kFragsM][4], b[kFragsN][2];
      load_fragments<kAT, kBT>(as, bs, kk, wm, wn, a, b);
#pragma unroll
      for (int i = 0; i < kFragsM; ++i)
#pragma unroll
        for (int j = 0; j < kFragsN; ++j) mma::mma_tf32(acc[i][j], a[i], b[j]);
    }
  }
  __pipeline_wait_prior(0);  // no copy may outlive the block
  // the epilogue from the registers: c0, c1 at (g, 2 t + {0, 1}), c2, c3 eight rows below
  const int lane = tid % 32, g = lane / 4, tq = lane % 4;
#pragma unroll
  for (int i = 0; i < kFragsM; ++i)
#pragma unroll
    for (int q2 = 0; q2 < 2; ++q2) {
      const int64_t gi = m0 + kWarpM * wm + 16 * i + g + 8 * q2;
      if (gi >= d.M) continue;
#pragma unroll
      for (int j = 0; j < kFragsN; ++j)
#pragma unroll
        for (int q1 = 0; q1 < 2; ++q1) {
          const int64_t gj = n0 + kWarpN * wn + 8 * j + 2 * tq + q1;
          if (gj < d.N) store_value(d, gi, gj, first_value(d, gi, gj, acc[i][j][2 * q2 + q1]));
        }
    }
#else
  (void)d;
  (void)t;
  (void)smem;
#endif
}
}  // namespace tcm

// ---- tensor cores, TF32 through wgmma (tcw, sm_90a) ---------------------------------------------
// Operand forms 2 and 3: B^T [n][k] k-contiguous (the only B layout TF32 wgmma reads from shared
// memory); A [m][k] k-contiguous (form 2: read by wgmma from shared memory, "SS") or A^T [k][m]
// m-contiguous (form 3: staged as is and given to wgmma from registers, "RS": the transposed A that
// TF32 wgmma cannot read itself, so a product like dW^T = delta^T x needs no transposed copy of
// delta). Forms 0 and 1 run tcm. Two warpgroups, each the products of 64 rows by kBN columns as four
// wgmma m64nNk8 per k step of 32; operands staged by cp.async, the k-contiguous ones in the
// 128-byte-swizzled K-major layout that wgmma reads (wgmma_tf32.cuh), the m-contiguous A as [k][m]
// rows padded to avoid bank conflicts in the fragment loads (as tcm); a ring of kStages steps. The
// staged k-contiguous tiles are rounded to TF32 in place by the thread that copied them (as tcm;
// skipped for operands that hold TF32 values already, GemmOperand::tf32: the pass reads and writes
// every staged byte once more, as much shared-memory traffic as wgmma's own reads); RS fragments
// are rounded in registers. Accumulators in registers (kBN / 2 per thread), the epilogue applied
// from them. Two shapes (Shape below):
//   N128: the 128 x 128 tile of the other TF32 kernels, 3 stages, each k step's products waited
//     for before the next (the SM's other block keeps the tensor cores busy meanwhile); two blocks
//     per SM (<= 128 registers SS, 2 x 99-102 KB of shared memory).
//   N256: 128 x 256 tiles, 4 stages, one block per SM (192-196 KB, 128 accumulators per thread),
//     one k step's products left in flight while the next step is staged and issued. Per FLOP it
//     reads 3/4 of N128's bytes from L2 and its wgmma read 5/6 of N128's from shared memory: at the
//     TF32 peak a 128 x 128 tile needs ~15 TB/s from L2 across the card, more than an H100's L2
//     gives, 128 x 256 ~11 (the reason cuBLAS-class kernels use wide tiles).
// Summation: per output, the products of each k group of 8 added to one FP32 accumulator in k
// order, as the other kernels (whether the card's wgmma adds a group's products as its mma.sync
// does is what tf32_kernels_agree_bit_for_bit checks on a GPU).
namespace tcw {
constexpr int kThreads = 256;
constexpr int kBM = 128, kBK = 32;  // a k step: one swizzled 128-byte row per m or n
constexpr int kAlign = 1024;        // the swizzle pattern repeats every 1024 bytes: tiles start on it
constexpr int kLdAT = kBM + 8;      // RS: the [k][m] A tile's row stride (8 mod 32 banks: conflict-free fragment loads)
static_assert(kBM == 2 * 64 && kThreads == 2 * 128 && kBK * 4 == 128, "two warpgroups of m64; one swizzled row per k step");
static_assert((kBK * kLdAT * 4) % kAlign == 0, "the RS A tile keeps the stages aligned");

// kBN: the tile's columns (the wgmma N); kStages: the ring; kPending: wgmma groups left in flight
// at the end of a k step (0 or 1); kBlocks: resident blocks per SM.
template <int kBN_, int kStages_, int kPending_, int kBlocks_>
struct Shape {
  static constexpr int kBN = kBN_, kStages = kStages_, kPending = kPending_, kBlocks = kBlocks_;
  static constexpr int kBFloats = kBN * kBK;  // whole 1024-byte swizzle patterns
  template <bool kARegs>
  static constexpr int kAFloats = kARegs ? kBK * kLdAT : kBM * kBK;
  template <bool kARegs>
  static constexpr int kStageFloats = kAFloats<kARegs> + kBFloats;
  // copies in flight ahead of the step being multiplied: a stage is refilled only once the
  // products that read it (up to kPending steps back) are done
  static constexpr int kAhead = kStages - 1 - kPending;
  template <bool kARegs>
  static constexpr std::size_t kSmemBytes = kAlign + std::size_t(kStages) * kStageFloats<kARegs> * sizeof(float) + (kBM + kBN) * sizeof(int64_t);
  static_assert(kBN == 128 || kBN == 256, "wgmma m64n128k8 or m64n256k8");
  static_assert(kPending == 0 || kPending == 1, "");
  static_assert(kAhead >= 1, "at least one step's copies ahead");
  static_assert((kBM * kBK * 4) % kAlign == 0 && (kBFloats * 4) % kAlign == 0, "tiles stay aligned");
};
using N128 = Shape<128, 3, 0, 2>;
using N256 = Shape<256, 4, 1, 1>;

// Where chunk q of a thread goes: row tid / 8 + 32 q of the tile, 16-byte chunk c = tid % 8 of the
// k step (global k0 + 4 c), stored at chunk c ^ (row % 8) of the row (row % 8 = tid / 8 % 8).
__device__ __forceinline__ int chunk_row(int q) { return int(threadIdx.x) / 8 + 32 * q; }
__device__ __forceinline__ int chunk_offset(int q) {
  const int r = chunk_row(q), c = int(threadIdx.x) % 8;
  return r * kBK + ((c ^ (r % 8)) * 4);
}

// One k-contiguous operand's share of a k step at k0 for a tile of kRows rows: srow holds the
// storage rows of the tile's rows (-1 past M or N); every chunk outside the matrix is zero-filled.
template <int kRows>
__device__ __forceinline__ void load_operand(const GemmOperand& o, const int64_t* srow, int64_t k0, int64_t K, bool vec, float* dst) {
  static_assert(kRows * kBK / 4 % kThreads == 0, "whole chunks per thread");
  const int64_t gk = k0 + int(threadIdx.x) % 8 * 4;
  const int valid = gk < K ? int(min(int64_t(4), K - gk)) : 0;
#pragma unroll
  for (int q = 0; q < kRows * kBK / 4 / kThreads; ++q) {
    const int64_t sr = srow[chunk_row(q)];
    tcm::copy4(dst + chunk_offset(q), o.p + sr * o.ld + gk, sr >= 0 ? valid : 0, vec, o.p);
  }
}

// RS: the m-contiguous A^T's share of a k step at k0: storage rows k0.. (through o.rows; -1 past K),
// 128 floats from m0 each, into dst[k][kLdAT]; chunk q of a thread: row tid / 32 + 8 q, floats
// 4 (tid % 32).. of it.
__device__ __forceinline__ void load_a_k_rows(const GemmOperand& o, int64_t m0, int64_t M, int64_t k0, int64_t K, bool vec, float* dst) {
  const int w = int(threadIdx.x) % 32 * 4;
  const int64_t gm = m0 + w;
  const int valid = gm < M ? int(min(int64_t(4), M - gm)) : 0;
  constexpr int kChunks = kBK * kBM / 4 / kThreads;
  int64_t rows[kChunks];
#pragma unroll
  for (int q = 0; q < kChunks; ++q) {  // the row lookups first: independent loads in flight together
    const int64_t gk = k0 + int(threadIdx.x) / 32 + 8 * q;
    rows[q] = gk < K ? storage_row(o, gk) : -1;
  }
#pragma unroll
  for (int q = 0; q < kChunks; ++q)
    tcm::copy4(dst + (int(threadIdx.x) / 32 + 8 * q) * kLdAT + w, o.p + rows[q] * o.ld + gm, rows[q] >= 0 ? valid : 0, vec, o.p);
}

#if defined(CALMOE_CUDA_EMU) || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
// Rounds the thread's own chunks of a landed stage to TF32 in place (cvt.rna, as the other kernels).
template <int kRows>
__device__ __forceinline__ void round_operand(float* st) {
#pragma unroll
  for (int q = 0; q < kRows * kBK / 4 / kThreads; ++q) tcm::round_chunk(st + chunk_offset(q));
}

// RS: this thread's A fragments of a k step (4 k groups of 8) from the [k][m] tile, rows mb.. of
// its warp (mma_tf32.cuh's A layout), rounded to TF32 unless they are TF32 values already.
__device__ __forceinline__ void a_fragments(const float* at, int mb, bool tf32, uint32_t (&a)[4][4]) {
  const int lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float v = at[(8 * kk + t + 4 * (q / 2)) * kLdAT + mb + g + 8 * (q % 2)];
      a[kk][q] = tf32 ? __float_as_uint(v) : mma::tf32_bits(v);
    }
}
#endif

// kARegs: form 3 (RS), else form 2 (SS).
template <class S, bool kARegs>
__device__ void tile(const GemmDesc& d, int64_t t, float* smem_raw) {
#if defined(CALMOE_CUDA_EMU) || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
  constexpr int kBN = S::kBN, kStages = S::kStages, kAhead = S::kAhead;
  constexpr int kAFloats = S::template kAFloats<kARegs>, kStageFloats = S::template kStageFloats<kARegs>;
  // the stages from the first 1024-byte boundary of the shared-memory window, the row table after
  const uint32_t raw_addr = wgmma::smem_addr(smem_raw);
  float* smem = smem_raw + ((kAlign - raw_addr % kAlign) % kAlign) / 4;
  const uint32_t smem_addr = wgmma::smem_addr(smem);
  int64_t* srow = reinterpret_cast<int64_t*>(smem + kStages * kStageFloats);
  const TileOrigin origin = tile_origin<kBM, kBN>(d, t);
  const int64_t m0 = origin.m0, n0 = origin.n0, K = origin.K;
  const int64_t steps = (K + kBK - 1) / kBK;
  const bool va = tca::vec_ok(d.a), vb = tca::vec_ok(d.b);
  const int tid = int(threadIdx.x), wg = tid / 128;
  if (!kARegs)
    for (int r = tid; r < kBM; r += kThreads) srow[r] = m0 + r < d.M ? storage_row(d.a, m0 + r) : -1;  // A's storage rows
  for (int r = tid; r < kBN; r += kThreads) srow[kBM + r] = n0 + r < d.N ? storage_row(d.b, n0 + r) : -1;  // B^T's
  __syncthreads();
  float acc[wgmma::kAccum<kBN>];
#pragma unroll
  for (int i = 0; i < wgmma::kAccum<kBN>; ++i) acc[i] = 0.0f;
  // the zeros written here, once: a copy of them sunk by the compiler into a path past the k loop
  // defines the accumulators where ptxas then cannot prove no wgmma is in flight, and it serialises
  // every wgmma of the kernel (C7515)
  wgmma::fence_operands(acc);
  auto load_step = [&](int64_t s) {
    float* st = smem + (s % kStages) * kStageFloats;
    if constexpr (kARegs) load_a_k_rows(d.a, m0, d.M, s * kBK, K, va, st);
    else load_operand<kBM>(d.a, srow, s * kBK, K, va, st);
    load_operand<kBN>(d.b, srow + kBM, s * kBK, K, vb, st + kAFloats);
  };
  // kAhead steps in flight before the first product; one batch committed per step (empty past the
  // end) so that wait_prior counts steps
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < steps) load_step(s);
    __pipeline_commit();
  }
  // one k step; RS: its A fragments in `a`, which the step's wgmma read until they are waited for
  // (kPending steps later), so with a group in flight consecutive steps use the two buffers of
  // `af` in turn
  auto step = [&](int64_t s, uint32_t (&a)[4][4]) {
    __pipeline_wait_prior(kAhead - 1);  // this thread's copies of step s have landed
    float* st = smem + (s % kStages) * kStageFloats;
    if (!kARegs && !d.a.tf32) round_operand<kBM>(st);
    if (!d.b.tf32) round_operand<kBN>(st + kAFloats);
    wgmma::fence_proxy_async();  // the copies and the rounding, visible to wgmma's reads
    // everyone's chunks of step s are in; every warpgroup's products of step s - 1 - kPending are
    // done (waited for at the end of the previous step), so their stage may be refilled
    __syncthreads();
    if constexpr (kARegs) a_fragments(st, 64 * wg + 16 * (tid / 32 % 4), d.a.tf32 != 0, a);
    if (s + kAhead < steps) load_step(s + kAhead);  // into step s + kAhead - kStages = s - 1 - kPending's stage
    __pipeline_commit();
    const uint32_t stage_addr = smem_addr + uint32_t((s % kStages) * kStageFloats * 4);
    const uint32_t b_addr = stage_addr + uint32_t(kAFloats * 4);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 8; ++kk) {  // k past K are zeros: they add exactly 0
      if constexpr (kARegs) {
        wgmma::mma(acc, a[kk], wgmma::desc_k_major_sw128(b_addr + 32 * kk));
      } else {
        const uint32_t a_addr = stage_addr + uint32_t(wg * 64 * kBK * 4);  // the warpgroup's 64 rows
        wgmma::mma(acc, wgmma::desc_k_major_sw128(a_addr + 32 * kk), wgmma::desc_k_major_sw128(b_addr + 32 * kk));
      }
    }
    wgmma::commit();
    wgmma::wait<S::kPending>();
    wgmma::fence_operands(acc);
  };
  uint32_t af[1 + S::kPending][4][4];
  for (int64_t s = 0; s < steps; s += 2) {
    step(s, af[0]);
    if (s + 1 < steps) step(s + 1, af[S::kPending]);
  }
  wgmma::wait<0>();
  wgmma::fence_operands(acc);
  __pipeline_wait_prior(0);  // no copy may outlive the block
  // the epilogue from the registers: warp w of warpgroup wg holds rows 64 wg + 16 w + g (+ 8)
  const int lane = tid % 32, g = lane / 4, tq = lane % 4, row0 = 64 * wg + 16 * (tid / 32 % 4) + g;
#pragma unroll
  for (int q2 = 0; q2 < 2; ++q2) {
    const int64_t gi = m0 + row0 + 8 * q2;
    if (gi >= d.M) continue;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
      for (int q1 = 0; q1 < 2; ++q1) {
        const int64_t gj = n0 + 8 * j + 2 * tq + q1;
        if (gj < d.N) store_value(d, gi, gj, first_value(d, gi, gj, acc[4 * j + 2 * q2 + q1]));
      }
  }
#else
  (void)d;
  (void)t;
  (void)smem_raw;
#if defined(__CUDA_ARCH__)
  __trap();  // never launched: wgmma_tf32_supported() is false without the sm_90a code
#endif
#endif
}
}  // namespace tcw
#pragma nv_diag_default 177

template <GemmMath kMath>
__device__ __forceinline__ void run_tile(const GemmDesc& d, int64_t tile) {
  if constexpr (kMath == GemmMath::Fp32) {
    __shared__ Tiles t;
    tile_fp32(d, tile, t);
  } else {
    __shared__ __align__(128) unsigned char smem[tc::kSmemBytes];
    tc::tile<kMath>(d, tile, smem);
  }
}

// The kernels' tile bodies. kAsyncBlocks (Tf32 only): 0 for tc::tile, else tca::tile for operand
// form kForm (gemm_form_of; one form per kernel keeps Async2 within 128 registers) on dynamic
// shared memory, with that many blocks per SM in the register budget.
template <GemmMath kMath, int kAsyncBlocks, int kForm>
__device__ __forceinline__ void any_tile(const GemmDesc& d, int64_t tile) {
  if constexpr (kAsyncBlocks > 0) {
    extern __shared__ __align__(128) float gemm_dyn_smem[];
    tca::tile<(kForm & 1) != 0, (kForm & 2) != 0>(d, tile, gemm_dyn_smem);
  } else {
    run_tile<kMath>(d, tile);
  }
}

// Fp32: two resident blocks per SM (<= 128 registers); the register-staged tensor-core kernel: one
// (its accumulators and prefetch registers need more); the async one: as asked.
template <GemmMath kMath, int kAsyncBlocks>
constexpr int kBlocksPerSm = kMath == GemmMath::Fp32 ? kMinBlocks : kAsyncBlocks > 0 ? kAsyncBlocks : 1;

template <GemmMath kMath, int kAsyncBlocks, int kForm = 0>
__global__ void __launch_bounds__(kThreads, (kBlocksPerSm<kMath, kAsyncBlocks>)) gemm_one_kernel(const GemmDesc d) {
  any_tile<kMath, kAsyncBlocks, kForm>(d, int64_t(blockIdx.x));
}

// The group of a grouped launch's block: its descriptor copied to `raw` (shared memory; a register
// copy costs ~40 registers) and its tile within that GEMM, or -1 (the whole block returns: the
// bound was an upper bound). Every thread calls it (it synchronises).
__device__ __forceinline__ int64_t find_group(const GemmDesc* __restrict__ descs, const int64_t* __restrict__ tile_start, int count,
                                              unsigned char* raw) {
  const int64_t tile = int64_t(blockIdx.x);
  if (tile >= tile_start[count]) return -1;
  int lo = 0, hi = count;  // tile_start[lo] <= tile < tile_start[hi]
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    if (tile_start[mid] <= tile) lo = mid;
    else hi = mid;
  }
  if (threadIdx.x == 0) std::memcpy(raw, descs + lo, sizeof(GemmDesc));
  __syncthreads();
  return tile - tile_start[lo];
}

template <GemmMath kMath, int kAsyncBlocks, int kForm = 0>
__global__ void __launch_bounds__(kThreads, (kBlocksPerSm<kMath, kAsyncBlocks>)) gemm_grouped_kernel(const GemmDesc* __restrict__ descs,
                                                                                               const int64_t* __restrict__ tile_start, int count) {
  // raw storage: GemmDesc's default member initialisers would be a (non-)initialiser of a __shared__
  __shared__ __align__(16) unsigned char raw[sizeof(GemmDesc)];
  const int64_t tile = find_group(descs, tile_start, count, raw);
  if (tile < 0) return;
  any_tile<kMath, kAsyncBlocks, kForm>(*reinterpret_cast<const GemmDesc*>(raw), tile);
}

// The kernels of the tile bodies on dynamic shared memory, Tile::kBlocks resident per SM: tcm for
// operand form kForm (MmaTile<kForm>) and tcw of a shape (WgmmaTile<Shape>), alone and grouped.
template <int kForm>
struct MmaTile {
  static constexpr int kThreads = tcm::kThreads, kBlocks = 2;
  __device__ static void run(const GemmDesc& d, int64_t t, float* smem) { tcm::tile<(kForm & 1) != 0, (kForm & 2) != 0>(d, t, smem); }
};
template <class Shape, bool kARegs>
struct WgmmaTile {
  static constexpr int kThreads = tcw::kThreads, kBlocks = Shape::kBlocks;
  __device__ static void run(const GemmDesc& d, int64_t t, float* smem) { tcw::tile<Shape, kARegs>(d, t, smem); }
};

template <class Tile>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kBlocks) gemm_one_smem_kernel(const GemmDesc d) {
  extern __shared__ __align__(128) float gemm_tile_smem[];
  Tile::run(d, int64_t(blockIdx.x), gemm_tile_smem);
}

template <class Tile>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kBlocks) gemm_grouped_smem_kernel(const GemmDesc* __restrict__ descs, const int64_t* __restrict__ tile_start,
                                                                             int count) {
  extern __shared__ __align__(128) float gemm_tile_smem[];
  __shared__ __align__(16) unsigned char raw[sizeof(GemmDesc)];
  const int64_t tile = find_group(descs, tile_start, count, raw);
  if (tile < 0) return;
  Tile::run(*reinterpret_cast<const GemmDesc*>(raw), tile, gemm_tile_smem);
}

// 1 where the code that runs on this device has wgmma (sm_90a), else 0.
__global__ void wgmma_probe_kernel(int* out) {
#if defined(CALMOE_CUDA_EMU) || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
  *out = 1;
#else
  *out = 0;
#endif
}

__global__ void gemm_plan_kernel(const GemmDesc* __restrict__ descs, int count, GemmTile tile, int64_t* __restrict__ tile_start) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int64_t t = 0;
  for (int g = 0; g < count; ++g) {
    tile_start[g] = t;
    t += gemm_tiles(descs[g].M, descs[g].N, tile);
  }
  tile_start[count] = t;
}

// Tensor-core modes need sm_80: below it every launch runs Fp32.
bool tensor_cores_supported() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 8;
  }();
  return ok;
}


// Every async TF32 kernel (2 launch shapes x 4 operand forms, alone and grouped), for f(kernel).
template <int kBlocks, int kForm, class F>
void for_async_form(F&& f) {
  f(gemm_one_kernel<GemmMath::Tf32, kBlocks, kForm>);
  f(gemm_grouped_kernel<GemmMath::Tf32, kBlocks, kForm>);
}
template <int kBlocks, class F>
void for_async_shape(F&& f) {
  for_async_form<kBlocks, 0>(f);
  for_async_form<kBlocks, 1>(f);
  for_async_form<kBlocks, 2>(f);
  for_async_form<kBlocks, 3>(f);
}
template <class F>
void for_async_kernels(F&& f) {
  for_async_shape<1>(f);
  for_async_shape<2>(f);
}

// The mma.sync TF32 kernels (4 operand forms, alone and grouped), for f(kernel).
template <int kForm, class F>
void for_mma_form(F&& f) {
  f(gemm_one_smem_kernel<MmaTile<kForm>>);
  f(gemm_grouped_smem_kernel<MmaTile<kForm>>);
}
template <class F>
void for_mma_kernels(F&& f) {
  for_mma_form<0>(f);
  for_mma_form<1>(f);
  for_mma_form<2>(f);
  for_mma_form<3>(f);
}

void launch_mma_one(const GemmDesc& d, int32_t form, unsigned grid, cudaStream_t stream) {
  constexpr std::size_t kSmem = tcm::kSmemBytes;
  switch (form) {
    case 0: gemm_one_smem_kernel<MmaTile<0>><<<grid, tcm::kThreads, kSmem, stream>>>(d); break;
    case 1: gemm_one_smem_kernel<MmaTile<1>><<<grid, tcm::kThreads, kSmem, stream>>>(d); break;
    case 2: gemm_one_smem_kernel<MmaTile<2>><<<grid, tcm::kThreads, kSmem, stream>>>(d); break;
    default: gemm_one_smem_kernel<MmaTile<3>><<<grid, tcm::kThreads, kSmem, stream>>>(d); break;
  }
}
void launch_mma_grouped(const GemmDesc* descs, const int64_t* tile_start, int count, int32_t form, unsigned grid, cudaStream_t stream) {
  constexpr std::size_t kSmem = tcm::kSmemBytes;
  switch (form) {
    case 0: gemm_grouped_smem_kernel<MmaTile<0>><<<grid, tcm::kThreads, kSmem, stream>>>(descs, tile_start, count); break;
    case 1: gemm_grouped_smem_kernel<MmaTile<1>><<<grid, tcm::kThreads, kSmem, stream>>>(descs, tile_start, count); break;
    case 2: gemm_grouped_smem_kernel<MmaTile<2>><<<grid, tcm::kThreads, kSmem, stream>>>(descs, tile_start, count); break;
    default: gemm_grouped_smem_kernel<MmaTile<3>><<<grid, tcm::kThreads, kSmem, stream>>>(descs, tile_start, count); break;
  }
}

// The forms wgmma runs: B transposed (k-contiguous); A k-contiguous (2: both operands from shared
// memory) or transposed (3: A from registers)
inline bool wgmma_form(int32_t form) { return form == 2 || form == 3; }
template <class Shape>
void launch_wgmma_one(const GemmDesc& d, int32_t form, unsigned grid, cudaStream_t stream) {
  if (form == 3) gemm_one_smem_kernel<WgmmaTile<Shape, true>><<<grid, tcw::kThreads, Shape::template kSmemBytes<true>, stream>>>(d);
  else gemm_one_smem_kernel<WgmmaTile<Shape, false>><<<grid, tcw::kThreads, Shape::template kSmemBytes<false>, stream>>>(d);
}
template <class Shape>
void launch_wgmma_grouped(const GemmDesc* descs, const int64_t* tile_start, int count, int32_t form, unsigned grid, cudaStream_t stream) {
  if (form == 3)
    gemm_grouped_smem_kernel<WgmmaTile<Shape, true>><<<grid, tcw::kThreads, Shape::template kSmemBytes<true>, stream>>>(descs, tile_start, count);
  else
    gemm_grouped_smem_kernel<WgmmaTile<Shape, false>><<<grid, tcw::kThreads, Shape::template kSmemBytes<false>, stream>>>(descs, tile_start, count);
}

// Launches of the async TF32 kernel for a form known on the host.
template <int kBlocks>
void launch_async_one(const GemmDesc& d, int32_t form, unsigned grid, cudaStream_t stream) {
  switch (form) {
    case 0: gemm_one_kernel<GemmMath::Tf32, kBlocks, 0><<<grid, kThreads, tca::kSmemBytes, stream>>>(d); break;
    case 1: gemm_one_kernel<GemmMath::Tf32, kBlocks, 1><<<grid, kThreads, tca::kSmemBytes, stream>>>(d); break;
    case 2: gemm_one_kernel<GemmMath::Tf32, kBlocks, 2><<<grid, kThreads, tca::kSmemBytes, stream>>>(d); break;
    default: gemm_one_kernel<GemmMath::Tf32, kBlocks, 3><<<grid, kThreads, tca::kSmemBytes, stream>>>(d); break;
  }
}
template <int kBlocks>
void launch_async_grouped(const GemmDesc* descs, const int64_t* tile_start, int count, int32_t form, unsigned grid, cudaStream_t stream) {
  switch (form) {
    case 0: gemm_grouped_kernel<GemmMath::Tf32, kBlocks, 0><<<grid, kThreads, tca::kSmemBytes, stream>>>(descs, tile_start, count); break;
    case 1: gemm_grouped_kernel<GemmMath::Tf32, kBlocks, 1><<<grid, kThreads, tca::kSmemBytes, stream>>>(descs, tile_start, count); break;
    case 2: gemm_grouped_kernel<GemmMath::Tf32, kBlocks, 2><<<grid, kThreads, tca::kSmemBytes, stream>>>(descs, tile_start, count); break;
    default: gemm_grouped_kernel<GemmMath::Tf32, kBlocks, 3><<<grid, kThreads, tca::kSmemBytes, stream>>>(descs, tile_start, count); break;
  }
}

// Every value of GemmTf32Kernel, in the order their names are listed.
constexpr GemmTf32Kernel kTf32Kernels[] = {GemmTf32Kernel::Registers, GemmTf32Kernel::Async1, GemmTf32Kernel::Async2, GemmTf32Kernel::Mma,
                                           GemmTf32Kernel::Wgmma,     GemmTf32Kernel::Wgmma256, GemmTf32Kernel::Auto};

// The TF32 kernel asked for and how. The one that has run on a GPU (H200, 2026-11-28) stays the
// default until the others have; CALMOE_CUDA_TF32_KERNEL names another (or auto) for a whole process
// (tests, benchmarks). A name that is no kernel's runs the default and says so (on stderr once, and
// in gemm_tf32_kernel_choice), rather than silently.
struct Tf32Request {
  std::recursive_mutex mutex;  // the automatic choice (other threads wait for it) and `how`
  std::atomic<GemmTf32Kernel> kernel{GemmTf32Kernel::Registers};  // Auto until chosen
  std::atomic<bool> choosing{false};
  std::string how = "default";
  Tf32Request() {
    const char* e = std::getenv("CALMOE_CUDA_TF32_KERNEL");
    if (!e || !*e) return;
    GemmTf32Kernel k;
    if (gemm_tf32_kernel_parse(e, &k)) {
      kernel = k;
      how = std::string("CALMOE_CUDA_TF32_KERNEL=") + e;
    } else {
      how = std::string("CALMOE_CUDA_TF32_KERNEL='") + e + "' names no kernel (";
      for (GemmTf32Kernel c : kTf32Kernels) how += std::string(c == kTf32Kernels[0] ? "" : ", ") + gemm_tf32_kernel_name(c);
      how += "): the default runs";
      std::fprintf(stderr, "calmoe: %s\n", how.c_str());
    }
  }
};
Tf32Request& tf32_request() {
  static Tf32Request r;
  return r;
}

// The kernel asked for, an Auto request chosen first (once per process; a thread that asks during
// the choice waits for it, except the choosing thread, which sees the kernel under trial).
GemmTf32Kernel requested_tf32_kernel() {
  Tf32Request& r = tf32_request();
  if (r.kernel.load() == GemmTf32Kernel::Auto || r.choosing.load()) {
    std::lock_guard<std::recursive_mutex> lock(r.mutex);
    if (r.kernel.load() == GemmTf32Kernel::Auto && !r.choosing.load()) {
      r.choosing = true;
      GemmTf32Kernel chosen = GemmTf32Kernel::Registers;
      std::string summary;
      try {
        gemm_tf32_trials([](GemmTf32Kernel k) { tf32_request().kernel = k; }, &chosen, &summary);
      } catch (const std::exception& e) {
        // a kernel that faulted leaves the process's CUDA context unusable: say what to set
        r.kernel = GemmTf32Kernel::Registers;
        r.how = std::string("auto: the choice failed (") + e.what() + "): the default runs";
        r.choosing = false;
        throw_runtime("the automatic choice of the CUDA TF32 GEMM kernel (CALMOE_CUDA_TF32_KERNEL=auto) failed: " + std::string(e.what()) +
                      "; if a kernel faulted, CUDA is unusable in this process: CALMOE_CUDA_TF32_KERNEL=registers runs the default without a choice");
      }
      r.kernel = chosen;
      r.how = "auto: " + summary;
      r.choosing = false;
    }
  }
  return r.kernel.load();
}

// Whether the card gives a block `bytes` of shared memory (opt-in); if so, raises the limit of
// every kernel for_each names to it (once per kernel family: callers keep the answer in a static).
template <class ForEach>
bool allow_shared_memory(std::size_t bytes, ForEach for_each) {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return false;
  if (std::size_t(optin) < bytes) return false;
  for_each([bytes](auto kernel) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)), "cudaFuncSetAttribute");
  });
  return true;
}

// The async TF32 kernels need tca::kSmemBytes of shared memory per block, the mma.sync ones
// tcm::kSmemBytes (sm_80, sm_90: yes; sm_86/89 allow 99 KB: the register-staged kernel runs there).
bool async_tf32_supported() {
  static const bool ok = allow_shared_memory(tca::kSmemBytes, [](auto f) { for_async_kernels(f); });
  return ok;
}
bool mma_tf32_supported() {
  static const bool ok = allow_shared_memory(tcm::kSmemBytes, [](auto f) { for_mma_kernels(f); });
  return ok;
}

// wgmma: the device is sm_90 and runs this build's sm_90a code (the probe), with Shape::kSmemBytes
// of shared memory per block (SS and RS), and the mma.sync kernels (its other operand forms) run.
template <class Shape>
bool wgmma_tf32_supported() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major != 9)
      return false;
    if (!mma_tf32_supported()) return false;
    DeviceBuffer<int> flag(1);
    wgmma_probe_kernel<<<1, 1>>>(flag.get());
    int has = 0;
    if (cudaGetLastError() != cudaSuccess) return false;
    flag.download(&has, 1);
    return has == 1 && allow_shared_memory(Shape::template kSmemBytes<false>, [](auto f) {
      f(gemm_one_smem_kernel<WgmmaTile<Shape, false>>);
      f(gemm_grouped_smem_kernel<WgmmaTile<Shape, false>>);
    }) && allow_shared_memory(Shape::template kSmemBytes<true>, [](auto f) {
      f(gemm_one_smem_kernel<WgmmaTile<Shape, true>>);
      f(gemm_grouped_smem_kernel<WgmmaTile<Shape, true>>);
    });
  }();
  return ok;
}

// The kernel that runs: the one asked for, or the nearest this card runs.
GemmTf32Kernel tf32_kernel() {
  const GemmTf32Kernel k = requested_tf32_kernel();
  switch (k) {
    case GemmTf32Kernel::Async1:
    case GemmTf32Kernel::Async2: return async_tf32_supported() ? k : GemmTf32Kernel::Registers;
    case GemmTf32Kernel::Mma: return mma_tf32_supported() ? k : GemmTf32Kernel::Registers;
    case GemmTf32Kernel::Wgmma: return wgmma_tf32_supported<tcw::N128>() ? k : mma_tf32_supported() ? GemmTf32Kernel::Mma : GemmTf32Kernel::Registers;
    case GemmTf32Kernel::Wgmma256:
      return wgmma_tf32_supported<tcw::N256>() ? k : mma_tf32_supported() ? GemmTf32Kernel::Mma : GemmTf32Kernel::Registers;
    default: return GemmTf32Kernel::Registers;
  }
}

unsigned grid_of(int64_t tiles, const char* what) {
  if (tiles > int64_t(INT_MAX)) throw_runtime(std::string(what) + ": " + std::to_string(tiles) + " tiles exceed one launch");
  return unsigned(tiles);
}

}  // namespace

GemmMath gemm_math_of(MatmulPrecision p) {
  if (p == MatmulPrecision::Fp32 || !tensor_cores_supported()) return GemmMath::Fp32;
  return p == MatmulPrecision::Bf16 ? GemmMath::Bf16 : GemmMath::Tf32;
}

bool gemm_tensor_cores() { return tensor_cores_supported(); }

GemmTile gemm_tile(GemmMath m, int32_t form, int64_t n_max) {
  if (m == GemmMath::Tf32 && wgmma_form(form) && (n_max < 0 || n_max > tcw::N128::kBN) && tf32_kernel() == GemmTf32Kernel::Wgmma256)
    return {tcw::kBM, tcw::N256::kBN};
  return gemm_tile_of(m);
}

void gemm_set_tf32_kernel(GemmTf32Kernel k) {
  Tf32Request& r = tf32_request();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  r.kernel = k;
  r.how = k == GemmTf32Kernel::Auto ? "auto (chosen at the first use)" : std::string("gemm_set_tf32_kernel(") + gemm_tf32_kernel_name(k) + ")";
}
GemmTf32Kernel gemm_tf32_kernel() { return tf32_kernel(); }
const char* gemm_tf32_kernel_name(GemmTf32Kernel k) {
  switch (k) {
    case GemmTf32Kernel::Async1: return "async1";
    case GemmTf32Kernel::Async2: return "async2";
    case GemmTf32Kernel::Mma: return "mma";
    case GemmTf32Kernel::Wgmma: return "wgmma";
    case GemmTf32Kernel::Wgmma256: return "wgmma256";
    case GemmTf32Kernel::Auto: return "auto";
    default: return "registers";
  }
}
bool gemm_tf32_kernel_parse(const char* name, GemmTf32Kernel* k) {
  for (GemmTf32Kernel c : kTf32Kernels) {
    if (name && std::strcmp(name, gemm_tf32_kernel_name(c)) == 0) {
      *k = c;
      return true;
    }
  }
  return false;
}
std::string gemm_tf32_kernel_choice() {
  const GemmTf32Kernel runs = tf32_kernel();
  Tf32Request& r = tf32_request();
  std::lock_guard<std::recursive_mutex> lock(r.mutex);
  const GemmTf32Kernel asked = r.kernel.load();
  if (asked == runs) return r.how;
  return r.how + "; this card runs " + gemm_tf32_kernel_name(runs) + " instead of " + gemm_tf32_kernel_name(asked) +
         (asked == GemmTf32Kernel::Wgmma || asked == GemmTf32Kernel::Wgmma256 ? " (wgmma needs an sm_90 card and this build's sm_90a code)"
                                                                                : " (it needs sm_80 or sm_90 and ~110 KB of shared memory per block)");
}

const char* gemm_math_name(GemmMath m) { return m == GemmMath::Tf32 ? "tf32" : m == GemmMath::Bf16 ? "bf16" : "fp32"; }

namespace {
constexpr int64_t kMaxSplitFloats = int64_t(1) << 25;

// descs[b]: the partial product of summation block b of d (k in [b kGemmKC, (b + 1) kGemmKC)) into
// partial + b M N, alpha 1, no epilogue; tile_start: `tiles` per block. One block of threads.
__global__ void split_plan_kernel(const GemmDesc d, int64_t blocks, int64_t tiles, float* partial, GemmDesc* descs, int64_t* tile_start) {
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) {
    const int64_t k0 = b * kGemmKC;
    GemmDesc p;
    p.M = d.M;
    p.N = d.N;
    p.K = min(kGemmKC, d.K - k0);
    p.a = d.a;  // A(i, k): the storage rows run along k when transposed
    if (!d.a.trans) p.a.p += k0;
    else if (d.a.rows) p.a.rows += k0;
    else p.a.p += k0 * d.a.ld;
    p.b = d.b;  // B(k, j): the storage rows run along k unless transposed
    if (d.b.trans) p.b.p += k0;
    else if (d.b.rows) p.b.rows += k0;
    else p.b.p += k0 * d.b.ld;
    p.c = partial + b * d.M * d.N;
    p.ldc = d.N;
    descs[b] = p;
    tile_start[b] = b * tiles;
  }
  if (threadIdx.x == 0) tile_start[blocks] = blocks * tiles;
}

// The fold of the blocks' partial products in block order, then the epilogue (as the Fp32 kernel's
// fold and store_value).
__global__ void split_fold_kernel(const GemmDesc d, int64_t blocks, const float* __restrict__ partial) {
  const int64_t MN = d.M * d.N;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < MN; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / d.N, j = e % d.N;
    float v = first_value(d, i, j, partial[e]);
    for (int64_t b = 1; b < blocks; ++b) v = __fmaf_rn(d.alpha, partial[b * MN + e], v);
    store_value(d, i, j, v);
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 1;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 1;
    return v;
  }();
  return n;
}
}  // namespace

int64_t gemm_k_splits(int64_t M, int64_t N, int64_t K, GemmMath math, int32_t form) {
  const int64_t tiles = gemm_tiles(M, N, gemm_tile(math, form, N)), blocks = (K + kGemmKC - 1) / kGemmKC;
  if (tiles == 0 || blocks < 2 || 2 * tiles > sm_count() || blocks * M * N > kMaxSplitFloats) return 1;
  return blocks;
}

void gemm_one(const GemmDesc& d, GemmMath math, cudaStream_t stream, GemmWorkspace* ws) {
  const int32_t form = gemm_form_of(d);
  const GemmTile tile = gemm_tile(math, form, d.N);
  const int64_t tiles = gemm_tiles(d.M, d.N, tile);
  if (tiles == 0) return;
  const int64_t splits = ws && d.alpha != 0.0f ? gemm_k_splits(d.M, d.N, d.K, math, form) : 1;
  if (splits > 1) {
    ws->partial.resize(std::size_t(splits * d.M * d.N));
    ws->descs.resize(std::size_t(splits));
    ws->tile_start.resize(std::size_t(splits + 1));
    split_plan_kernel<<<1, 256, 0, stream>>>(d, splits, tiles, ws->partial.get(), ws->descs.get(), ws->tile_start.get());
    check(cudaGetLastError(), "gemm split launch");
    gemm_grouped(ws->descs.get(), ws->tile_start.get(), int(splits), splits * tiles, math, stream, form, tile);
    const int64_t MN = d.M * d.N;
    split_fold_kernel<<<unsigned(std::min<int64_t>((MN + 255) / 256, 4096)), 256, 0, stream>>>(d, splits, ws->partial.get());
    check(cudaGetLastError(), "gemm split launch");
    return;
  }
  const unsigned grid = grid_of(tiles, "gemm");
  switch (math) {
    case GemmMath::Tf32:
      switch (tf32_kernel()) {
        case GemmTf32Kernel::Async1: launch_async_one<1>(d, gemm_form_of(d), grid, stream); break;
        case GemmTf32Kernel::Async2: launch_async_one<2>(d, gemm_form_of(d), grid, stream); break;
        case GemmTf32Kernel::Mma: launch_mma_one(d, form, grid, stream); break;
        case GemmTf32Kernel::Wgmma:
          if (wgmma_form(form)) launch_wgmma_one<tcw::N128>(d, form, grid, stream);
          else launch_mma_one(d, form, grid, stream);
          break;
        case GemmTf32Kernel::Wgmma256:
          if (wgmma_form(form) && tile.n == tcw::N256::kBN) launch_wgmma_one<tcw::N256>(d, form, grid, stream);
          else if (wgmma_form(form) && wgmma_tf32_supported<tcw::N128>()) launch_wgmma_one<tcw::N128>(d, form, grid, stream);
          else launch_mma_one(d, form, grid, stream);
          break;
        default: gemm_one_kernel<GemmMath::Tf32, 0><<<grid, kThreads, 0, stream>>>(d); break;
      }
      break;
    case GemmMath::Bf16: gemm_one_kernel<GemmMath::Bf16, 0><<<grid, kThreads, 0, stream>>>(d); break;
    default: gemm_one_kernel<GemmMath::Fp32, 0><<<grid, kThreads, 0, stream>>>(d); break;
  }
  check(cudaGetLastError(), "gemm launch");
}

void gemm_plan(const GemmDesc* d_desc, int count, GemmTile tile, int64_t* d_tile_start, cudaStream_t stream) {
  gemm_plan_kernel<<<1, 32, 0, stream>>>(d_desc, count, tile, d_tile_start);
  check(cudaGetLastError(), "gemm plan launch");
}

void gemm_grouped(const GemmDesc* d_desc, const int64_t* d_tile_start, int count, int64_t max_tiles, GemmMath math, cudaStream_t stream,
                  int32_t form, GemmTile tile) {
  if (count <= 0 || max_tiles <= 0) return;
  const unsigned grid = grid_of(max_tiles, "grouped gemm");
  switch (math) {
    case GemmMath::Tf32:
      switch (form == kGemmFormAny ? GemmTf32Kernel::Registers : tf32_kernel()) {
        case GemmTf32Kernel::Async1: launch_async_grouped<1>(d_desc, d_tile_start, count, form, grid, stream); break;
        case GemmTf32Kernel::Async2: launch_async_grouped<2>(d_desc, d_tile_start, count, form, grid, stream); break;
        case GemmTf32Kernel::Mma: launch_mma_grouped(d_desc, d_tile_start, count, form, grid, stream); break;
        case GemmTf32Kernel::Wgmma:
          if (wgmma_form(form)) launch_wgmma_grouped<tcw::N128>(d_desc, d_tile_start, count, form, grid, stream);
          else launch_mma_grouped(d_desc, d_tile_start, count, form, grid, stream);
          break;
        case GemmTf32Kernel::Wgmma256:
          if (wgmma_form(form) && tile.n == tcw::N256::kBN) launch_wgmma_grouped<tcw::N256>(d_desc, d_tile_start, count, form, grid, stream);
          else if (wgmma_form(form) && wgmma_tf32_supported<tcw::N128>()) launch_wgmma_grouped<tcw::N128>(d_desc, d_tile_start, count, form, grid, stream);
          else launch_mma_grouped(d_desc, d_tile_start, count, form, grid, stream);
          break;
        default: gemm_grouped_kernel<GemmMath::Tf32, 0><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
      }
      break;
    case GemmMath::Bf16: gemm_grouped_kernel<GemmMath::Bf16, 0><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
    default: gemm_grouped_kernel<GemmMath::Fp32, 0><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
  }
  check(cudaGetLastError(), "grouped gemm launch");
}

void gemm_batch_sync(const GemmDesc* host_desc, int count, GemmMath math) {
  if (count <= 0) return;
  use_default_device();
  int32_t form = gemm_form_of(host_desc[0]);
  for (int g = 1; g < count; ++g)
    if (gemm_form_of(host_desc[g]) != form) form = kGemmFormAny;
  int64_t n_max = 0;
  for (int g = 0; g < count; ++g) n_max = std::max(n_max, host_desc[g].N);
  const GemmTile tile = gemm_tile(math, form, n_max);
  int64_t tiles = 0;
  for (int g = 0; g < count; ++g) tiles += gemm_tiles(host_desc[g].M, host_desc[g].N, tile);
  DeviceBuffer<GemmDesc> d(static_cast<std::size_t>(count));
  DeviceBuffer<int64_t> starts(static_cast<std::size_t>(count) + 1);
  d.upload(host_desc, std::size_t(count));
  gemm_plan(d.get(), count, tile, starts.get(), nullptr);
  gemm_grouped(d.get(), starts.get(), count, tiles, math, nullptr, form, tile);
  check(cudaDeviceSynchronize(), "grouped gemm");
}

double gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat) {
  use_default_device();
  const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  // operands of small integers (exact in BF16 and TF32: the timing does not depend on values,
  // and the products stay finite)
  std::vector<float> ha(std::size_t(a_rows * a_cols)), hb(std::size_t(b_rows * b_cols));
  for (std::size_t i = 0; i < ha.size(); ++i) ha[i] = float(int(i * 2654435761u % 7u) - 3);
  for (std::size_t i = 0; i < hb.size(); ++i) hb[i] = float(int(i * 40503u % 5u) - 2);
  std::vector<int32_t> hidx(std::size_t(c.trans_a ? c.K : c.M));
  for (std::size_t i = 0; i < hidx.size(); ++i) hidx[i] = int32_t((i * 7919u) % hidx.size());  // a permutation (7919 is prime)
  DeviceBuffer<float> a(ha.size()), b(hb.size()), out(std::size_t(c.M * c.N));
  DeviceBuffer<int32_t> idx(hidx.size());
  a.upload(ha.data(), ha.size());
  b.upload(hb.data(), hb.size());
  idx.upload(hidx.data(), hidx.size());
  GemmDesc d;
  d.M = c.M, d.N = c.N, d.K = c.K;
  d.a = {a.get(), a_cols, c.gather ? idx.get() : nullptr, c.trans_a ? 1 : 0, c.tf32 ? 1 : 0};
  d.b = {b.get(), b_cols, nullptr, c.trans_b ? 1 : 0, c.tf32 ? 1 : 0};
  d.c = out.get(), d.ldc = c.ct ? c.M : c.N, d.ct = c.ct ? 1 : 0;
  return best_event_seconds(repeat, [&] { gemm_one(d, math, nullptr); });
}

}  // namespace calmoe::cuda
