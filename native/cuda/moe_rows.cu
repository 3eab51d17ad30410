// Per-row and per-expert kernels of the CUDA MoE engine (see moe_rows.cuh). One thread per row
// (or entry, or output column) running the CPU engine's per-row body on the shared math of
// core/moe_math.h: the routing, the dispatch, the reductions, and the head of the forward for rows
// wider than the warp-per-row kernels take (moe_rows_warp.cu, which hold the training backward
// too). The build compiles device code with --fmad=false, so nothing is contracted that the CPU
// (-ffp-contract=off) does not contract either. No float atomics anywhere: the reductions here
// (balance statistics, bias gradients) are one thread's chain per column in row order, fed through
// shared-memory tiles.
#include <algorithm>
#include <vector>

#include "calmoe/limits.h"
#include "core/moe_math.h"
#include "core/moe_row_bodies.h"
#include "cuda/moe_rows.cuh"
#include "cuda/moe_rows_warp.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda::moe_rows {
namespace {

constexpr int kThreads = 128;

unsigned blocks_for(int64_t n) { return unsigned(std::max<int64_t>(1, (n + kThreads - 1) / kThreads)); }

__global__ void route_kernel(const Ctx c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= c.n) return;
  const int64_t K = c.K, a = c.a;
  float* r = c.r + i * K;
  moe::softmax(c.g + i * K, K, c.inv_tau, r);
  c.denom[i] = moe::select_experts(r, K, c.routing, a, c.sel + i * a, c.gate + i * a);
  if (c.argmax) {
    int64_t arg = 0;
    for (int64_t k = 1; k < K; ++k)
      if (r[k] > r[arg]) arg = k;
    c.argmax[i] = int32_t(arg);
  }
}

__global__ void expert_softmax_kernel(const Ctx c) {
  const int64_t pos = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pos >= c.n * c.a) return;
  float* z = c.p_expert + pos * c.C;
  moe::softmax(z, c.C, c.inv_temp[c.entry_k[pos]], z);
}

__global__ void combine_kernel(const Ctx c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= c.n) return;
  const int64_t a = c.a, C = c.C;
  const int32_t* ep = c.entry_pos + i * a;
  const float* gate = c.gate + i * a;
  float* p = c.p + i * C;
  if (c.hard_prediction) {  // the argmax expert alone (its gate r is the largest)
    int64_t best = 0;
    for (int64_t s = 1; s < a; ++s)
      if (gate[s] > gate[best]) best = s;
    const float* pk = c.p_expert + int64_t(ep[best]) * C;
    for (int64_t j = 0; j < C; ++j) p[j] = pk[j];
    return;
  }
  // moe::combine's loop (s ascending, one fma chain per class) on entries found through entry_pos
  for (int64_t j = 0; j < C; ++j) {
    float acc = 0.0f;
    for (int64_t s = 0; s < a; ++s) acc = fm::fma_f32(gate[s], c.p_expert[int64_t(ep[s]) * C + j], acc);
    p[j] = acc;
  }
}

__global__ void losses_kernel(const Ctx c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < c.n) moe::row_losses(c, i, c.labels[i]);
}

// ---- dispatch ------------------------------------------------------------------------------------

// a == K: entry (i, k) = k n + i.
__global__ void dispatch_all_kernel(int64_t n, int64_t K, int32_t* entry_pos, int32_t* entry_row, int32_t* entry_k, int64_t* offset) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n * K; e += stride) {
    const int64_t i = e / K, k = e % K, pos = k * n + i;
    entry_pos[e] = int32_t(pos);
    entry_row[pos] = int32_t(i);
    entry_k[pos] = int32_t(k);
  }
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k <= K; k += stride) offset[k] = k * n;
}

// counts[k * chunks + c] = entries of expert k among rows of chunk c (shared-memory histogram;
// integer atomics, so the counts are exact whatever the order).
__global__ void dispatch_count_kernel(const int32_t* sel, int64_t n, int64_t a, int64_t K, int64_t chunks, int32_t* counts) {
  extern __shared__ int32_t hist[];
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) hist[k] = 0;
  __syncthreads();
  const int64_t c = blockIdx.x, i = c * kDispatchRows + threadIdx.x;
  if (threadIdx.x < kDispatchRows && i < n)
    for (int64_t s = 0; s < a; ++s) atomicAdd(&hist[sel[i * a + s]], 1);
  __syncthreads();
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) counts[k * chunks + c] = hist[k];
}

// One block: base = exclusive prefix of counts (expert-major: all chunks of expert 0, then of
// expert 1, ...); offset[k] = base[k * chunks], offset[K] = the total.
constexpr int kScanThreads = 1024;
__global__ void __launch_bounds__(kScanThreads) dispatch_scan_kernel(const int32_t* counts, int64_t K, int64_t chunks, int32_t* base,
                                                                     int64_t* offset) {
  __shared__ int64_t part[kScanThreads];
  const int64_t L = K * chunks, per = (L + kScanThreads - 1) / kScanThreads;
  const int64_t lo = min(L, int64_t(threadIdx.x) * per), hi = min(L, lo + per);
  int64_t s = 0;
  for (int64_t e = lo; e < hi; ++e) s += counts[e];
  part[threadIdx.x] = s;
  __syncthreads();
  __shared__ int64_t total;
  if (threadIdx.x == 0) {
    int64_t run = 0;
    for (int t = 0; t < kScanThreads; ++t) {
      const int64_t v = part[t];
      part[t] = run;
      run += v;
    }
    total = run;
  }
  __syncthreads();
  int64_t run = part[threadIdx.x];
  for (int64_t e = lo; e < hi; ++e) {
    base[e] = int32_t(run);
    run += counts[e];
  }
  __syncthreads();  // base written by the whole block is visible to it after the barrier
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) offset[k] = base[k * chunks];
  if (threadIdx.x == 0) offset[K] = total;
}

// Whether ascending row[0..a) holds k.
__device__ __forceinline__ bool row_has(const int32_t* row, int64_t a, int32_t k) {
  int64_t lo = 0, hi = a;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (row[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo < a && row[lo] == k;
}

__global__ void dispatch_fill_kernel(const int32_t* sel, int64_t n, int64_t a, int64_t chunks, const int32_t* base, int32_t* entry_pos,
                                     int32_t* entry_row, int32_t* entry_k) {
  const int64_t c = blockIdx.x, c0 = c * kDispatchRows, i = c0 + threadIdx.x;
  if (threadIdx.x >= kDispatchRows || i >= n) return;
  for (int64_t s = 0; s < a; ++s) {
    const int32_t k = sel[i * a + s];
    int64_t rank = 0;  // earlier rows of this chunk that chose k: the stable order
    for (int64_t i2 = c0; i2 < i; ++i2) rank += row_has(sel + i2 * a, a, k) ? 1 : 0;
    const int64_t pos = int64_t(base[int64_t(k) * chunks + c]) + rank;
    entry_pos[i * a + s] = int32_t(pos);
    entry_row[pos] = int32_t(i);
    entry_k[pos] = k;
  }
}

// ---- reductions ------------------------------------------------------------------------------------

// Column reductions in row order (bias gradients, balance statistics): a block owns 32 columns
// of one row range. Its 256 threads load 128 rows x 32 columns at a time (coalesced; the next
// tile's loads in flight while the current one is consumed) into shared memory, where warp 0 adds
// each column's values in row order, in double: the one-thread loop's sum, without its wait on
// every load (one thread per column with 8 rows in flight left a 16-column router bias over 16384
// rows to one half-empty, latency-bound warp).
constexpr int kSumCols = 32, kSumThreads = 256, kSumRowsPerThread = 16;
constexpr int kSumRows = kSumThreads / kSumCols * kSumRowsPerThread;  // 128 rows per tile
using SumTile = float[kSumRows][kSumCols];

// Streams rows r0 .. r1 - 1 of columns j0 .. j0 + 31 of m (row stride ld; columns >= cols read as
// 0) through `tile`; consume(base, count) runs on every thread of the block after each tile lands.
template <class Consume>
__device__ __forceinline__ void stream_row_tiles(const float* m, int64_t ld, int64_t cols, int64_t j0, int64_t r0, int64_t r1, SumTile& tile,
                                                 Consume consume) {
  const int c = int(threadIdx.x) % kSumCols, rsub = int(threadIdx.x) / kSumCols;
  const bool col_in = j0 + c < cols;
  float v[kSumRowsPerThread];
  auto load = [&](int64_t base) {  // rows base + rsub + 8 u of this thread's column
#pragma unroll
    for (int u = 0; u < kSumRowsPerThread; ++u) {
      const int64_t r = base + rsub + int64_t(kSumThreads / kSumCols) * u;
      v[u] = col_in && r < r1 ? m[r * ld + j0 + c] : 0.0f;
    }
  };
  if (r0 < r1) load(r0);
  for (int64_t base = r0; base < r1; base += kSumRows) {
#pragma unroll
    for (int u = 0; u < kSumRowsPerThread; ++u) tile[rsub + (kSumThreads / kSumCols) * u][c] = v[u];
    __syncthreads();
    if (base + kSumRows < r1) load(base + kSumRows);  // in flight while the tile is consumed
    consume(base, r1 - base < kSumRows ? r1 - base : int64_t(kSumRows));
    __syncthreads();
  }
}

// Load balance (Switch): per expert k, f = sum over rows with argmax k of 1/n and m = sum of
// r_ik / n, both in double over the rows in order (balance_kernel's CPU twin: cpu/moe_engine.cpp).
__global__ void __launch_bounds__(kSumThreads) balance_kernel(const float* r, const int32_t* argmax, int64_t n, int64_t K, double alpha,
                                                              double* frac, double* mean_r, float* grad) {
  __shared__ SumTile tile;
  const int64_t k0 = int64_t(blockIdx.x) * kSumCols, k = k0 + threadIdx.x;
  double f = 0, m = 0;
  stream_row_tiles(r, K, K, k0, 0, n, tile, [&](int64_t base, int64_t count) {
    if (threadIdx.x >= kSumCols) return;
    for (int64_t i = 0; i < count; ++i) {
      if (argmax[base + i] == k) f += 1.0 / double(n);
      m += double(tile[i][threadIdx.x]) / double(n);
    }
  });
  if (threadIdx.x < kSumCols && k < K) {
    frac[k] = f;
    mean_r[k] = m;
    grad[k] = float(alpha * double(K) * f / double(n));
  }
}

__global__ void __launch_bounds__(kSumThreads) column_sums_kernel(const float* m, int64_t ld, int64_t cols, const int64_t* offset,
                                                                  int64_t rows, float* out, int64_t out_stride) {
  __shared__ SumTile tile;
  const int64_t g = blockIdx.y, j0 = int64_t(blockIdx.x) * kSumCols;
  double acc = 0;
  stream_row_tiles(m, ld, cols, j0, offset ? offset[g] : 0, offset ? offset[g + 1] : rows, tile, [&](int64_t, int64_t count) {
    if (threadIdx.x < kSumCols)
      for (int64_t i = 0; i < count; ++i) acc += tile[i][threadIdx.x];
  });
  if (threadIdx.x < kSumCols && j0 + threadIdx.x < cols) out[g * out_stride + j0 + threadIdx.x] = float(acc);
}

template <class T>
__global__ void gather_rows_kernel(const T* src, const int32_t* idx, int64_t count, int64_t C, T* dst) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < count * C; e += stride)
    dst[e] = src[int64_t(idx[e / C]) * C + e % C];
}

unsigned grid_stride_blocks(int64_t n) { return unsigned(std::min<int64_t>(std::max<int64_t>(1, (n + kThreads - 1) / kThreads), 65536)); }

}  // namespace

void route(const Ctx& c, cudaStream_t stream) {
  if (route_warp(c, stream)) return;
  route_kernel<<<blocks_for(c.n), kThreads, 0, stream>>>(c);
  check(cudaGetLastError(), "moe route launch");
}

void head(const Ctx& c, cudaStream_t stream) {
  if (head_warp(c, stream)) return;
  expert_softmax_kernel<<<blocks_for(c.n * c.a), kThreads, 0, stream>>>(c);
  check(cudaGetLastError(), "moe expert softmax launch");
  combine_kernel<<<blocks_for(c.n), kThreads, 0, stream>>>(c);
  check(cudaGetLastError(), "moe combine launch");
  if (!c.labels) return;
  losses_kernel<<<blocks_for(c.n), kThreads, 0, stream>>>(c);
  check(cudaGetLastError(), "moe losses launch");
}

void dispatch(const int32_t* sel, int64_t n, int64_t a, int64_t K, const Dispatch& d, cudaStream_t stream) {
  if (a == K) {
    dispatch_all_kernel<<<grid_stride_blocks(n * K + 1), kThreads, 0, stream>>>(n, K, d.entry_pos, d.entry_row, d.entry_k, d.offset);
    check(cudaGetLastError(), "moe dispatch launch");
    return;
  }
  const int64_t chunks = dispatch_chunks(n);
  // one count per expert in shared memory: within the 48 KB every device gives a block
  static_assert(limits::kMaxExperts * sizeof(int32_t) <= 48 * 1024, "experts' counts fit shared memory");
  const std::size_t shmem = std::size_t(K) * sizeof(int32_t);
  dispatch_count_kernel<<<unsigned(chunks), kDispatchRows, shmem, stream>>>(sel, n, a, K, chunks, d.counts);
  check(cudaGetLastError(), "moe dispatch count launch");
  dispatch_scan_kernel<<<1, kScanThreads, 0, stream>>>(d.counts, K, chunks, d.base, d.offset);
  check(cudaGetLastError(), "moe dispatch scan launch");
  dispatch_fill_kernel<<<unsigned(chunks), kDispatchRows, 0, stream>>>(sel, n, a, chunks, d.base, d.entry_pos, d.entry_row, d.entry_k);
  check(cudaGetLastError(), "moe dispatch fill launch");
}

void balance(const float* r, const int32_t* argmax, int64_t n, int64_t K, double alpha, double* frac, double* mean_r, float* grad,
             cudaStream_t stream) {
  balance_kernel<<<unsigned((K + kSumCols - 1) / kSumCols), kSumThreads, 0, stream>>>(r, argmax, n, K, alpha, frac, mean_r, grad);
  check(cudaGetLastError(), "moe balance launch");
}

void column_sums(const float* m, int64_t ld, int64_t cols, const int64_t* offset, int64_t rows, int64_t groups, float* out,
                 int64_t out_stride, cudaStream_t stream) {
  if (cols <= 0 || groups <= 0) return;
  const dim3 grid(unsigned((cols + kSumCols - 1) / kSumCols), unsigned(groups));
  column_sums_kernel<<<grid, kSumThreads, 0, stream>>>(m, ld, cols, offset, rows, out, out_stride);
  check(cudaGetLastError(), "moe column sums launch");
}

void gather_rows(const float* src, const int32_t* idx, int64_t count, int64_t C, float* dst, cudaStream_t stream) {
  if (count <= 0) return;
  gather_rows_kernel<float><<<grid_stride_blocks(count * C), kThreads, 0, stream>>>(src, idx, count, C, dst);
  check(cudaGetLastError(), "moe gather launch");
}

void gather_rows(const int32_t* src, const int32_t* idx, int64_t count, int64_t C, int32_t* dst, cudaStream_t stream) {
  if (count <= 0) return;
  gather_rows_kernel<int32_t><<<grid_stride_blocks(count * C), kThreads, 0, stream>>>(src, idx, count, C, dst);
  check(cudaGetLastError(), "moe gather launch");
}

void dispatch_host(const int32_t* sel, int64_t n, int64_t a, int64_t K, int32_t* entry_pos, int32_t* entry_row, int64_t* offset) {
  use_default_device();
  const int64_t E = n * a, chunks = dispatch_chunks(n);
  DeviceBuffer<int32_t> d_sel{std::size_t(E)}, d_pos{std::size_t(E)}, d_row{std::size_t(E)}, d_k{std::size_t(E)};
  DeviceBuffer<int32_t> d_counts{std::size_t(K * chunks)}, d_base{std::size_t(K * chunks)};
  DeviceBuffer<int64_t> d_off{std::size_t(K + 1)};
  d_sel.upload(sel, std::size_t(E));
  Dispatch d;
  d.counts = d_counts.get();
  d.base = d_base.get();
  d.offset = d_off.get();
  d.entry_pos = d_pos.get();
  d.entry_row = d_row.get();
  d.entry_k = d_k.get();
  dispatch(d_sel.get(), n, a, K, d, nullptr);
  check(cudaDeviceSynchronize(), "moe dispatch");
  d_pos.download(entry_pos, std::size_t(E));
  d_row.download(entry_row, std::size_t(E));
  d_off.download(offset, std::size_t(K + 1));
}

}  // namespace calmoe::cuda::moe_rows
