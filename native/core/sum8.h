// Row sums with one fixed association in every backend (scalar, SIMD, CUDA), so a row's sum has
// the same bits everywhere: eight interleaved partial sums s_k = sum over j = k mod 8, in
// increasing j, combined as ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)) -- the natural
// order of an 8-lane register. Loops over j should step j0 += 8 with an unrolled lane k so the
// partials stay in registers on CUDA.
#pragma once
#include "hd.h"

namespace calmoe {

struct Sum8 {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  CALMOE_HD float total() const { return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])); }
};

}  // namespace calmoe
