// CUDA helpers for the backend: error checks that throw calmoe::Error, an owning device buffer,
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

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }
  ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(std::size_t n) {
    if (n <= n_) return;
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = 0;
    check(cudaMalloc(&ptr_, n * sizeof(T)), "cudaMalloc");
    n_ = n;
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return n_; }
  void upload(const T* host, std::size_t n) { check(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D"); }
  void download(T* host, std::size_t n) const { check(cudaMemcpy(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H"); }
  void zero(std::size_t n) { check(cudaMemset(ptr_, 0, n * sizeof(T)), "cudaMemset"); }

 private:
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
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
