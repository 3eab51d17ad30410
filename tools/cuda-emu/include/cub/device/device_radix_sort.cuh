// Emulated cub::DeviceRadixSort::SortKeys (what calmoe uses): a stable sort on bits
// [begin_bit, end_bit) of the keys, on the host (device memory is host memory here).
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

#include "cuda_runtime.h"

namespace cub {
struct DeviceRadixSort {
  template <class K>
  static cudaError_t SortKeys(void* temp, std::size_t& temp_bytes, const K* in, K* out, int n, int begin_bit = 0, int end_bit = int(sizeof(K) * 8),
                              cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    const int width = end_bit - begin_bit;
    const K mask = width >= int(sizeof(K) * 8) ? ~K(0) : K((K(1) << width) - 1);
    std::vector<K> v(in, in + n);
    std::stable_sort(v.begin(), v.end(), [&](K a, K b) { return ((a >> begin_bit) & mask) < ((b >> begin_bit) & mask); });
    std::copy(v.begin(), v.end(), out);
    return cudaSuccess;
  }
};
}  // namespace cub
