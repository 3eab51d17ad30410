#include "cpu/radix_sort.h"

#include <algorithm>

namespace calmoe::cpu {

void radix_sort_u32(std::vector<uint32_t>& keys) {
  const std::size_t n = keys.size();
  if (n < 256) {
    std::sort(keys.begin(), keys.end());
    return;
  }
  std::vector<uint32_t> tmp(n);
  uint32_t* src = keys.data();
  uint32_t* dst = tmp.data();
  for (int shift = 0; shift < 32; shift += 8) {
    std::size_t count[257] = {0};
    for (std::size_t i = 0; i < n; ++i) ++count[((src[i] >> shift) & 0xffu) + 1];
    if (count[((src[0] >> shift) & 0xffu) + 1] == n) continue;  // every key has this digit
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (std::size_t i = 0; i < n; ++i) dst[count[(src[i] >> shift) & 0xffu]++] = src[i];
    std::swap(src, dst);
  }
  if (src != keys.data()) std::copy(src, src + n, keys.data());
}

}  // namespace calmoe::cpu
