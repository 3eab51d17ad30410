// Temperature scaling NLL: the per-row math shared by the backends, and their contract.
// Public API and the derivation: calmoe/temperature.h. All arithmetic in float64.
#pragma once
#include <cmath>

#include "calmoe/temperature.h"
#include "hd.h"

namespace calmoe::temp {

constexpr double kMinProb = 1e-12;  // floor of the labelled class's probability (as the NLL clamp)

enum Issue : int32_t {
  kOk = 0,
  kLabelRange = 1,  // label outside [0, C)
  kNonFinite = 2,   // NaN or Inf score
  kProbRange = 3,   // probability outside [0, 1]
  kRowSum = 4,      // probabilities do not sum to 1 within the tolerance
  kWeight = 5       // weight negative or not finite
};

struct RowNll {
  int32_t issue = kOk;
  int32_t col = -1;  // offending column, when the issue is about one element
  double sum = 0;    // row sum (probabilities), for the error message
  double l = 0, d1 = 0, d2 = 0;
};

// The transformed score t_j: the logit, or log p_j (-inf for p_j = 0, floored at 1e-12 for the
// label). Callers have validated the row.
CALMOE_HD double transformed(float v, bool is_label, ScoreKind kind) {
  if (kind == ScoreKind::Logits) return double(v);
  const double p = double(v);
  if (is_label) return log(p > kMinProb ? p : kMinProb);
  return p > 0.0 ? log(p) : -INFINITY;
}

// Loss of one row at beta = 1/T and its derivatives in s = log T (see calmoe/temperature.h).
// Validates the row (label, finite values, probability range and row sum) in the same pass.
CALMOE_HD RowNll row_nll(const float* row, int64_t C, int32_t y, double beta, ScoreKind kind, double tol) {
  RowNll r;
  if (y < 0 || int64_t(y) >= C) { r.issue = kLabelRange; return r; }
  // Pass 1: validate, find the max of t.
  double m = -INFINITY, sum = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    const float v = row[j];
    if (kind == ScoreKind::Logits) {
      if (!is_finite_f32(v)) { r.issue = kNonFinite; r.col = int32_t(j); return r; }
    } else {
      if (!(v >= 0.0f && v <= 1.0f)) { r.issue = is_finite_f32(v) ? kProbRange : kNonFinite; r.col = int32_t(j); return r; }
      sum += double(v);
    }
    const double t = transformed(v, j == y, kind);
    if (t > m) m = t;
  }
  if (kind == ScoreKind::Probabilities) {
    r.sum = sum;
    if (!(fabs(sum - 1.0) <= tol)) { r.issue = kRowSum; return r; }
  }
  // Pass 2: weighted mean and variance of d = t - m under q_j ~ exp(beta d_j) (West's
  // incremental algorithm: no cancellation in the variance), and the normaliser W.
  double W = 0.0, mean = 0.0, M2 = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    const double t = transformed(row[j], j == y, kind);
    if (t == -INFINITY) continue;
    const double d = t - m;
    const double e = exp(beta * d);
    if (e == 0.0) continue;
    W += e;
    const double delta = d - mean;
    mean += (e / W) * delta;
    M2 += e * delta * (d - mean);
  }
  const double dy = transformed(row[y], true, kind) - m;
  const double var = M2 > 0.0 ? M2 / W : 0.0;
  const double g = mean - dy;  // dl/dbeta
  r.l = log(W) - beta * dy;
  r.d1 = -beta * g;
  r.d2 = beta * g + beta * beta * var;
  return r;
}

// Scaled probabilities of one row, softmax(t / T) with t = z or log p (zeros stay zero), written
// to out[0..C). Validates the row like row_nll (no label). Returns the issue (kOk when written).
CALMOE_HD RowNll row_apply(const float* row, int64_t C, double beta, ScoreKind kind, double tol, float* out) {
  RowNll r;
  double m = -INFINITY, sum = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    const float v = row[j];
    if (kind == ScoreKind::Logits) {
      if (!is_finite_f32(v)) { r.issue = kNonFinite; r.col = int32_t(j); return r; }
    } else {
      if (!(v >= 0.0f && v <= 1.0f)) { r.issue = is_finite_f32(v) ? kProbRange : kNonFinite; r.col = int32_t(j); return r; }
      sum += double(v);
    }
    const double t = transformed(v, false, kind);
    if (t > m) m = t;
  }
  if (kind == ScoreKind::Probabilities) {
    r.sum = sum;
    if (!(fabs(sum - 1.0) <= tol)) { r.issue = kRowSum; return r; }
    if (m == -INFINITY) { r.issue = kRowSum; return r; }  // unreachable: a row summing to ~1 has a positive entry
  }
  double W = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    const double t = transformed(row[j], false, kind);
    W += t == -INFINITY ? 0.0 : exp(beta * (t - m));
  }
  for (int64_t j = 0; j < C; ++j) {
    const double t = transformed(row[j], false, kind);
    out[j] = t == -INFINITY ? 0.0f : float(exp(beta * (t - m)) / W);
  }
  return r;
}

// Weight of row i (1 when unweighted); validity is checked by the caller.
CALMOE_HD bool weight_ok(float w) { return is_finite_f32(w) && w >= 0.0f; }

// Everything a backend kernel needs; pointers are host memory.
struct KernelArgs {
  const float* scores = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
  ScoreKind kind = ScoreKind::Logits;
  const int32_t* labels = nullptr;
  const float* weights = nullptr;
  double tol = 1e-3;
  double beta = 1.0;
};

// One row's contribution (the shared loop body of every backend): adds into `out` when the row
// is valid, returns its issue otherwise. Rows of weight 0 are skipped unread.
CALMOE_HD int32_t add_row(const KernelArgs& a, int64_t i, TemperatureEval& out) {
  double w = 1.0;
  if (a.weights) {
    const float wf = a.weights[i];
    if (!weight_ok(wf)) return kWeight;
    if (wf == 0.0f) return kOk;
    w = double(wf);
  }
  const RowNll r = row_nll(a.scores + i * a.stride, a.cols, a.labels[i], a.beta, a.kind, a.tol);
  if (r.issue != kOk) return r.issue;
  out.weight += w;
  out.nll += w * r.l;
  out.d1 += w * r.d1;
  out.d2 += w * r.d2;
  out.rows += 1;
  return kOk;
}

}  // namespace calmoe::temp

// Backend entry points: the sums over all rows into `out` (reduce), or the scaled probabilities
// of every row into `out` (apply: rows x cols, dense); each returns the index of the first
// invalid row, or -1 (then the outputs are unspecified).
namespace calmoe::cpu {
int64_t temperature_reduce(const temp::KernelArgs& args, TemperatureEval& out);
int64_t temperature_apply(const temp::KernelArgs& args, float* out);
}
namespace calmoe::cuda {
int64_t temperature_reduce(const temp::KernelArgs& args, TemperatureEval& out);
int64_t temperature_apply(const temp::KernelArgs& args, float* out);
}
