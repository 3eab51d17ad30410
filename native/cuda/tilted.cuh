// The tilted sums and weights queued on a stream, over losses already on the device: what the
// public tilted_weights (Device::Cuda) and the engine's robust objectives run. Each sum is the tree
// of runs of core/tilted.h, so the results have the CPU backend's bits.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/tilted.h"

namespace calmoe::cuda::tilted {

// The losses: l[idx[i]] (idx null: l[i]) for i < *count (count null: n). With count on the
// device, n bounds it and sizes the launches (a tree sized for n sums the same).
struct Losses {
  const float* l = nullptr;
  const int32_t* idx = nullptr;
  int64_t n = 0;
  const int32_t* count = nullptr;
};

// Doubles of workspace queue_sums needs for up to n losses.
int64_t workspace(int64_t n);

// *sums (device) = the tilted sums of the losses at eta.
void queue_sums(const Losses& in, double eta, tilt::Sums* sums, double* ws, cudaStream_t stream);

// w_i and the gradient coefficient c_i from *sums, written at idx[i] (or i); add: coef[.] += c_i
// (in float, as the CPU's robust-filtered does). weights or coef may be null.
void queue_write(const Losses& in, double eta, TiltGradient g, const tilt::Sums* sums, float* weights, float* coef, bool add,
                 cudaStream_t stream);

}  // namespace calmoe::cuda::tilted
