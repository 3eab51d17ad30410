#include "core/objective.h"

#include <algorithm>
#include <vector>

#include "calmoe/tilted.h"

namespace calmoe::moe {
namespace {

// scale * mean(l), the sum in row order
double mean_loss(const float* loss, int64_t batch, double scale) {
  double sum = 0;
  for (int64_t i = 0; i < batch; ++i) sum += loss[i];
  return scale * sum / double(batch);
}

double erm(const ObjectiveInput& in, float* coef, double scale) {
  std::fill(coef, coef + in.batch, erm_coefficient(in.batch, scale));
  return mean_loss(in.loss, in.batch, scale);
}

}  // namespace

ObjectiveResult objective_value(const ObjectiveConfig& cfg, bool robust_active, const float* loss, int64_t batch, int64_t filtered,
                                const tilt::Sums& sums) {
  ObjectiveResult r;
  if (!objective_needs_losses(cfg, robust_active)) {
    r.value = mean_loss(loss, batch, 1.0);
  } else if (cfg.kind == ObjectiveKind::Robust) {
    r.value = tilt::robust_loss(sums);
  } else {
    r.filtered = filtered;
    r.value = filtered == 0 ? mean_loss(loss, batch, 2.0) : mean_loss(loss, batch, 1.0) + tilt::robust_loss(sums);
  }
  return r;
}

ObjectiveResult objective_coefficients(const ObjectiveConfig& cfg, bool robust_active, const ObjectiveInput& in, float* coef) {
  ObjectiveResult r;
  const int64_t B = in.batch;
  if (!objective_needs_losses(cfg, robust_active)) {
    r.value = erm(in, coef, 1.0);
    return r;
  }
  if (cfg.kind == ObjectiveKind::Robust) {
    std::vector<float> c(static_cast<std::size_t>(B));
    const TiltedStats st = tilted_weights(Device::Cpu, in.loss, B, cfg.eta, cfg.gradient, nullptr, c.data());
    std::copy(c.begin(), c.end(), coef);
    r.value = st.robust_loss;
    return r;
  }
  // robust-filtered: mean(l) + the tilted loss over R = {regret > tau_r} or {dis > tau_d}
  // (or dis above the batch median); R empty (always so with one active expert): mean(l) again.
  std::vector<int32_t> members;
  if (!in.single_active) {
    double threshold = cfg.tau_disagreement;
    if (cfg.median_disagreement) {
      std::vector<float> d(in.disagree, in.disagree + B);
      std::nth_element(d.begin(), d.begin() + B / 2, d.end());
      threshold = B % 2 ? d[B / 2] : 0.5 * (double(d[B / 2]) + double(*std::max_element(d.begin(), d.begin() + B / 2)));
    }
    for (int64_t i = 0; i < B; ++i) {
      if (double(in.regret[i]) > cfg.tau_regret || double(in.disagree[i]) > threshold) members.push_back(int32_t(i));
    }
  }
  r.filtered = int64_t(members.size());
  if (members.empty()) {
    r.value = erm(in, coef, 2.0);
    return r;
  }
  r.value = erm(in, coef, 1.0);
  std::vector<float> lr(members.size()), cr(members.size());
  for (std::size_t m = 0; m < members.size(); ++m) lr[m] = in.loss[members[m]];
  const TiltedStats st = tilted_weights(Device::Cpu, lr.data(), int64_t(lr.size()), cfg.eta, cfg.gradient, nullptr, cr.data());
  for (std::size_t m = 0; m < members.size(); ++m) coef[members[m]] += cr[m];
  r.value += st.robust_loss;
  return r;
}

}  // namespace calmoe::moe
