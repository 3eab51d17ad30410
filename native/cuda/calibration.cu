// CUDA backend of the calibration histogram: one pass over the rows, a thread per row with the
// shared per-row math, a shared-memory histogram per block (integer atomics only: exact and
// order-independent), flushed to one global histogram; inputs streamed in chunks. Rows of up to
// 16 classes are first staged through shared memory a tile at a time with coalesced 16-byte loads
// (a thread reading its own 40-byte row would touch a new cache line per column).
#include <algorithm>
#include <climits>

#include "core/calibration.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

using namespace calib;
using ull = unsigned long long;

constexpr int kThreads = 256;
constexpr int kMaxSharedCells = 1024;                 // groups x bins: 1024 x 4 words x 8 B = 32 KB
constexpr int kMaxTileCols = 16;                      // staged tiles: kThreads rows x 16 floats = 16 KB
constexpr int64_t kChunkElements = int64_t(1) << 26;  // 256 MB of float scores per chunk

__device__ __forceinline__ void add_row_to_bin(ull* bins, int cell, float conf, bool positive) {
  ull* b = bins + int64_t(cell) * kBinWords;
  atomicAdd(b, 1ull);
  if (positive) atomicAdd(b + 1, 1ull);
  atomic_add_u128(b + 2, b + 3, to_fixed(conf, kConfFracBits));
}

// Adds row i (of the args' rows) into the block's histogram and the thread's totals.
struct ThreadTotals {
  ull rows = 0, correct = 0;
  uint64_t nll_lo = 0, nll_hi = 0, br_lo = 0, br_hi = 0;  // 128-bit fixed-point sums (core/fixed_point.h)
};

__device__ __forceinline__ void take_row(const KernelArgs& a, int64_t i, int64_t row0, ull* bins, ull* g_first_bad, ThreadTotals& t) {
  const RowOut r = eval_row(a, i);
  if (r.issue != kOk) {
    atomicMin(g_first_bad, ull(row0 + i));
    return;
  }
  t.rows += 1;
  t.correct += r.correct ? 1 : 0;
  if (a.extras) {
    u128_add(t.nll_lo, t.nll_hi, to_fixed(r.nll, kNllFracBits));
    u128_add(t.br_lo, t.br_hi, to_fixed(r.brier, kBrierFracBits));
  }
  if (a.out_conf) {
    a.out_conf[i] = r.conf;
    a.out_positive[i] = r.positive ? 1 : 0;
  }
  const int M = a.bins;
  if (a.kind == CalibKind::Classwise) {
    const float* row = a.scores + i * a.cols;
    const int32_t y = a.labels[i];
    for (int64_t j = 0; j < a.cols; ++j) {
      const float pj = class_prob(row, j, a.score_kind, r);
      add_row_to_bin(bins, int(j) * M + bin_of(pj, M, a.left_closed), pj, j == y);
    }
  } else {
    add_row_to_bin(bins, cell_of(a, i, r.conf), r.conf, r.positive);
  }
}

// The args of rows [base, ...) with their scores read from a staged tile.
__device__ __forceinline__ KernelArgs tile_args(const KernelArgs& a, int64_t base, const float* tile) {
  KernelArgs t = a;
  t.scores = tile;
  t.rows = a.rows - base;
  if (a.labels) t.labels = a.labels + base;
  if (a.correct) t.correct = a.correct + base;
  if (a.group_ids) t.group_ids = a.group_ids + base;
  if (a.out_conf) {
    t.out_conf = a.out_conf + base;
    t.out_positive = a.out_positive + base;
  }
  return t;
}

// kShared: histogram in shared memory (cells <= kMaxSharedCells). kTiled: TopLabel/Classwise rows
// of at most kMaxTileCols classes staged through shared memory (dynamic shared memory after the
// histogram: kThreads * kMaxTileCols floats).
template <bool kShared, bool kTiled>
__global__ void calib_kernel(KernelArgs a, int64_t row0, ull* g_state, ull* g_first_bad) {
  extern __shared__ __align__(16) ull s_dyn[];
  __shared__ ull s_tot[kHeaderWords];
  const int64_t cells = int64_t(a.groups) * a.bins;
  ull* bins = kShared ? s_dyn : g_state + kHeaderWords;
  float* tile = reinterpret_cast<float*>(s_dyn + (kShared ? cells * kBinWords : 0));
  if (threadIdx.x < kHeaderWords) s_tot[threadIdx.x] = 0;
  if (kShared) {
    for (int64_t k = threadIdx.x; k < cells * kBinWords; k += blockDim.x) s_dyn[k] = 0;
  }
  __syncthreads();

  ThreadTotals t;
  if (kTiled) {
    // tiles of blockDim.x rows, block-strided; every thread of the block runs every iteration
    const int64_t C = a.cols;
    for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < a.rows; base += int64_t(gridDim.x) * blockDim.x) {
      const int64_t n = min(int64_t(blockDim.x), a.rows - base);
      const float* src = a.scores + base * C;
      const int64_t floats = n * C;
      // 16-byte loads when the tile starts on a 16-byte boundary (the chunk buffer does; tiles of
      // blockDim.x rows keep it), then the tail
      const bool aligned = (reinterpret_cast<uintptr_t>(src) & 15u) == 0;
      const int64_t vec = aligned ? floats / 4 : 0;
      for (int64_t k = threadIdx.x; k < vec; k += blockDim.x) reinterpret_cast<float4*>(tile)[k] = reinterpret_cast<const float4*>(src)[k];
      for (int64_t k = vec * 4 + threadIdx.x; k < floats; k += blockDim.x) tile[k] = src[k];
      __syncthreads();
      if (threadIdx.x < n) take_row(tile_args(a, base, tile), threadIdx.x, row0 + base, bins, g_first_bad, t);
      __syncthreads();
    }
  } else {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.rows; i += int64_t(gridDim.x) * blockDim.x)
      take_row(a, i, row0, bins, g_first_bad, t);
  }
  atomicAdd(&s_tot[kWRows], t.rows);
  atomicAdd(&s_tot[kWCorrect], t.correct);
  atomic_add_u128(&s_tot[kWNllLo], &s_tot[kWNllHi], t.nll_lo, t.nll_hi);
  atomic_add_u128(&s_tot[kWBrierLo], &s_tot[kWBrierHi], t.br_lo, t.br_hi);
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(&g_state[kWRows], s_tot[kWRows]);
    atomicAdd(&g_state[kWCorrect], s_tot[kWCorrect]);
    atomic_add_u128(&g_state[kWNllLo], &g_state[kWNllHi], s_tot[kWNllLo], s_tot[kWNllHi]);
    atomic_add_u128(&g_state[kWBrierLo], &g_state[kWBrierHi], s_tot[kWBrierLo], s_tot[kWBrierHi]);
  }
  if (kShared) {
    for (int64_t c = threadIdx.x; c < cells; c += blockDim.x) {
      const ull* s = s_dyn + c * kBinWords;
      if (s[0] == 0) continue;
      ull* g = g_state + kHeaderWords + c * kBinWords;
      atomicAdd(g, s[0]);
      atomicAdd(g + 1, s[1]);
      atomic_add_u128(g + 2, g + 3, s[2], s[3]);
    }
  }
}

// One pass of the kernel over rows already on the device (args hold device pointers).
struct Launch {
  bool shared = false, tiled = false;
  std::size_t shmem = 0;
  int sms = 1;

  explicit Launch(const KernelArgs& a) {
    const int64_t cells = int64_t(a.groups) * a.bins;
    shared = cells <= kMaxSharedCells;
    tiled = (a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise) && a.cols <= kMaxTileCols;
    shmem = (shared ? std::size_t(cells) * kBinWords * sizeof(ull) : 0) + (tiled ? std::size_t(kThreads) * kMaxTileCols * sizeof(float) : 0);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    set_smem_limit<true, true>();
    set_smem_limit<true, false>();
    set_smem_limit<false, true>();
  }
  template <bool S, bool T>
  void set_smem_limit() const {
    if (shmem > 48 * 1024) check(cudaFuncSetAttribute(calib_kernel<S, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shmem)), "cudaFuncSetAttribute");
  }
  void run(const KernelArgs& d, int64_t row0, ull* state, ull* first_bad) const {
    const int blocks = int(std::max<int64_t>(1, std::min<int64_t>((d.rows + kThreads - 1) / kThreads, int64_t(sms) * 8)));
    if (shared && tiled) calib_kernel<true, true><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (shared) calib_kernel<true, false><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else if (tiled) calib_kernel<false, true><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    else calib_kernel<false, false><<<blocks, kThreads, shmem>>>(d, row0, state, first_bad);
    check(cudaGetLastError(), "calibration kernel launch");
  }
};

}  // namespace

int64_t calib_accumulate(const KernelArgs& a, uint64_t* acc) {
  use_default_device();
  const bool matrix = a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise;
  const int64_t cols = matrix ? a.cols : 1;
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / cols));
  const std::size_t n_words = state_words(a.bins, a.groups);

  DeviceBuffer<float> d_scores(static_cast<std::size_t>(chunk_rows * cols));
  DeviceBuffer<int32_t> d_labels(a.labels ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<uint8_t> d_correct(a.correct ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<int32_t> d_groups(a.group_ids ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<float> d_out_conf(a.out_conf ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<uint8_t> d_out_pos(a.out_conf ? std::size_t(chunk_rows) : 0);
  DeviceBuffer<ull> d_state(n_words), d_first_bad(1);
  d_state.zero(n_words);
  const ull none = ULLONG_MAX;
  d_first_bad.upload(&none, 1);

  const Launch launch(a);

  for (int64_t row0 = 0; row0 < a.rows; row0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, a.rows - row0);
    KernelArgs d = a;
    d.rows = n;
    d_scores.upload(a.scores + row0 * cols, std::size_t(n * cols));
    d.scores = d_scores.get();
    if (a.labels) { d_labels.upload(a.labels + row0, std::size_t(n)); d.labels = d_labels.get(); }
    if (a.correct) { d_correct.upload(a.correct + row0, std::size_t(n)); d.correct = d_correct.get(); }
    if (a.group_ids) { d_groups.upload(a.group_ids + row0, std::size_t(n)); d.group_ids = d_groups.get(); }
    if (a.out_conf) { d.out_conf = d_out_conf.get(); d.out_positive = d_out_pos.get(); }
    launch.run(d, row0, d_state.get(), d_first_bad.get());
    if (a.out_conf) {
      check(cudaMemcpy(a.out_conf + row0, d_out_conf.get(), n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
      check(cudaMemcpy(a.out_positive + row0, d_out_pos.get(), n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    }
  }
  check(cudaDeviceSynchronize(), "calibration kernel");
  ull first_bad = 0;
  d_first_bad.download(&first_bad, 1);
  if (first_bad != ULLONG_MAX) return int64_t(first_bad);
  d_state.download(reinterpret_cast<ull*>(acc), n_words);
  return -1;
}

double calib_kernel_seconds(const KernelArgs& a, int repeat) {
  use_default_device();
  const int64_t cols = (a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise) ? a.cols : 1;
  const std::size_t n_words = state_words(a.bins, a.groups);
  DeviceBuffer<float> d_scores(static_cast<std::size_t>(a.rows * cols));
  DeviceBuffer<int32_t> d_labels(static_cast<std::size_t>(a.rows));
  DeviceBuffer<ull> d_state(n_words), d_first_bad(1);
  d_scores.upload(a.scores, std::size_t(a.rows * cols));
  d_labels.upload(a.labels, std::size_t(a.rows));
  KernelArgs d = a;
  d.scores = d_scores.get();
  d.labels = d_labels.get();
  d.correct = nullptr;
  d.group_ids = nullptr;
  d.out_conf = nullptr;
  d.out_positive = nullptr;
  const Launch launch(d);
  cudaEvent_t t0, t1;
  check(cudaEventCreate(&t0), "cudaEventCreate");
  check(cudaEventCreate(&t1), "cudaEventCreate");
  double best = 1e30;
  for (int r = 0; r <= repeat; ++r) {  // the first pass warms up
    d_state.zero(n_words);
    const ull none = ULLONG_MAX;
    d_first_bad.upload(&none, 1);
    check(cudaEventRecord(t0), "cudaEventRecord");
    launch.run(d, 0, d_state.get(), d_first_bad.get());
    check(cudaEventRecord(t1), "cudaEventRecord");
    check(cudaEventSynchronize(t1), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
    if (r > 0) best = std::min(best, double(ms) / 1e3);
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  return best;
}

}  // namespace calmoe::cuda
