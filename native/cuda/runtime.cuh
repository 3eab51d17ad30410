// CUDA helpers for the backend: error checks that throw calmoe::Error, owning device and pinned buffers,
// and 128-bit integer atomics (integer atomics are associative, so results stay deterministic).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

#include "calmoe/error.h"

namespace calmoe::cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* what);

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda(err, what);
}

// Picks the device for this host thread (the first usable one) before any allocation.
void use_default_device();

// For benchmarks: the best of `repeat` runs of launch(), timed with CUDA events on the default
// stream, after one warm-up run; prepare() (may be empty) runs before each, outside the timing.
double best_event_seconds(int repeat, const std::function<void()>& launch, const std::function<void()>& prepare = {});

// Device memory that calmoe holds (every device allocation is a CudaAllocation), in bytes: now, and
// the most at once since the last reset_device_memory_peak (benchmarks report it beside PyTorch's
// max_memory_allocated). Pinned host memory is not counted.
struct DeviceMemoryStats {
  std::size_t live = 0, peak = 0;
};
DeviceMemoryStats device_memory_stats();
void reset_device_memory_peak();  // the peak restarts from what is held now
void note_device_memory(std::size_t bytes, bool allocated);

// An owning allocation of up to n T: device memory, or page-locked host memory (kPinned: staging
// that copies can read or write asynchronously). resize grows only (the old contents are lost).
template <class T, bool kPinned>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  explicit CudaAllocation(std::size_t n) { resize(n); }
  ~CudaAllocation() { release(); }
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;
  void resize(std::size_t n) {
    if (n <= n_) return;
    release();
    void* p = nullptr;
    check(kPinned ? cudaMallocHost(&p, n * sizeof(T)) : cudaMalloc(&p, n * sizeof(T)), kPinned ? "cudaMallocHost" : "cudaMalloc");
    ptr_ = static_cast<T*>(p);
    n_ = n;
    if (!kPinned) note_device_memory(n * sizeof(T), true);
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return n_; }

 private:
  void release() {
    if (ptr_ && !kPinned) note_device_memory(n_ * sizeof(T), false);
    if (ptr_) kPinned ? cudaFreeHost(ptr_) : cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

template <class T>
using Pinned = CudaAllocation<T, true>;

template <class T>
class DeviceBuffer : public CudaAllocation<T, false> {
 public:
  using CudaAllocation<T, false>::CudaAllocation;
  using CudaAllocation<T, false>::get;
  void upload(const T* host, std::size_t n) { check(cudaMemcpy(get(), host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D"); }
  void download(T* host, std::size_t n) const { check(cudaMemcpy(host, get(), n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H"); }
  void zero(std::size_t n) { check(cudaMemset(get(), 0, n * sizeof(T)), "cudaMemset"); }
};

#if defined(__CUDACC__)
__device__ __forceinline__ void atomic_add_u128(unsigned long long* lo, unsigned long long* hi, unsigned long long v) {
  const unsigned long long old = atomicAdd(lo, v);
  if (old + v < old) atomicAdd(hi, 1ull);
}
__device__ __forceinline__ void atomic_add_u128(unsigned long long* lo, unsigned long long* hi, unsigned long long vlo,
                                                unsigned long long vhi) {
  atomic_add_u128(lo, hi, vlo);
  if (vhi) atomicAdd(hi, vhi);
}
#endif

}  // namespace calmoe::cuda
