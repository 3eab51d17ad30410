// Stable LSD radix sort of 32-bit keys (4 passes of 8 bits), for equal-mass binning and drift
// statistics over millions of rows.
#pragma once
#include <cstdint>
#include <vector>

namespace calmoe::cpu {
void radix_sort_u32(std::vector<uint32_t>& keys);
// The same on a raw array, with caller-owned scratch of n keys (no allocation): one counting pass
// for all four digits, and passes whose digit is the same for every key are skipped. For float
// data sort order-preserving keys (drift::key_of in core/drift.h).
void radix_sort_u32(uint32_t* keys, uint32_t* scratch, std::size_t n);
}
