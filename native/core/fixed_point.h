// Exact, order-independent accumulation: non-negative values are converted to fixed point
// (floor(x * 2^frac), exactly, by bit manipulation) and summed as 128-bit integers. Integer sums
// are associative, so threads, chunks, merges and CUDA blocks all produce identical bits.
#pragma once
#include "hd.h"

namespace calmoe {

struct U128 {
  uint64_t lo = 0, hi = 0;
};

CALMOE_HD void u128_add(uint64_t& lo, uint64_t& hi, uint64_t v) {
  lo += v;
  hi += (lo < v) ? 1u : 0u;
}

CALMOE_HD void u128_add(uint64_t& lo, uint64_t& hi, uint64_t vlo, uint64_t vhi) {
  lo += vlo;
  hi += vhi + ((lo < vlo) ? 1u : 0u);
}

CALMOE_HD double u128_to_double(uint64_t lo, uint64_t hi, int frac_bits) {
  // hi * 2^(64 - frac) + lo * 2^-frac; both scalings are exact powers of two
  double scale_lo = 1.0, scale_hi = 1.0;
  for (int i = 0; i < frac_bits; ++i) scale_lo *= 0.5;
  for (int i = 0; i < 64 - frac_bits; ++i) scale_hi *= 2.0;
  for (int i = 0; i < frac_bits - 64; ++i) scale_hi *= 0.5;
  return double(hi) * scale_hi + double(lo) * scale_lo;
}

// floor(x * 2^frac) for finite x >= 0 with x * 2^frac < 2^64 (callers guarantee the range).
CALMOE_HD uint64_t to_fixed(float x, int frac_bits) {
  const uint32_t u = f32_bits(x);
  uint32_t e = (u >> 23) & 0xffu;
  uint64_t m = u & 0x007fffffu;
  if (e != 0) m |= 0x00800000u; else e = 1;
  // x = m * 2^(e - 150)
  const int shift = int(e) - 150 + frac_bits;
  if (shift >= 0) return m << shift;
  if (shift <= -64) return 0;
  return m >> (-shift);
}

}  // namespace calmoe
