// Tilted (adversarially reweighted) loss: w = softmax(eta * l) over a minibatch.
// Definitions: ../../shared/DESIGN.md "Objectives".
#pragma once
#include <cstdint>

#include "calmoe/device.h"

namespace calmoe {

// 'term': the weights are held constant (tilted-ERM / KL-DRO gradient): coef_j = w_j.
// 'through': autograd through w: coef_j = w_j * (1 + eta * (l_j - sum_i w_i l_i)).
enum class TiltGradient : uint8_t { Term = 0, Through = 1 };

struct TiltedStats {
  double robust_loss = 0;   // sum_i w_i l_i
  double tilted_erm = 0;    // (1/eta) log mean exp(eta l); mean(l) at eta = 0
  double mean_loss = 0;
  double max_weight = 0;
  double effective_rows = 0;  // 1 / sum w_i^2: how many rows carry the batch
};

// `weights` and `coef` (length n) may be null when not wanted. Throws RangeError on n < 1,
// non-finite eta, or a non-finite loss (naming its index).
TiltedStats tilted_weights(Device dev, const float* losses, int64_t n, double eta, TiltGradient grad,
                           float* weights, float* coef);

}  // namespace calmoe
