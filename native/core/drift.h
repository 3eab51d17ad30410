// Drift: the per-element math shared by every backend (order-preserving float keys, searches in
// sorted keys) and the backend contract. Public API and definitions: calmoe/drift.h.
#pragma once
#include <cstdint>

#include "calmoe/drift.h"
#include "hd.h"

namespace calmoe::drift {

CALMOE_HD bool is_nan_f32(float v) { return (f32_bits(v) & 0x7fffffffu) > 0x7f800000u; }

// Order-preserving key of a (non-NaN) float: unsigned comparison of keys is numeric comparison of
// values, with -0 mapped onto +0 so that the two zeros tie (as they compare equal).
CALMOE_HD uint32_t key_of(float v) {
  uint32_t u = f32_bits(v);
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

CALMOE_HD float value_of(uint32_t k) { return bits_f32((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// Number of elements of sorted a[0, n) that are <= key (std::upper_bound) and that are < key
// (std::lower_bound: the histogram bin of a value among sorted cut points, bins right-closed:
// (c_b, c_{b+1}]). Branch-free halving (the select compiles to a conditional move): the same
// number of steps for every key, no mispredictions on random data.
template <class K>
CALMOE_HD int64_t count_le(const K* a, int64_t n, K key) {
  if (n <= 0) return 0;
  const K* base = a;
  while (n > 1) {
    const int64_t half = n / 2;
    base = (base[half] <= key) ? base + half : base;
    n -= half;
  }
  return (base - a) + (*base <= key ? 1 : 0);
}

template <class K>
CALMOE_HD int64_t count_lt(const K* a, int64_t n, K key) {
  if (n <= 0) return 0;
  const K* base = a;
  while (n > 1) {
    const int64_t half = n / 2;
    base = (base[half] < key) ? base + half : base;
    n -= half;
  }
  return (base - a) + (*base < key ? 1 : 0);
}

// Position (0-based) in the sorted reference of cut point k = 1..bins-1: the order statistic of
// rank ceil(k n / bins) (the inverted-CDF quantile k / bins).
CALMOE_HD int64_t cut_index(int64_t k, int64_t n, int64_t bins) { return (k * n + bins - 1) / bins - 1; }

// Everything the per-feature kernels need; pointers are host memory.
struct FeatureArgs {
  const float* ref = nullptr;  // ref_rows x features, row-major
  int64_t ref_rows = 0;
  const float* cur = nullptr;  // cur_rows x features (cur_rows may be 0: cut points only)
  int64_t cur_rows = 0;
  int64_t features = 0;
  bool ks = true;              // compute d_plus / d_minus (needs cur_rows > 0)
  int64_t edges = 0;           // cut points per feature
  const int64_t* edge_index = nullptr;  // [edges]: positions in the sorted reference column
};

struct FeatureOut {
  int64_t* d_plus = nullptr;   // [features]: max over merge points of (i*n2 - j*n1), >= 0
  int64_t* d_minus = nullptr;  // [features]: max of (j*n1 - i*n2), >= 0
  uint32_t* edge_key = nullptr;  // [features x edges]: key of each cut point
  int64_t* ref_le = nullptr;     // [features x edges]: reference values <= the cut point
  int64_t* cur_le = nullptr;     // [features x edges]: current values <= the cut point
  // Flat index (row * features + col) of the first NaN in each matrix, or -1. When either is set
  // the other outputs are unspecified.
  int64_t bad_ref = -1, bad_cur = -1;
};

// Monitor histograms: counts[f * (edges + 1) + b] += values of feature f in bin b.
struct BinArgs {
  const float* x = nullptr;  // rows x features
  int64_t rows = 0, features = 0;
  const uint32_t* edge_key = nullptr;  // [features x edges], sorted per feature
  int64_t edges = 0;
};

}  // namespace calmoe::drift

// Backend entry points. drift_features fills `out` (see FeatureOut). drift_bin_counts adds into
// zeroed `counts` and returns the flat index of the first NaN, or -1 (counts then unspecified).
namespace calmoe::cpu {
void drift_features(const drift::FeatureArgs& args, drift::FeatureOut& out);
int64_t drift_bin_counts(const drift::BinArgs& args, uint64_t* counts);
}  // namespace calmoe::cpu
namespace calmoe::cuda {
void drift_features(const drift::FeatureArgs& args, drift::FeatureOut& out);
int64_t drift_bin_counts(const drift::BinArgs& args, uint64_t* counts);
}  // namespace calmoe::cuda
