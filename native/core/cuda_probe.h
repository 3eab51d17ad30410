// What the CUDA runtime says about this machine (implemented in native/cuda/runtime.cu).
#pragma once
#include <string>
#include <vector>

#include "calmoe/device.h"

namespace calmoe::cuda {

struct Probe {
  int runtime_version = 0;
  int driver_version = 0;
  std::vector<GpuInfo> gpus;
  std::string reason;  // why no GPU is usable; empty when one is
};

// Queried once per process (the answer does not change while it runs).
const Probe& probe();

// For the benchmark: device-to-device copy bandwidth (bytes read + written per second, GB/s), the
// best of `repeat` copies of `bytes` -- what a memory-bound kernel can hope to reach.
double copy_bandwidth_gbs(std::size_t bytes, int repeat);

}  // namespace calmoe::cuda
