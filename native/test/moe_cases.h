// Shorthands for the MoE tests' cases (moe_test, moe_cuda_test): a config, an objective, and a
// case that names them with a batch size.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "calmoe/moe.h"

namespace moe_cases {

using namespace calmoe;

inline MoEConfig cfg(int64_t d, int64_t C, int64_t K, Routing r, int64_t k, std::vector<int64_t> eh, std::vector<int64_t> rh,
                     Activation a = Activation::Relu, float tau = 1.0f) {
  MoEConfig c;
  c.input_dim = d;
  c.classes = C;
  c.experts = K;
  c.routing = r;
  c.top_k = k;
  c.expert_hidden = std::move(eh);
  c.router_hidden = std::move(rh);
  c.activation = a;
  c.router_temperature = tau;
  c.precision = MatmulPrecision::Fp32;  // CUDA: the exact mode (the CPU's bits); the tensor-core tests set theirs
  return c;
}

inline ObjectiveConfig obj(ObjectiveKind k, TiltGradient g = TiltGradient::Term, double eta = 1.5, double balance = 0) {
  ObjectiveConfig o;
  o.kind = k;
  o.gradient = g;
  o.eta = eta;
  o.balance_alpha = balance;
  return o;
}

struct Case {
  const char* name;
  MoEConfig c;
  ObjectiveConfig o;
  int64_t batch;
  bool robust_active = true;  // the robust term is on (false: an ERM warm-up step)
  bool temps = false;         // per-expert temperatures other than 1
};

}  // namespace moe_cases
