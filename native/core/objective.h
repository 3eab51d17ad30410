// Training objectives as per-example coefficients: L = sum_i c_i l_i in value and gradient
// (c_i = dL/dl_i). Definitions: DESIGN.md "Objectives". Host code: the per-example losses of a
// batch are few (B), every backend hands them here.
#pragma once
#include <cstdint>

#include "calmoe/moe.h"
#include "core/tilted.h"

namespace calmoe::moe {

struct ObjectiveInput {
  const float* loss = nullptr;       // l_i (B)
  const float* regret = nullptr;     // robust-filtered: relu(l_i - min over active experts of l_ik) (B)
  const float* disagree = nullptr;   // robust-filtered: sum_s gate_s ||p_s - p||^2 (B)
  const float* tilt_loss = nullptr;  // robust, gradient 'term': the losses the weights come from (B; null: `loss`)
  int64_t batch = 0;
  bool single_active = false;        // hard routing: one active expert, so R is empty
};

struct ObjectiveResult {
  double value = 0;
  int64_t filtered = 0;  // |R| for robust-filtered
};

// Fills coef (B). ERM when !robust_active (warm-up epochs).
ObjectiveResult objective_coefficients(const ObjectiveConfig& cfg, bool robust_active, const ObjectiveInput& in, float* coef);

// The value of an objective whose coefficients a backend computed itself (the CUDA engine, on the
// device): from the B losses and, for robust objectives, the tilted sums over the rows tilted (all
// of them; robust-filtered: the `filtered` rows of R, none when R is empty).
ObjectiveResult objective_value(const ObjectiveConfig& cfg, bool robust_active, const float* loss, int64_t batch, int64_t filtered,
                                const tilt::Sums& sums);

// Whether the coefficients depend on the losses (false: every c_i is erm_coefficient(B), known
// before the forward ends, so a backend need not wait for the losses to start the backward).
inline bool objective_needs_losses(const ObjectiveConfig& cfg, bool robust_active) { return robust_active && cfg.kind != ObjectiveKind::Erm; }
// ERM's c_i = scale / B (scale 2 for robust-filtered with nothing filtered).
inline float erm_coefficient(int64_t batch, double scale = 1.0) { return float(scale / double(batch)); }

}  // namespace calmoe::moe
