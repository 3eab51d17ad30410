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
// an H200: 27 TFLOP/s TF32 (one block per SM, latency-bound). Hand-written TF32 variants (cp.async,
// mma.sync, wgmma) that never ran on a GPU were removed on 2026-12-07 (git history: commit 70e368d);
// one returns only after a recorded GPU run shows it correct and faster.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/activation.h"
#include "cuda/gemm.cuh"
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

// v = alpha * acc (+ beta * C): the value of the first summation block (C read only in range).
__device__ __forceinline__ float first_value(const GemmDesc& d, int64_t gi, int64_t gj, float acc) {
  float x = d.alpha * acc;
  if (d.beta != 0.0f && gi < d.M && gj < d.N) x = __fmaf_rn(d.beta, d.c[gi * d.ldc + gj], x);
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
  d.c[gi * d.ldc + gj] = x;
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
// wmma: ldm a multiple of 16 bytes. kPadF = 4 is the layout that ran on the H200 (2026-11-28);
// 8 (a float row stride of 8 mod 32 banks: conflict-free fragment loads) is the better guess, but
// it has not run on a card, and this kernel is the measured fallback: it changes after a GPU run.
constexpr int kPadF = 4, kPadH = 8;
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

// Fp32: two resident blocks per SM (<= 128 registers); the tensor-core kernel: one (its accumulators
// and prefetch registers need more).
template <GemmMath kMath>
constexpr int kBlocksPerSm = kMath == GemmMath::Fp32 ? kMinBlocks : 1;

template <GemmMath kMath>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm<kMath>) gemm_one_kernel(const GemmDesc d) {
  run_tile<kMath>(d, int64_t(blockIdx.x));
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

template <GemmMath kMath>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm<kMath>) gemm_grouped_kernel(const GemmDesc* __restrict__ descs,
                                                                               const int64_t* __restrict__ tile_start, int count) {
  // raw storage: GemmDesc's default member initialisers would be a (non-)initialiser of a __shared__
  __shared__ __align__(16) unsigned char raw[sizeof(GemmDesc)];
  const int64_t tile = find_group(descs, tile_start, count, raw);
  if (tile < 0) return;
  run_tile<kMath>(*reinterpret_cast<const GemmDesc*>(raw), tile);
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

int64_t gemm_k_splits(int64_t M, int64_t N, int64_t K, GemmMath math) {
  const int64_t tiles = gemm_tiles(M, N, gemm_tile_of(math)), blocks = (K + kGemmKC - 1) / kGemmKC;
  if (tiles == 0 || blocks < 2 || 2 * tiles > sm_count() || blocks * M * N > kMaxSplitFloats) return 1;
  return blocks;
}

void gemm_one(const GemmDesc& d, GemmMath math, cudaStream_t stream, GemmWorkspace* ws) {
  const int64_t tiles = gemm_tiles(d.M, d.N, gemm_tile_of(math));
  if (tiles == 0) return;
  const int64_t splits = ws && d.alpha != 0.0f ? gemm_k_splits(d.M, d.N, d.K, math) : 1;
  if (splits > 1) {
    ws->partial.resize(std::size_t(splits * d.M * d.N));
    ws->descs.resize(std::size_t(splits));
    ws->tile_start.resize(std::size_t(splits + 1));
    split_plan_kernel<<<1, 256, 0, stream>>>(d, splits, tiles, ws->partial.get(), ws->descs.get(), ws->tile_start.get());
    check(cudaGetLastError(), "gemm split launch");
    gemm_grouped(ws->descs.get(), ws->tile_start.get(), int(splits), splits * tiles, math, stream);
    const int64_t MN = d.M * d.N;
    split_fold_kernel<<<unsigned(std::min<int64_t>((MN + 255) / 256, 4096)), 256, 0, stream>>>(d, splits, ws->partial.get());
    check(cudaGetLastError(), "gemm split launch");
    return;
  }
  const unsigned grid = grid_of(tiles, "gemm");
  switch (math) {
    case GemmMath::Tf32: gemm_one_kernel<GemmMath::Tf32><<<grid, kThreads, 0, stream>>>(d); break;
    case GemmMath::Bf16: gemm_one_kernel<GemmMath::Bf16><<<grid, kThreads, 0, stream>>>(d); break;
    default: gemm_one_kernel<GemmMath::Fp32><<<grid, kThreads, 0, stream>>>(d); break;
  }
  check(cudaGetLastError(), "gemm launch");
}

void gemm_plan(const GemmDesc* d_desc, int count, GemmTile tile, int64_t* d_tile_start, cudaStream_t stream) {
  gemm_plan_kernel<<<1, 32, 0, stream>>>(d_desc, count, tile, d_tile_start);
  check(cudaGetLastError(), "gemm plan launch");
}

void gemm_grouped(const GemmDesc* d_desc, const int64_t* d_tile_start, int count, int64_t max_tiles, GemmMath math, cudaStream_t stream) {
  if (count <= 0 || max_tiles <= 0) return;
  const unsigned grid = grid_of(max_tiles, "grouped gemm");
  switch (math) {
    case GemmMath::Tf32: gemm_grouped_kernel<GemmMath::Tf32><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
    case GemmMath::Bf16: gemm_grouped_kernel<GemmMath::Bf16><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
    default: gemm_grouped_kernel<GemmMath::Fp32><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
  }
  check(cudaGetLastError(), "grouped gemm launch");
}

void gemm_batch_sync(const GemmDesc* host_desc, int count, GemmMath math) {
  if (count <= 0) return;
  use_default_device();
  const GemmTile tile = gemm_tile_of(math);
  int64_t tiles = 0;
  for (int g = 0; g < count; ++g) tiles += gemm_tiles(host_desc[g].M, host_desc[g].N, tile);
  DeviceBuffer<GemmDesc> d(static_cast<std::size_t>(count));
  DeviceBuffer<int64_t> starts(static_cast<std::size_t>(count) + 1);
  d.upload(host_desc, std::size_t(count));
  gemm_plan(d.get(), count, tile, starts.get(), nullptr);
  gemm_grouped(d.get(), starts.get(), count, tiles, math, nullptr);
  check(cudaDeviceSynchronize(), "grouped gemm");
}

void gemm_bench_operands(const GemmBenchCase& c, GemmBenchOperands* o) {
  const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  std::vector<float> ha(std::size_t(a_rows * a_cols)), hb(std::size_t(b_rows * b_cols));
  for (std::size_t i = 0; i < ha.size(); ++i) ha[i] = float(int(i * 2654435761u % 7u) - 3);
  for (std::size_t i = 0; i < hb.size(); ++i) hb[i] = float(int(i * 40503u % 5u) - 2);
  o->a.resize(ha.size());
  o->b.resize(hb.size());
  o->out.resize(std::size_t(c.M * c.N));
  o->a.upload(ha.data(), ha.size());
  o->b.upload(hb.data(), hb.size());
  o->lda = a_cols;
  o->ldb = b_cols;
}

double gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat) {
  use_default_device();
  GemmBenchOperands ops;
  gemm_bench_operands(c, &ops);
  std::vector<int32_t> hidx(std::size_t(c.trans_a ? c.K : c.M));
  for (std::size_t i = 0; i < hidx.size(); ++i) hidx[i] = int32_t((i * 7919u) % hidx.size());  // a permutation (7919 is prime)
  DeviceBuffer<int32_t> idx(hidx.size());
  idx.upload(hidx.data(), hidx.size());
  GemmDesc d;
  d.M = c.M, d.N = c.N, d.K = c.K;
  d.a = {ops.a.get(), ops.lda, c.gather ? idx.get() : nullptr, c.trans_a ? 1 : 0};
  d.b = {ops.b.get(), ops.ldb, nullptr, c.trans_b ? 1 : 0};
  d.c = ops.out.get(), d.ldc = c.N;
  return best_event_seconds(repeat, [&] { gemm_one(d, math, nullptr); });
}

}  // namespace calmoe::cuda
