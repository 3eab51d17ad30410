// The training objective's per-example coefficients computed on the device (core/objective.h's
// definitions, the CPU engine's bits), so that a robust step needs no round trip through the host
// between its forward and its backward.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "calmoe/moe.h"
#include "core/objective.h"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {

class DeviceObjective {
 public:
  // Workspaces for batches of up to max_batch rows (allocated here, never in a step).
  void reserve(int64_t max_batch);

  // Queues coef (n, device) = dL/dl_i from the losses (and, for robust-filtered, the regret and
  // the disagreement; single_active: one expert per row, so R is empty), and the copy back of what
  // result() needs.
  void queue(const ObjectiveConfig& cfg, bool robust_active, bool single_active, const float* loss, const float* regret,
             const float* disagree, int64_t n, float* coef, cudaStream_t stream);

  // After the stream has synchronised: the objective's value (and |R|) from the host copy of the
  // n losses.
  moe::ObjectiveResult result(const ObjectiveConfig& cfg, bool robust_active, const float* host_loss, int64_t n) const;

 private:
  int64_t max_batch_ = 0;
  DeviceBuffer<double> ws_;         // the tilted sums' partials
  DeviceBuffer<tilt::Sums> sums_;
  DeviceBuffer<int32_t> members_;   // robust-filtered: R's rows, ascending
  DeviceBuffer<int32_t> count_;     // |R|
  DeviceBuffer<double> threshold_;  // robust-filtered with the batch median
  Pinned<tilt::Sums> h_sums_;
  Pinned<int32_t> h_count_;
};

}  // namespace calmoe::cuda
