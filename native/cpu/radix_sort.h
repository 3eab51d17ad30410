// Stable LSD radix sort of 32-bit keys (4 passes of 8 bits), for equal-mass binning and drift
// statistics over millions of rows.
#pragma once
#include <cstdint>
#include <vector>

namespace calmoe::cpu {
void radix_sort_u32(std::vector<uint32_t>& keys);
}
