// Emulated cuda_bf16.h: the BF16 type and its round-to-nearest-even conversion (what calmoe uses).
#pragma once
#include <cstring>

struct __nv_bfloat16 {
  unsigned short x;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 b;
  if ((u & 0x7f800000u) == 0x7f800000u) {
    b.x = (u & 0x007fffffu) ? (unsigned short)((u >> 16) | 0x40u) : (unsigned short)(u >> 16);  // NaN stays NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // nearest, ties to even
    b.x = (unsigned short)(u >> 16);
  }
  return b;
}

inline float __bfloat162float(__nv_bfloat16 b) {
  const unsigned u = unsigned(b.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
