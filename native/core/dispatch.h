// Picks the backend implementation of an op. CUDA entry points exist only when the CUDA backend
// was compiled; resolve_device() has already refused 'cuda' when no GPU is usable.
#pragma once
#include "calmoe/device.h"
#include "calmoe/error.h"

namespace calmoe {

template <class CpuFn, class CudaFn>
auto dispatch(Device dev, CpuFn&& on_cpu, CudaFn&& on_cuda) {
  if (dev == Device::Cuda) {
#if CALMOE_WITH_CUDA
    return on_cuda();
#else
    (void)on_cuda;
    throw Error(ErrorKind::Unavailable, "device 'cuda': this build of calmoe has no CUDA backend", "CALMOE_CUDA_UNAVAILABLE");
#endif
  }
  return on_cpu();
}

}  // namespace calmoe
