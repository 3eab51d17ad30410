// Calibration histogram: the per-row math shared by every backend, and the backend contract.
// Public API and state layout: calmoe/calibration.h.
#pragma once
#include <cmath>

#include "calmoe/calibration.h"
#include "fastmath.h"
#include "fixed_point.h"
#include "sum8.h"
#include "hd.h"

namespace calmoe::calib {

// -log(1e-12) rounded up to float: the largest per-row NLL.
constexpr float kMaxNll = 27.6310215f;

enum Issue : int32_t {
  kOk = 0,
  kLabelRange = 1,  // label outside [0, C) (or not 0/1 in binary mode)
  kNonFinite = 2,   // NaN or Inf score
  kProbRange = 3,   // probability outside [0, 1]
  kRowSum = 4,      // probabilities do not sum to 1 within the tolerance
  kCorrectValue = 5, // correctness not 0 or 1
  kGroupRange = 6,   // group id outside [0, groups)
  kWeightRange = 7   // weight not finite or outside [0, limits::kMaxWeight]
};

// What one row contributes.
struct RowOut {
  int32_t issue = kOk;
  int32_t col = -1;    // offending column, when the issue is about one element
  float conf = 0;      // top-label confidence (or p(y=1), or the given confidence)
  bool positive = false;  // goes into the bin's "accuracy" (correct, or y == 1 in binary mode)
  bool correct = false;   // goes into overall accuracy
  float nll = 0, brier = 0;
  float sum = 0;       // row sum (probabilities), for the error message
  float zmax = 0, denom = 1;  // logits: row max and softmax denominator (for class_prob)
};

// Bin of confidence c among M equal-width bins, exact rational edges i/M: c*M is formed in
// double, exactly (24-bit mantissa times M < 2^29), never against rounded edges.
// right-closed (default): ceil(c*M) - 1, clamped; left-closed: floor(c*M), clamped.
CALMOE_HD int bin_of(float c, int M, bool left_closed) {
  const double t = double(c) * double(M);
  int b = left_closed ? int(floor(t)) : int(ceil(t)) - 1;
  if (b < 0) b = 0;
  if (b > M - 1) b = M - 1;
  return b;
}

CALMOE_HD float nll_of(float p) { return -fm::log_f32(p > kMinProb ? p : kMinProb); }

// One row of probabilities. Validation: label in [0, C), every p in [0, 1] (NaN fails), and
// |sum - 1| <= tol. Confidence = max, prediction = first index of the max.
CALMOE_HD RowOut row_probs(const float* p, int64_t C, int32_t y, float tol, bool extras) {
  RowOut r;
  if (y < 0 || int64_t(y) >= C) { r.issue = kLabelRange; return r; }
  float best = p[0];
  int64_t arg = 0;
  Sum8 sum, other;  // other: sum over j != y of p_j^2 (no cancellation, never negative)
  for (int64_t j0 = 0; j0 < C; j0 += 8) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < 8; ++k) {  // k is a compile-time lane index once unrolled (registers on CUDA)
      const int64_t j = j0 + k;
      if (j >= C) break;
      const float v = p[j];
      if (!(v >= 0.0f && v <= 1.0f)) { r.issue = is_finite_f32(v) ? kProbRange : kNonFinite; r.col = int32_t(j); return r; }
      if (v > best) { best = v; arg = j; }
      sum.s[k] += v;
      if (extras && j != y) other.s[k] = fm::fma_f32(v, v, other.s[k]);
    }
  }
  r.sum = sum.total();
  if (!(fabsf(r.sum - 1.0f) <= tol)) { r.issue = kRowSum; return r; }
  r.conf = best;
  r.correct = r.positive = (arg == y);
  if (extras) {
    const float py = p[y];
    const float q = 1.0f - py;
    r.brier = fm::fma_f32(q, q, other.total());
    r.nll = nll_of(py);
  }
  return r;
}

// One row of logits: softmax first (stable: subtract the row max), same outputs.
CALMOE_HD RowOut row_logits(const float* z, int64_t C, int32_t y, bool extras) {
  RowOut r;
  if (y < 0 || int64_t(y) >= C) { r.issue = kLabelRange; return r; }
  float zmax = z[0];
  int64_t arg = 0;
  for (int64_t j = 0; j < C; ++j) {
    const float v = z[j];
    if (!is_finite_f32(v)) { r.issue = kNonFinite; r.col = int32_t(j); return r; }
    if (v > zmax) { zmax = v; arg = j; }
  }
  Sum8 s, other;
  for (int64_t j0 = 0; j0 < C; j0 += 8) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < 8; ++k) {
      const int64_t j = j0 + k;
      if (j >= C) break;
      const float e = fm::exp_f32(z[j] - zmax);
      s.s[k] += e;
      if (extras && j != y) other.s[k] = fm::fma_f32(e, e, other.s[k]);
    }
  }
  const float st = s.total();
  r.zmax = zmax;
  r.denom = st;
  r.conf = 1.0f / st;  // the max term is exp(0) = 1
  r.correct = r.positive = (arg == y);
  if (extras) {
    const float zy = z[y] - zmax;
    const float py = fm::exp_f32(zy) / st;
    const float q = 1.0f - py;
    r.brier = fm::fma_f32(q, q, other.total() / (st * st));
    const float nll = fm::log_f32(st) - zy;
    r.nll = nll < kMaxNll ? nll : kMaxNll;
  }
  return r;
}

// Probability of class j of a row already evaluated by row_probs / row_logits (Classwise).
CALMOE_HD float class_prob(const float* row, int64_t j, ScoreKind kind, const RowOut& r) {
  return kind == ScoreKind::Logits ? fm::exp_f32(row[j] - r.zmax) / r.denom : row[j];
}

// Binary positive-class mode: score = p(y = 1), "accuracy" = share of positives,
// prediction = (p > 0.5).
CALMOE_HD RowOut row_binary(float p, int32_t y, bool extras) {
  RowOut r;
  if (y != 0 && y != 1) { r.issue = kLabelRange; return r; }
  if (!(p >= 0.0f && p <= 1.0f)) { r.issue = is_finite_f32(p) ? kProbRange : kNonFinite; r.col = 0; return r; }
  r.conf = p;
  r.positive = (y == 1);
  r.correct = ((p > 0.5f) == (y == 1));
  if (extras) {
    const float d = p - float(y);
    r.brier = d * d;
    r.nll = nll_of(y == 1 ? p : 1.0f - p);
  }
  return r;
}

CALMOE_HD RowOut row_confidence(float c, uint8_t correct) {
  RowOut r;
  if (correct > 1) { r.issue = kCorrectValue; return r; }
  if (!(c >= 0.0f && c <= 1.0f)) { r.issue = is_finite_f32(c) ? kProbRange : kNonFinite; r.col = 0; return r; }
  r.conf = c;
  r.positive = r.correct = (correct == 1);
  return r;
}

// Accumulating a row into a state-shaped word array (header + groups x bins x kBinWords).
CALMOE_HD void add_to_bin(uint64_t* w, int bin_index, float conf, bool positive) {
  uint64_t* b = w + kHeaderWords + int64_t(bin_index) * kBinWords;
  b[0] += 1;
  b[1] += positive ? 1u : 0u;
  u128_add(b[2], b[3], to_fixed(conf, kConfFracBits));
}

CALMOE_HD void add_to_totals(uint64_t* w, const RowOut& r, bool extras) {
  w[kWRows] += 1;
  w[kWCorrect] += r.correct ? 1u : 0u;
  if (extras) {
    u128_add(w[kWNllLo], w[kWNllHi], to_fixed(r.nll, kNllFracBits));
    u128_add(w[kWBrierLo], w[kWBrierHi], to_fixed(r.brier, kBrierFracBits));
  }
}

// Everything a backend kernel needs; pointers are host memory.
struct KernelArgs {
  CalibKind kind = CalibKind::TopLabel;
  const float* scores = nullptr;  // TopLabel/Classwise: rows x cols; Binary/Confidence: rows
  int64_t rows = 0, cols = 1;
  ScoreKind score_kind = ScoreKind::Probabilities;
  float sum_tol = 1e-3f;
  const int32_t* labels = nullptr;   // all kinds but Confidence
  const uint8_t* correct = nullptr;  // Confidence
  const int32_t* group_ids = nullptr;  // Grouped: the histogram of each row
  bool weighted = false;               // a weighted state: also fill the weighted section
  const float* weights = nullptr;      // weighted: one per row (null: every row weighs 1)
  int bins = 15, groups = 1;
  bool left_closed = false, extras = true;
  // Equal-mass binning asks for per-row records too (may be null): confidence, positive flag.
  float* out_conf = nullptr;
  uint8_t* out_positive = nullptr;
};

// The state words a kernel adds into: same layout as the public state.
inline std::size_t state_words(int bins, int groups, bool weighted = false) {
  const std::size_t cells = std::size_t(bins) * std::size_t(groups);
  return std::size_t(kHeaderWords) + cells * kBinWords + (weighted ? kWeightedHeaderWords + cells * kWeightedCellWords : 0);
}
// First word of a weighted state's weighted section.
inline std::size_t weighted_offset(int bins, int groups) { return state_words(bins, groups); }

// lo:hi += a * b (64 x 64 -> 128 bits), from 32-bit halves.
inline void u128_mul_add(uint64_t& lo, uint64_t& hi, uint64_t a, uint64_t b) {
  const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
  const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
  const uint64_t plo = (p00 & 0xffffffffu) | (mid << 32);
  const uint64_t phi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
  u128_add(lo, hi, plo, phi);
}

inline bool weight_ok(float w) { return w >= 0.0f && w <= limits::kMaxWeight; }  // NaN fails

// Adds a row of weight q (fixed point) to a weighted section `ws`: totals, and cell `cell`.
inline void add_weighted_totals(uint64_t* ws, uint64_t q, const RowOut& r, bool extras) {
  u128_add(ws[0], ws[1], q);
  if (r.correct) u128_add(ws[2], ws[3], q);
  if (extras) {
    u128_mul_add(ws[4], ws[5], q, to_fixed(r.nll, kWNllFracBits));
    u128_mul_add(ws[6], ws[7], q, to_fixed(r.brier, kWBrierFracBits));
  }
}
inline void add_weighted_cell(uint64_t* ws, int64_t cell, uint64_t q, float conf, bool positive) {
  uint64_t* c = ws + kWeightedHeaderWords + cell * kWeightedCellWords;
  u128_add(c[0], c[1], q);
  if (positive) u128_add(c[2], c[3], q);
  u128_mul_add(c[4], c[5], q, to_fixed(conf, kWConfFracBits));
}

// The histogram cell of a row's confidence (non-Classwise kinds).
CALMOE_HD int cell_of(const KernelArgs& a, int64_t i, float conf) {
  const int b = bin_of(conf, a.bins, a.left_closed);
  return a.group_ids ? a.group_ids[i] * a.bins + b : b;
}

// Evaluates one row of any kind with the shared math (CPU kernels, and the core to describe the
// first bad row reported by a backend).
// `row`: where row i's scores are read (TopLabel/Classwise; a.scores + i * a.cols, or a copy
// staged elsewhere, e.g. in CUDA shared memory).
CALMOE_HD RowOut eval_row_at(const KernelArgs& a, int64_t i, const float* row) {
  if (a.group_ids && (a.group_ids[i] < 0 || a.group_ids[i] >= a.groups)) {
    RowOut r;
    r.issue = kGroupRange;
    return r;
  }
  switch (a.kind) {
    case CalibKind::TopLabel:
    case CalibKind::Classwise:
      return a.score_kind == ScoreKind::Logits ? row_logits(row, a.cols, a.labels[i], a.extras) : row_probs(row, a.cols, a.labels[i], a.sum_tol, a.extras);
    case CalibKind::Binary: return row_binary(a.scores[i], a.labels[i], a.extras);
    case CalibKind::Confidence: return row_confidence(a.scores[i], a.correct[i]);
  }
  return RowOut{};
}

CALMOE_HD RowOut eval_row(const KernelArgs& a, int64_t i) {
  const bool matrix = a.kind == CalibKind::TopLabel || a.kind == CalibKind::Classwise;
  return eval_row_at(a, i, matrix ? a.scores + i * a.cols : nullptr);
}

}  // namespace calmoe::calib

// Backend entry points. Each adds the contribution of every row into `acc` (zeroed words of the
// state's layout; the header is ignored) and returns the index of the first invalid row, or -1.
// When a row is invalid the contents of `acc` are unspecified (the core discards them).
namespace calmoe::cpu {
int64_t calib_accumulate(const calib::KernelArgs& args, uint64_t* acc);
// The same with the SIMD path allowed or not (tests compare the two bit for bit).
int64_t calib_accumulate_path(const calib::KernelArgs& args, uint64_t* acc, bool allow_simd);
}
namespace calmoe::cuda {
int64_t calib_accumulate(const calib::KernelArgs& args, uint64_t* acc);
// For the benchmark: uploads the rows once, then times `repeat` kernel passes (after a warm-up)
// with CUDA events; the best pass in seconds. TopLabel / Classwise / Binary with labels.
double calib_kernel_seconds(const calib::KernelArgs& args, int repeat);
}
