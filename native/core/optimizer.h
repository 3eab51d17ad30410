// Optimiser updates, element by element (shared by the CPU and CUDA backends), and the
// learning-rate schedule. SGD: momentum and Nesterov as PyTorch's SGD, weight decay added to
// the gradient; AdamW: decoupled weight decay (Loshchilov & Hutter), bias-corrected moments.
#pragma once
#include <cmath>

#include "calmoe/moe.h"
#include "hd.h"

namespace calmoe::opt {

struct Hyper {
  OptimizerKind kind;
  float lr, weight_decay, momentum, beta1, beta2, eps;
  bool nesterov;
  float bias1, bias2;  // AdamW: 1 - beta^t
  float grad_scale;    // global-norm clipping factor (1 = none)
};

// The hyper-parameters of step `step` (1-based) at learning rate `lr`, clipping factor `grad_scale`.
inline Hyper hyper(const OptimizerConfig& o, double lr, int64_t step, float grad_scale) {
  Hyper h;
  h.kind = o.kind;
  h.lr = float(lr);
  h.weight_decay = float(o.weight_decay);
  h.momentum = float(o.momentum);
  h.nesterov = o.nesterov;
  h.beta1 = float(o.beta1);
  h.beta2 = float(o.beta2);
  h.eps = float(o.eps);
  h.bias1 = float(1.0 - std::pow(o.beta1, double(step)));
  h.bias2 = float(1.0 - std::pow(o.beta2, double(step)));
  h.grad_scale = grad_scale;
  return h;
}

// Updates one parameter; m, v: optimiser state (v unused by SGD). Returns the new value.
CALMOE_HD float update(const Hyper& h, float p, float g, float& m, float& v, bool first_step) {
  g *= h.grad_scale;
  if (h.kind == OptimizerKind::Sgd) {
    g += h.weight_decay * p;
    if (h.momentum != 0.0f) {
      m = first_step ? g : h.momentum * m + g;
      g = h.nesterov ? g + h.momentum * m : m;
    }
    return p - h.lr * g;
  }
  m = h.beta1 * m + (1.0f - h.beta1) * g;
  v = h.beta2 * v + (1.0f - h.beta2) * g * g;
  const float mhat = m / h.bias1, vhat = v / h.bias2;
  return p - h.lr * (mhat / (sqrtf(vhat) + h.eps) + h.weight_decay * p);
}

}  // namespace calmoe::opt
