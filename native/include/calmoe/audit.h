// Per-row audit quantities of a Mixture-of-Experts' outputs: the top-1 expert, routing entropy,
// the routing-weighted disagreement of the experts with the blend, the blend's loss and its regret
// against the best active expert. Definitions: ../../shared/DESIGN.md "Objectives"
// (robust-filtered): the same per-row math (native/core/audit.h) serves audits and training.
//
//   top1_i  = the expert with the largest routing weight (ties: the lower expert id)
//   H_i     = -sum_k r_ik log r_ik                     (nats; 0 log 0 = 0)
//   dis_i   = sum_k r_ik ||p_k,i - p_i||^2
//   l_i     = -log max(p_i[y_i], 1e-12)                (the blend's NLL, as the metrics define it)
//   regret_i = relu(l_i - min_{k: r_ik > 0} l_ik),  l_ik = -log max(p_k,i[y_i], 1e-12)
//
// Every output is per row (no reductions), computed in float32 with the shared math (explicit
// fused multiply-adds, calmoe's own log): CPU and CUDA write the same bits.
#pragma once
#include <cstdint>

#include "calmoe/device.h"
#include "calmoe/limits.h"

namespace calmoe {

struct MoeAuditArg {
  int64_t rows = 0;
  int64_t slots = 0;    // K: routing weights per row
  int64_t experts = 0;  // E: expert ids lie in [0, E); with no ids, E = K and slot k is expert k
  int64_t classes = 0;  // C (needed with expert_probs or mixture)
  const float* routing = nullptr;       // rows x slots, each row in [0, 1] summing to 1
  const int32_t* expert_ids = nullptr;  // rows x slots (the active experts' ids), or null
  const float* expert_probs = nullptr;  // rows x slots x classes probabilities, or null
  const float* mixture = nullptr;       // rows x classes probabilities, or null
  const int32_t* labels = nullptr;      // rows, or null
  double sum_tolerance = 1e-3;          // allowed |row sum - 1| of every probability / routing row
};

// Outputs (host memory, each rows long unless said otherwise); any may be null. Asking for one
// whose inputs are missing is a TypeError naming the input.
struct MoeAuditOut {
  int32_t* top1 = nullptr;
  float* max_weight = nullptr;
  float* entropy = nullptr;
  float* disagreement = nullptr;  // needs expert_probs and mixture
  float* loss = nullptr;          // needs mixture and labels
  float* regret = nullptr;        // needs expert_probs, mixture and labels
  float* own_probs = nullptr;     // rows x classes: the top-1 expert's probabilities; needs expert_probs
};

// Validates every input given (RangeError naming the argument, row, slot and column) and fills
// the outputs asked for. On an error the outputs are unspecified.
void moe_audit_rows(Device dev, const MoeAuditArg& arg, const MoeAuditOut& out);

}  // namespace calmoe
