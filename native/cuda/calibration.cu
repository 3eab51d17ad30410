// CUDA backend of the calibration histogram: one pass over the rows, a thread per row with the
// shared per-row math, a shared-memory histogram per block (integer atomics only: exact and
// order-independent), flushed to one global histogram; inputs streamed in chunks.
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
constexpr int64_t kChunkElements = int64_t(1) << 26;  // 256 MB of float scores per chunk

__device__ __forceinline__ void add_row_to_bin(ull* bins, int cell, float conf, bool positive) {
  ull* b = bins + int64_t(cell) * kBinWords;
  atomicAdd(b, 1ull);
  if (positive) atomicAdd(b + 1, 1ull);
  atomic_add_u128(b + 2, b + 3, to_fixed(conf, kConfFracBits));
}

template <bool kShared>
__global__ void calib_kernel(KernelArgs a, int64_t row0, ull* g_state, ull* g_first_bad) {
  extern __shared__ ull s_bins[];
  __shared__ ull s_tot[kHeaderWords];
  const int64_t cells = int64_t(a.groups) * a.bins;
  ull* bins = kShared ? s_bins : g_state + kHeaderWords;
  if (threadIdx.x < kHeaderWords) s_tot[threadIdx.x] = 0;
  if (kShared) {
    for (int64_t k = threadIdx.x; k < cells * kBinWords; k += blockDim.x) s_bins[k] = 0;
  }
  __syncthreads();

  ull rows = 0, correct = 0, nll_lo = 0, nll_hi = 0, br_lo = 0, br_hi = 0;
  const int M = a.bins;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.rows; i += int64_t(gridDim.x) * blockDim.x) {
    const RowOut r = eval_row(a, i);
    if (r.issue != kOk) {
      atomicMin(g_first_bad, ull(row0 + i));
      continue;
    }
    rows += 1;
    correct += r.correct ? 1 : 0;
    if (a.extras) {
      u128_add(reinterpret_cast<uint64_t&>(nll_lo), reinterpret_cast<uint64_t&>(nll_hi), to_fixed(r.nll, kNllFracBits));
      u128_add(reinterpret_cast<uint64_t&>(br_lo), reinterpret_cast<uint64_t&>(br_hi), to_fixed(r.brier, kBrierFracBits));
    }
    if (a.out_conf) {
      a.out_conf[i] = r.conf;
      a.out_positive[i] = r.positive ? 1 : 0;
    }
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
  atomicAdd(&s_tot[kWRows], rows);
  atomicAdd(&s_tot[kWCorrect], correct);
  atomic_add_u128(&s_tot[kWNllLo], &s_tot[kWNllHi], nll_lo, nll_hi);
  atomic_add_u128(&s_tot[kWBrierLo], &s_tot[kWBrierHi], br_lo, br_hi);
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(&g_state[kWRows], s_tot[kWRows]);
    atomicAdd(&g_state[kWCorrect], s_tot[kWCorrect]);
    atomic_add_u128(&g_state[kWNllLo], &g_state[kWNllHi], s_tot[kWNllLo], s_tot[kWNllHi]);
    atomic_add_u128(&g_state[kWBrierLo], &g_state[kWBrierHi], s_tot[kWBrierLo], s_tot[kWBrierHi]);
  }
  if (kShared) {
    for (int64_t c = threadIdx.x; c < cells; c += blockDim.x) {
      const ull* s = s_bins + c * kBinWords;
      if (s[0] == 0) continue;
      ull* g = g_state + kHeaderWords + c * kBinWords;
      atomicAdd(g, s[0]);
      atomicAdd(g + 1, s[1]);
      atomic_add_u128(g + 2, g + 3, s[2], s[3]);
    }
  }
}

}  // namespace

int64_t calib_accumulate(const KernelArgs& a, uint64_t* acc) {
  use_default_device();
  const bool matrix = a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise;
  const int64_t cols = matrix ? a.cols : 1;
  const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(a.rows, kChunkElements / cols));
  const int64_t cells = int64_t(a.groups) * a.bins;
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

  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const bool shared = cells <= kMaxSharedCells;
  const std::size_t shmem = shared ? std::size_t(cells) * kBinWords * sizeof(ull) : 0;

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
    const int blocks = int(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(sms) * 8));
    if (shared) calib_kernel<true><<<blocks, kThreads, shmem>>>(d, row0, d_state.get(), d_first_bad.get());
    else calib_kernel<false><<<blocks, kThreads>>>(d, row0, d_state.get(), d_first_bad.get());
    check(cudaGetLastError(), "calibration kernel launch");
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

}  // namespace calmoe::cuda
