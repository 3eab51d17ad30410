// Tilted weights: validation, dispatch, and the batch statistics.
#include "core/tilted.h"

#include <string>

#include "calmoe/error.h"
#include "core/dispatch.h"
#include "core/hd.h"

namespace calmoe {
namespace {

// (1/eta) log mean exp(eta l) for |eta| * range(l) small: the cumulant series
// mu + eta k2/2 + eta^2 k3/6 + eta^3 k4/24, whose next term is below 1e-15 * range there
// (the closed form loses digits to cancellation in log(s / n) as eta -> 0).
double tilted_erm_series(const float* l, int64_t n, double eta, double mean) {
  double m2 = 0, m3 = 0, m4 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(l[i]) - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= double(n);
  m3 /= double(n);
  m4 /= double(n);
  const double k4 = m4 - 3 * m2 * m2;
  return mean + eta * m2 / 2 + eta * eta * m3 / 6 + eta * eta * eta * k4 / 24;
}

}  // namespace

TiltedStats tilted_weights(Device dev, const float* l, int64_t n, double eta, TiltGradient g, float* weights, float* coef) {
  if (n < 1) throw_range("losses: expected at least one loss, got " + std::to_string(n));
  if (!std::isfinite(eta)) throw_range("eta: expected a finite number");
  if (l == nullptr) throw_type("losses: missing data");
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (!is_finite_f32(l[i])) throw_range("losses[" + std::to_string(i) + "] is not finite (" + std::to_string(l[i]) + ")");
    lo = std::min(lo, double(l[i]));
    hi = std::max(hi, double(l[i]));
  }
  // the sums, and the weights from them (CUDA: both on the device, the losses copied in once)
  const tilt::Sums s = dispatch(dev, [&] {
    const tilt::Sums r = cpu::tilted_reduce(l, n, eta);
    if (weights || coef) cpu::tilted_write(l, n, eta, g, r, weights, coef);
    return r;
  }, [&] { return cuda::tilted_run(l, n, eta, g, weights, coef); });
  TiltedStats st;
  st.mean_loss = s.sum_l / double(n);
  st.robust_loss = tilt::robust_loss(s);
  st.max_weight = 1.0 / s.s;  // the largest e_i is exp(0) = 1
  st.effective_rows = (s.s * s.s) / s.s_ee;
  const double spread = std::fabs(eta) * (hi - lo);
  if (eta == 0.0) {
    st.tilted_erm = st.mean_loss;
  } else if (spread < 1e-3) {
    st.tilted_erm = tilted_erm_series(l, n, eta, st.mean_loss);
  } else {
    st.tilted_erm = (s.max_scaled + std::log(s.s / double(n))) / eta;
  }
  return st;
}

}  // namespace calmoe
