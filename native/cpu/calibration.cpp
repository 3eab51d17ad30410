// CPU backend of the calibration histogram: rows split into chunks over the thread pool, one
// partial histogram per worker (integer sums, so the merge order does not matter), AVX2 fast
// path for top-label probabilities (calibration_avx2.cpp).
#include <algorithm>
#include <atomic>
#include <vector>

#include "core/calibration.h"
#include "cpu/calibration_avx2.h"
#include "cpu/simd.h"
#include "host/thread_pool.h"

namespace calmoe::cpu {
namespace {

using namespace calib;

// Scalar loop over rows [begin, end); returns the first invalid row or -1.
int64_t accumulate_scalar(const KernelArgs& a, int64_t begin, int64_t end, uint64_t* w) {
  const int M = a.bins;
  uint64_t* ws = a.weighted ? w + weighted_offset(a.bins, a.groups) : nullptr;
  for (int64_t i = begin; i < end; ++i) {
    const RowOut r = eval_row(a, i);
    if (r.issue != kOk) return i;
    const float wi = a.weights ? a.weights[i] : 1.0f;
    if (ws && !weight_ok(wi)) return i;
    const uint64_t q = ws ? to_fixed(wi, kWeightFracBits) : 0;
    if (ws) add_weighted_totals(ws, q, r, a.extras);
    add_to_totals(w, r, a.extras);
    if (a.out_conf) {
      a.out_conf[i] = r.conf;
      a.out_positive[i] = r.positive ? 1 : 0;
    }
    if (a.kind == CalibKind::Classwise) {
      const float* row = a.scores + i * a.cols;
      const int32_t y = a.labels[i];
      for (int64_t j = 0; j < a.cols; ++j) {
        const float pj = class_prob(row, j, a.score_kind, r);
        const int cell = int(j) * M + bin_of(pj, M, a.left_closed);
        add_to_bin(w, cell, pj, j == y);
        if (ws) add_weighted_cell(ws, cell, q, pj, j == y);
      }
    } else {
      const int cell = cell_of(a, i, r.conf);
      add_to_bin(w, cell, r.conf, r.positive);
      if (ws) add_weighted_cell(ws, cell, q, r.conf, r.positive);
    }
  }
  return -1;
}

void add_words(uint64_t* into, const uint64_t* from, std::size_t n, std::size_t n_unweighted) {
  // header totals: plain counters and two 128-bit sums; bins: counters and a 128-bit sum each
  into[kWRows] += from[kWRows];
  into[kWCorrect] += from[kWCorrect];
  u128_add(into[kWNllLo], into[kWNllHi], from[kWNllLo], from[kWNllHi]);
  u128_add(into[kWBrierLo], into[kWBrierHi], from[kWBrierLo], from[kWBrierHi]);
  const std::size_t bins_end = std::min(n, n_unweighted);
  for (std::size_t k = kHeaderWords; k + kBinWords <= bins_end; k += kBinWords) {
    into[k] += from[k];
    into[k + 1] += from[k + 1];
    u128_add(into[k + 2], into[k + 3], from[k + 2], from[k + 3]);
  }
  for (std::size_t k = bins_end; k + 2 <= n; k += 2) u128_add(into[k], into[k + 1], from[k], from[k + 1]);  // weighted section
}

}  // namespace

int64_t calib_accumulate(const KernelArgs& a, uint64_t* acc) { return calib_accumulate_path(a, acc, true); }

int64_t calib_accumulate_path(const KernelArgs& a, uint64_t* acc, bool allow_simd) {
  const std::size_t n_words = state_words(a.bins, a.groups, a.weighted);
  // Chunks of ~64K elements keep per-task overhead small and balance two to many threads.
  const int64_t elems_per_row = std::max<int64_t>(1, a.cols);
  const int64_t chunk_rows = std::max<int64_t>(256, (int64_t(1) << 16) / elems_per_row);
  const int64_t n_chunks = (a.rows + chunk_rows - 1) / chunk_rows;
  const int workers = workers_for(n_chunks);
  std::vector<std::vector<uint64_t>> partial(workers, std::vector<uint64_t>(n_words, 0));
  std::atomic<int64_t> first_bad{INT64_MAX};
  const bool simd = allow_simd && use_avx2() && avx2::calib_supported(a) && !a.weighted;  // weighted: the scalar loop

  parallel_for(n_chunks, workers, [&](int64_t c, int worker) {
    const int64_t begin = c * chunk_rows;
    if (begin > first_bad.load(std::memory_order_relaxed)) return;  // an earlier row already failed
    const int64_t end = std::min(a.rows, begin + chunk_rows);
    uint64_t* w = partial[worker].data();
    int64_t from = begin;
    if (simd) from = -2 - avx2::calib_accumulate(a, begin, end, w);  // rows the SIMD path left over
    const int64_t bad = accumulate_scalar(a, from, end, w);
    if (bad >= 0) {
      int64_t cur = first_bad.load();
      while (bad < cur && !first_bad.compare_exchange_weak(cur, bad)) {}
    }
  });
  if (first_bad.load() != INT64_MAX) return first_bad.load();
  for (const auto& p : partial) add_words(acc, p.data(), n_words, state_words(a.bins, a.groups));
  return -1;
}

}  // namespace calmoe::cpu
