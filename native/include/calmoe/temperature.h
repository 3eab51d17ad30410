// Temperature scaling: the validation NLL of softmax(z / T) and its first two derivatives in
// log T, over an N x C matrix of logits (or of probabilities, scaled as p^(1/T) renormalised =
// softmax(log p / T)), with optional per-row weights. One pass per evaluation; the 1-D solver
// that uses it lives in the TypeScript layer (src/calibrate/temperature.ts).
//
// Row loss l_i(T) = -log softmax(t_i / T)[y_i] with t = z (logits) or t = log p (probabilities).
// With beta = 1/T, s = log T, q = softmax(beta t) and d = t - max(t):
//   l        = log sum_j exp(beta d_j) - beta d_y
//   dl/ds    = -beta (E_q[d] - d_y)
//   d2l/ds2  =  beta (E_q[d] - d_y) + beta^2 Var_q[d]
// l is convex in beta, so in s = log T it has a single minimum (its derivative changes sign once):
// a safeguarded 1-D search converges from any start.
//
// Probabilities: a zero probability stays exactly zero at every T (its log is -inf and it is
// skipped); the labelled class's probability is floored at 1e-12, as the package's NLL does, so
// every row's loss is finite. The loss here is the exact (unclamped) NLL in float64.
//
// Determinism: rows are reduced in fixed chunks (CPU) or a fixed block partition (CUDA) whose
// partials are combined in a fixed order, in float64: the same bits for any thread count. CPU and
// CUDA agree to rounding (their exp and log differ in the last bit), not bit for bit.
#pragma once
#include <cstdint>
#include <string>

#include "calmoe/calibration.h"  // ScoreKind
#include "calmoe/device.h"

namespace calmoe {

struct TemperatureArg {
  const float* scores = nullptr;  // row i, class j at scores[i * row_stride + j]
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;         // 0: cols (a dense matrix); else >= cols (e.g. one expert of B x K x C)
  ScoreKind kind = ScoreKind::Logits;
  const int32_t* labels = nullptr;  // rows
  // Optional per-row weights (finite, >= 0). A row of weight 0 is skipped without being read
  // (neither its scores nor its label), so a sparse weight vector costs only its non-zero rows.
  const float* weights = nullptr;
  double sum_tolerance = 1e-3;    // probabilities: allowed |row sum - 1|
  std::string name = "scores";    // how errors name the score argument
};

// Weighted sums over the rows (not means, so that evaluations over several views add up):
// divide by `weight` for the weighted mean NLL and its derivatives.
struct TemperatureEval {
  double weight = 0;  // sum of the weights (the row count when unweighted)
  double nll = 0;     // sum_i w_i l_i
  double d1 = 0;      // sum_i w_i dl_i/d(log T)
  double d2 = 0;      // sum_i w_i d2l_i/d(log T)^2
  int64_t rows = 0;   // rows with a positive weight
};

// `weight` is 0 when every weight is 0.
// Throws RangeError naming the argument: no rows, bad shape, T not finite and > 0, label out of
// [0, C), non-finite logit, probability outside [0, 1] or a row not summing to 1, bad weight.
TemperatureEval temperature_nll(Device dev, const TemperatureArg& arg, double temperature);

// The scaled probabilities softmax(t / T) of every row (t = z, or log p with zeros kept at zero;
// no label floor), written densely to `out` (rows x cols). Labels and weights are not used.
// Per-element float64, rounded to float32 at the end.
void temperature_apply(Device dev, const TemperatureArg& arg, double temperature, float* out);

}  // namespace calmoe
