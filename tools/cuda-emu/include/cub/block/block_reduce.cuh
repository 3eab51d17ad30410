// Emulated cub::BlockReduce (what calmoe uses): every thread's value through shared storage; the
// result is valid in thread 0, as in CUB.
#pragma once
#include "cuda_runtime.h"

namespace cub {
template <class T, int kBlockThreads>
class BlockReduce {
 public:
  struct TempStorage {
    T v[kBlockThreads];
  };
  explicit BlockReduce(TempStorage& s) : s_(s) {}
  template <class Op>
  T Reduce(T x, Op op) {
    const unsigned t = threadIdx.x, n = blockDim.x;
    s_.v[t] = x;
    __syncthreads();
    T r = s_.v[0];
    if (t == 0)
      for (unsigned i = 1; i < n; ++i) r = op(r, s_.v[i]);
    __syncthreads();  // the storage may be reused after the call
    return r;
  }

 private:
  TempStorage& s_;
};
}  // namespace cub
