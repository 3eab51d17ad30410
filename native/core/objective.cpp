#include "core/objective.h"

#include <algorithm>
#include <vector>

namespace calmoe::moe {
namespace {

// scale * mean(l), the sum in row order
double mean_loss(const float* loss, int64_t batch, double scale) {
  double sum = 0;
  for (int64_t i = 0; i < batch; ++i) sum += loss[i];
  return scale * sum / double(batch);
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
  const int64_t B = in.batch;
  tilt::Sums sums;
  if (!objective_needs_losses(cfg, robust_active)) {
    std::fill(coef, coef + B, erm_coefficient(B));
    return objective_value(cfg, robust_active, in.loss, B, 0, sums);
  }
  if (cfg.kind == ObjectiveKind::Robust && in.tilt_loss) {
    // weights from other losses (hard routing's top-1 expert), held constant, times the losses
    sums = cpu::tilted_reduce(in.tilt_loss, B, cfg.eta);
    cpu::tilted_write(in.tilt_loss, B, cfg.eta, TiltGradient::Term, sums, coef, nullptr);
    ObjectiveResult r;
    for (int64_t i = 0; i < B; ++i) r.value += double(coef[i]) * double(in.loss[i]);
    return r;
  }
  if (cfg.kind == ObjectiveKind::Robust) {
    sums = cpu::tilted_reduce(in.loss, B, cfg.eta);
    cpu::tilted_write(in.loss, B, cfg.eta, cfg.gradient, sums, nullptr, coef);
    return objective_value(cfg, robust_active, in.loss, B, 0, sums);
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
  const int64_t R = int64_t(members.size());
  std::fill(coef, coef + B, erm_coefficient(B, R == 0 ? 2.0 : 1.0));
  if (R > 0) {
    std::vector<float> lr(members.size()), cr(members.size());
    for (std::size_t m = 0; m < members.size(); ++m) lr[m] = in.loss[members[m]];
    sums = cpu::tilted_reduce(lr.data(), R, cfg.eta);
    cpu::tilted_write(lr.data(), R, cfg.eta, cfg.gradient, sums, nullptr, cr.data());
    for (std::size_t m = 0; m < members.size(); ++m) coef[members[m]] += cr[m];
  }
  return objective_value(cfg, robust_active, in.loss, B, R, sums);
}

}  // namespace calmoe::moe
