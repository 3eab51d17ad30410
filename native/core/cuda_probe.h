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

}  // namespace calmoe::cuda
