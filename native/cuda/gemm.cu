// CUDA GEMM (see gemm.cuh for the semantics and the summation order).
//
// Tiling (both modes): a block of 256 threads owns a 64 x 64 output tile and walks k in steps of
// kBK = 16. Each step stages A(m0.., k0..) as As[k][m] and B(k0.., n0..) as Bs[k][n] in shared
// memory (gathered rows and transposes resolved in the loads; the load order follows the storage
// order of the operand, so global reads are contiguous either way; every staged element is
// written, out-of-range ones as 0, so no uninitialised shared memory is read). Fp32: thread
// (tx, ty) = (tid % 16, tid / 16) owns the 4 x 4 outputs (4 ty + i, 4 tx + j), reads its 4 values
// of A and of B per k as one 16-byte shared load each, and runs one fma chain per output over
// exactly the valid k (no padded k enters a chain, so zeros keep their sign as on the CPU).
// Tf32 and Bf16 (tensor cores): warp w computes two 16 x 16 wmma accumulators (rows 16 (w % 4),
// columns 16 (2 (w / 4)) and 16 (2 (w / 4) + 1)), stages them through shared memory, and the same
// threads then run the same epilogue as Fp32 (Bf16 first copies the staged tiles to BF16).
// Registers: at most 128 per thread (two resident blocks per SM), no spills (ptxas, sm_90).
// Not yet tuned on a GPU: no double buffering of the global loads, one tile shape for all sizes.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/activation.h"
#include "cuda/gemm.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMinBlocks = 2;  // resident blocks per SM the register budget must allow (<= 128 registers)
constexpr int kBM = kGemmTileM, kBN = kGemmTileN, kBK = 16;
constexpr int kPad = 4;          // row padding of the staged tiles (fewer bank conflicts; keeps wmma's 32-byte alignment)
constexpr int kTM = 4, kTN = 4;  // outputs per thread
static_assert(kBM == 16 * kTM && kBN == 16 * kTN, "16 x 16 threads of kTM x kTN outputs");
static_assert(kGemmKC % kBK == 0, "summation blocks are whole k steps");

struct __align__(32) Tiles {
  float a[kBK][kBM + kPad];
  float b[kBK][kBN + kPad];
};

__device__ __forceinline__ int64_t storage_row(const GemmOperand& o, int64_t r) { return o.rows ? int64_t(o.rows[r]) : r; }

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

// Folds one summation block into v (as the CPU kernel's write-back of a KC block).
__device__ __forceinline__ void fold(const GemmDesc& d, int64_t m0, int64_t n0, bool first, const float (&acc)[kTM][kTN],
                                     float (&v)[kTM][kTN]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      if (first) {
        float x = d.alpha * acc[i][j];
        const int64_t gi = m0 + tile_row(i), gj = n0 + tile_col(j);
        if (d.beta != 0.0f && gi < d.M && gj < d.N) x = __fmaf_rn(d.beta, d.c[gi * d.ldc + gj], x);
        v[i][j] = x;
      } else {
        v[i][j] = __fmaf_rn(d.alpha, acc[i][j], v[i][j]);
      }
    }
  }
}

// The epilogue of cpu::gemm_detail::epilogue_value, then the store.
__device__ __forceinline__ void epilogue(const GemmDesc& d, int64_t m0, int64_t n0, const float (&v)[kTM][kTN]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int64_t gi = m0 + tile_row(i);
    if (gi >= d.M) continue;
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t gj = n0 + tile_col(j);
      if (gj >= d.N) continue;
      float x = v[i][j];
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
  const int64_t tiles_n = (d.N + kBN - 1) / kBN;
  const int64_t m0 = tile / tiles_n * kBM, n0 = tile % tiles_n * kBN;
  const int64_t K = d.alpha == 0.0f ? 0 : d.K;
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

// BF16 copies of the staged tiles (wmma's bf16 fragments load 16-bit elements from shared memory;
// leading dimensions a multiple of 8 elements).
constexpr int kBfPad = 8;
struct __align__(32) TilesBf16 {
  __nv_bfloat16 a[kBK][kBM + kBfPad];
  __nv_bfloat16 b[kBK][kBN + kBfPad];
};

// One output tile on tensor cores (sm_80+; never launched on older cards): Tf32 (m16n16k8, inputs
// rounded to TF32 in the fragments) or Bf16 (m16n16k16, inputs rounded to nearest-even BF16 while
// copied to `tb`). Warp w accumulates rows 16 (w % 4) and columns 16 (2 (w / 4)) + 0..31 in FP32;
// the accumulators go through shared memory `cs` so that the same threads then run Fp32's epilogue.
template <GemmMath kMath>
__device__ void tile_tc(const GemmDesc& d, int64_t tile, Tiles& t, TilesBf16& tb, float (*cs)[kBN + kPad]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)d;
  (void)tile;
  (void)t;
  (void)tb;
  (void)cs;
  __trap();
#elif defined(__CUDA_ARCH__)
  using namespace nvcuda;
  const int64_t tiles_n = (d.N + kBN - 1) / kBN;
  const int64_t m0 = tile / tiles_n * kBM, n0 = tile % tiles_n * kBN;
  const int64_t K = d.alpha == 0.0f ? 0 : d.K;
  const int warp = threadIdx.x / 32, fm = warp % 4, fn = (warp / 4) * 2;
  constexpr int kFragK = kMath == GemmMath::Bf16 ? 16 : 8;
  wmma::fragment<wmma::accumulator, 16, 16, kFragK, float> c0, c1;
  wmma::fill_fragment(c0, 0.0f);
  wmma::fill_fragment(c1, 0.0f);
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    load_tiles(d, m0, n0, k0, K, t);
    __syncthreads();
    if constexpr (kMath == GemmMath::Bf16) {
      static_assert(kBK == 16, "one m16n16k16 step per staged k block");
      for (int e = threadIdx.x; e < kBK * kBM; e += kThreads) tb.a[e / kBM][e % kBM] = __float2bfloat16_rn(t.a[e / kBM][e % kBM]);
      for (int e = threadIdx.x; e < kBK * kBN; e += kThreads) tb.b[e / kBN][e % kBN] = __float2bfloat16_rn(t.b[e / kBN][e % kBN]);
      __syncthreads();
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb0, fb1;
      wmma::load_matrix_sync(fa, &tb.a[0][16 * fm], kBM + kBfPad);
      wmma::load_matrix_sync(fb0, &tb.b[0][16 * fn], kBN + kBfPad);
      wmma::load_matrix_sync(fb1, &tb.b[0][16 * (fn + 1)], kBN + kBfPad);
      wmma::mma_sync(c0, fa, fb0, c0);
      wmma::mma_sync(c1, fa, fb1, c1);
    } else {
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 8) {  // padded k are zeros: they add exactly 0
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb0, fb1;
        wmma::load_matrix_sync(fa, &t.a[kk][16 * fm], kBM + kPad);
        wmma::load_matrix_sync(fb0, &t.b[kk][16 * fn], kBN + kPad);
        wmma::load_matrix_sync(fb1, &t.b[kk][16 * (fn + 1)], kBN + kPad);
#pragma unroll
        for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(fa.x[e]);
#pragma unroll
        for (int e = 0; e < fb0.num_elements; ++e) {
          fb0.x[e] = wmma::__float_to_tf32(fb0.x[e]);
          fb1.x[e] = wmma::__float_to_tf32(fb1.x[e]);
        }
        wmma::mma_sync(c0, fa, fb0, c0);
        wmma::mma_sync(c1, fa, fb1, c1);
      }
    }
    __syncthreads();
  }
  wmma::store_matrix_sync(&cs[16 * fm][16 * fn], c0, kBN + kPad, wmma::mem_row_major);
  wmma::store_matrix_sync(&cs[16 * fm][16 * (fn + 1)], c1, kBN + kPad, wmma::mem_row_major);
  __syncthreads();
  float acc[kTM][kTN], v[kTM][kTN];
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int j = 0; j < kTN; ++j) acc[i][j] = cs[tile_row(i)][tile_col(j)];
  fold(d, m0, n0, true, acc, v);
  epilogue(d, m0, n0, v);
#else
  (void)d;
  (void)tile;
  (void)t;
  (void)tb;
  (void)cs;
#endif
}

template <GemmMath kMath>
__device__ __forceinline__ void run_tile(const GemmDesc& d, int64_t tile) {
  __shared__ Tiles t;
  if constexpr (kMath == GemmMath::Fp32) {
    tile_fp32(d, tile, t);
  } else {
    __shared__ TilesBf16 tb;  // unused by Tf32 (the compiler drops it)
    __shared__ __align__(32) float cs[kBM][kBN + kPad];
    tile_tc<kMath>(d, tile, t, tb, cs);
  }
}

template <GemmMath kMath>
__global__ void __launch_bounds__(kThreads, kMinBlocks) gemm_one_kernel(const GemmDesc d) {
  run_tile<kMath>(d, int64_t(blockIdx.x));
}

template <GemmMath kMath>
__global__ void __launch_bounds__(kThreads, kMinBlocks) gemm_grouped_kernel(const GemmDesc* __restrict__ descs, const int64_t* __restrict__ tile_start,
                                                                int count) {
  const int64_t tile = int64_t(blockIdx.x);
  if (tile >= tile_start[count]) return;  // the whole block: the bound was an upper bound
  int lo = 0, hi = count;                 // tile_start[lo] <= tile < tile_start[hi]
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    if (tile_start[mid] <= tile) lo = mid;
    else hi = mid;
  }
  // the descriptor in shared memory, read as needed (a register copy costs ~40 registers); raw
  // storage: GemmDesc's default member initialisers would be a (non-)initialiser of a __shared__
  __shared__ __align__(16) unsigned char raw[sizeof(GemmDesc)];
  GemmDesc& d = *reinterpret_cast<GemmDesc*>(raw);
  if (threadIdx.x == 0) std::memcpy(raw, descs + lo, sizeof(GemmDesc));
  __syncthreads();
  run_tile<kMath>(d, tile - tile_start[lo]);
}

__global__ void gemm_plan_kernel(const GemmDesc* __restrict__ descs, int count, int64_t* __restrict__ tile_start) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int64_t t = 0;
  for (int g = 0; g < count; ++g) {
    tile_start[g] = t;
    t += gemm_tiles(descs[g].M, descs[g].N);
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

GemmMath effective(GemmMath m) { return m == GemmMath::Fp32 || tensor_cores_supported() ? m : GemmMath::Fp32; }

unsigned grid_of(int64_t tiles, const char* what) {
  if (tiles > int64_t(INT_MAX)) throw_runtime(std::string(what) + ": " + std::to_string(tiles) + " tiles exceed one launch");
  return unsigned(tiles);
}

}  // namespace

GemmMath gemm_math_of(MatmulPrecision p) {
  return p == MatmulPrecision::Fp32 ? GemmMath::Fp32 : p == MatmulPrecision::Bf16 ? GemmMath::Bf16 : GemmMath::Tf32;
}

const char* gemm_math_name(GemmMath m) { return m == GemmMath::Tf32 ? "tf32" : m == GemmMath::Bf16 ? "bf16" : "fp32"; }

void gemm_one(const GemmDesc& d, GemmMath math, cudaStream_t stream) {
  const int64_t tiles = gemm_tiles(d.M, d.N);
  if (tiles == 0) return;
  const unsigned grid = grid_of(tiles, "gemm");
  switch (effective(math)) {
    case GemmMath::Tf32: gemm_one_kernel<GemmMath::Tf32><<<grid, kThreads, 0, stream>>>(d); break;
    case GemmMath::Bf16: gemm_one_kernel<GemmMath::Bf16><<<grid, kThreads, 0, stream>>>(d); break;
    default: gemm_one_kernel<GemmMath::Fp32><<<grid, kThreads, 0, stream>>>(d); break;
  }
  check(cudaGetLastError(), "gemm launch");
}

void gemm_plan(const GemmDesc* d_desc, int count, int64_t* d_tile_start, cudaStream_t stream) {
  gemm_plan_kernel<<<1, 32, 0, stream>>>(d_desc, count, d_tile_start);
  check(cudaGetLastError(), "gemm plan launch");
}

void gemm_grouped(const GemmDesc* d_desc, const int64_t* d_tile_start, int count, int64_t max_tiles, GemmMath math, cudaStream_t stream) {
  if (count <= 0 || max_tiles <= 0) return;
  const unsigned grid = grid_of(max_tiles, "grouped gemm");
  switch (effective(math)) {
    case GemmMath::Tf32: gemm_grouped_kernel<GemmMath::Tf32><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
    case GemmMath::Bf16: gemm_grouped_kernel<GemmMath::Bf16><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
    default: gemm_grouped_kernel<GemmMath::Fp32><<<grid, kThreads, 0, stream>>>(d_desc, d_tile_start, count); break;
  }
  check(cudaGetLastError(), "grouped gemm launch");
}

void gemm_batch_sync(const GemmDesc* host_desc, int count, GemmMath math) {
  if (count <= 0) return;
  use_default_device();
  int64_t tiles = 0;
  for (int g = 0; g < count; ++g) tiles += gemm_tiles(host_desc[g].M, host_desc[g].N);
  DeviceBuffer<GemmDesc> d(static_cast<std::size_t>(count));
  DeviceBuffer<int64_t> starts(static_cast<std::size_t>(count) + 1);
  d.upload(host_desc, std::size_t(count));
  gemm_plan(d.get(), count, starts.get(), nullptr);
  gemm_grouped(d.get(), starts.get(), count, tiles, math, nullptr);
  check(cudaDeviceSynchronize(), "grouped gemm");
}

}  // namespace calmoe::cuda
