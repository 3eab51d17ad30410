// Tilted loss weighting: the per-element math shared by the backends, and their contract.
// Public API: calmoe/tilted.h. All arithmetic in double: the weights feed fp32 kernels, but the
// reductions decide the whole batch's weighting.
#pragma once
#include <cmath>

#include "calmoe/tilted.h"
#include "fastmath.h"
#include "hd.h"

namespace calmoe::tilt {

// Every sum over the losses has one association in every backend, so that they give the same bits:
// terms are added in order, from 0.0, in runs of kRun consecutive terms; the runs' sums are added
// the same way in runs of kRun, and so on until one sum is left (n <= kRun: one plain loop). The
// CUDA backend gives each run a warp. Padding a level with 0.0 (or -inf for the max) leaves
// every sum unchanged, so a backend may size the tree for more terms than it has.
constexpr int64_t kRun = 256;

// Batch reductions.
struct Sums {
  double max_scaled = -INFINITY;  // max_i eta * l_i
  double sum_l = 0;               // sum_i l_i
  double s = 0;                   // sum_i e_i, e_i = exp(eta * l_i - max_scaled)
  double s_el = 0;                // sum_i e_i * l_i
  double s_ee = 0;                // sum_i e_i^2
};

CALMOE_HD double scaled(float l, double eta) { return eta * double(l); }
CALMOE_HD double unnormalised(float l, double eta, double max_scaled) { return fm::exp_f64(eta * double(l) - max_scaled); }
// sum_i w_i l_i
CALMOE_HD double robust_loss(const Sums& s) { return s.s_el / s.s; }

// Gradient coefficient of example j: dL/dl_j under the chosen convention.
CALMOE_HD double coefficient(double w, float l, double eta, double robust, TiltGradient g) {
  return g == TiltGradient::Term ? w : w * (1.0 + eta * (double(l) - robust));
}

}  // namespace calmoe::tilt

namespace calmoe::cpu {
tilt::Sums tilted_reduce(const float* losses, int64_t n, double eta);
void tilted_write(const float* losses, int64_t n, double eta, TiltGradient g, const tilt::Sums& s, float* weights, float* coef);
}  // namespace calmoe::cpu
namespace calmoe::cuda {
// The sums, and the weights and coefficients (either may be null) written from them.
tilt::Sums tilted_run(const float* losses, int64_t n, double eta, TiltGradient g, float* weights, float* coef);
}  // namespace calmoe::cuda
