// Learning-rate schedules: linear warm-up, then constant or cosine decay to a floor.
#include <algorithm>
#include <cmath>

#include "calmoe/moe.h"

namespace calmoe {

double schedule_lr(const ScheduleConfig& s, double base, int64_t step, int64_t total) {
  if (s.warmup_steps > 0 && step < s.warmup_steps) return base * double(step + 1) / double(s.warmup_steps);
  if (s.kind == ScheduleKind::Constant) return base;
  const int64_t span = std::max<int64_t>(1, total - s.warmup_steps);
  const double t = std::min(1.0, double(step - s.warmup_steps) / double(span));
  const double floor = base * s.min_lr_ratio;
  return floor + (base - floor) * 0.5 * (1.0 + std::cos(3.141592653589793 * t));
}

}  // namespace calmoe
