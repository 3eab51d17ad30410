// Hidden-layer activations and their derivatives, shared by every backend and the GEMM epilogues.
// GELU is the tanh approximation (PyTorch's approximate='tanh'),
//   gelu(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3),
// evaluated in the sigmoid form with calmoe's exp, so every backend rounds alike.
#pragma once
#include "fastmath.h"
#include "hd.h"

namespace calmoe::act {

CALMOE_HD float relu(float x) { return x > 0.0f ? x : 0.0f; }
CALMOE_HD float relu_grad(float x) { return x > 0.0f ? 1.0f : 0.0f; }

constexpr float kGeluK0 = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluK1 = 0.044715f;

CALMOE_HD float gelu_sigmoid(float x) {  // sigmoid(2u)
  const float u = kGeluK0 * (x + kGeluK1 * x * x * x);
  return 1.0f / (1.0f + fm::exp_f32(-2.0f * u));
}

CALMOE_HD float gelu(float x) { return x * gelu_sigmoid(x); }

CALMOE_HD float gelu_grad(float x) {
  const float s = gelu_sigmoid(x);
  return s + x * s * (1.0f - s) * (2.0f * kGeluK0) * (1.0f + 3.0f * kGeluK1 * x * x);
}

}  // namespace calmoe::act
