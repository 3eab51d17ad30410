#include "host/radix_sort.h"

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

void radix_sort_u32(uint32_t* keys, uint32_t* scratch, std::size_t n) {
  if (n < 256) {
    std::sort(keys, keys + n);
    return;
  }
  std::size_t count[4][256] = {};
  for (std::size_t i = 0; i < n; ++i) {
    const uint32_t k = keys[i];
    ++count[0][k & 0xffu];
    ++count[1][(k >> 8) & 0xffu];
    ++count[2][(k >> 16) & 0xffu];
    ++count[3][k >> 24];
  }
  uint32_t* src = keys;
  uint32_t* dst = scratch;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 8 * pass;
    std::size_t* c = count[pass];
    if (c[(src[0] >> shift) & 0xffu] == n) continue;  // every key has this digit
    std::size_t offset = 0;
    for (int d = 0; d < 256; ++d) {
      const std::size_t t = c[d];
      c[d] = offset;
      offset += t;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const uint32_t k = src[i];
      dst[c[(k >> shift) & 0xffu]++] = k;
    }
    std::swap(src, dst);
  }
  if (src != keys) std::copy(src, src + n, keys);
}

}  // namespace calmoe::cpu
