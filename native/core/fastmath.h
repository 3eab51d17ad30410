// Float32 exp and log (and a float64 exp) written once, with explicit fused multiply-adds, so that the scalar CPU
// path, the AVX2 path (native/cpu/simd_math_avx2.h repeats these steps lane-wise) and CUDA round
// identically and every backend puts a row into the same calibration bin. Both are within about
// 1 ulp of the correctly rounded result over their domains (tested in native/test/fastmath_test).
//
// Polynomials: the classic minimax fits of log1p on [sqrt(1/2)-1, sqrt(2)-1] and of exp on
// [-ln2/2, ln2/2] (Cody-Waite range reduction with ln2 split in a short high part and a low part).
#pragma once
#include <cmath>

#include "hd.h"

namespace calmoe::fm {

namespace c {
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kExpHi = 88.7228390520684f;   // ln(FLT_MAX): above it, +inf
constexpr float kExpLo = -103.972076416016f;  // below: 0
// log1p(f) = f - f^2/2 + f^3 * P(f)
constexpr float kL0 = 3.3333331174e-1f, kL1 = -2.4999993993e-1f, kL2 = 2.0000714765e-1f,
                kL3 = -1.6668057665e-1f, kL4 = 1.4249322787e-1f, kL5 = -1.2420140846e-1f,
                kL6 = 1.1676998740e-1f, kL7 = -1.1514610310e-1f, kL8 = 7.0376836292e-2f;
// exp(r) = 1 + r + r^2 * Q(r)
constexpr float kE0 = 5.0000001201e-1f, kE1 = 1.6666665459e-1f, kE2 = 4.1665795894e-2f,
                kE3 = 8.3334519073e-3f, kE4 = 1.3981999507e-3f, kE5 = 1.9875691500e-4f;
// float64 exp: ln2 = kLn2HiD + kLn2LoD (fdlibm's split: kLn2HiD has 32 trailing zero bits, so
// n * kLn2HiD is exact for every n exp reaches) and the Taylor series of exp(r) to r^13 on
// |r| <= ln2/2 (the first term left out, r^14/14!, is below 2^-60)
constexpr double kLn2HiD = 6.93147180369123816490e-01;
constexpr double kLn2LoD = 1.90821492927058770002e-10;
constexpr double kLog2eD = 1.44269504088896338700e+00;
constexpr double kExpHiD = 709.782712893383973096;   // ln(DBL_MAX): above it, +inf
constexpr double kExpLoD = -745.13321910194110842;   // below: 0 (half the smallest subnormal)
constexpr double kF2 = 1.0 / 2, kF3 = 1.0 / 6, kF4 = 1.0 / 24, kF5 = 1.0 / 120, kF6 = 1.0 / 720, kF7 = 1.0 / 5040,
                 kF8 = 1.0 / 40320, kF9 = 1.0 / 362880, kF10 = 1.0 / 3628800, kF11 = 1.0 / 39916800,
                 kF12 = 1.0 / 479001600, kF13 = 1.0 / 6227020800;  // 1/k!
}  // namespace c

CALMOE_HD double fma_f64(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

CALMOE_HD double rint_f64(double x) {
#if defined(__CUDA_ARCH__)
  return rint(x);
#else
  return std::nearbyint(x);
#endif
}

CALMOE_HD float fma_f32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

CALMOE_HD float rint_f32(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

// Natural log for finite x > 0 (callers clamp first); 0 -> -inf, negative or NaN -> NaN.
CALMOE_HD float log_f32(float x) {
  if (!(x > 0.0f)) return x == 0.0f ? -INFINITY : NAN;
  if (!is_finite_f32(x)) return x;
  int32_t e = 0;
  uint32_t u = f32_bits(x);
  if (u < 0x00800000u) {  // subnormal: scale into the normal range
    x *= 8388608.0f;      // 2^23
    u = f32_bits(x);
    e = -23;
  }
  e += int32_t(u >> 23) - 126;
  float m = bits_f32((u & 0x007fffffu) | 0x3f000000u);  // m in [0.5, 1)
  if (m < c::kSqrtHalf) {
    e -= 1;
    m = m + m - 1.0f;
  } else {
    m = m - 1.0f;
  }
  const float z = m * m;
  float p = c::kL8;
  p = fma_f32(p, m, c::kL7);
  p = fma_f32(p, m, c::kL6);
  p = fma_f32(p, m, c::kL5);
  p = fma_f32(p, m, c::kL4);
  p = fma_f32(p, m, c::kL3);
  p = fma_f32(p, m, c::kL2);
  p = fma_f32(p, m, c::kL1);
  p = fma_f32(p, m, c::kL0);
  float y = (m * z) * p;
  const float fe = float(e);
  y = fma_f32(fe, c::kLn2Lo, y);
  y = fma_f32(-0.5f, z, y);
  float r = m + y;
  r = fma_f32(fe, c::kLn2Hi, r);
  return r;
}

// e^x; +inf above ~88.72, 0 below ~-103.97, NaN stays NaN.
CALMOE_HD float exp_f32(float x) {
  if (!(x == x)) return x;
  if (x > c::kExpHi) return INFINITY;
  if (x < c::kExpLo) return 0.0f;
  const float n = rint_f32(x * c::kLog2e);
  float r = fma_f32(-n, c::kLn2Hi, x);
  r = fma_f32(-n, c::kLn2Lo, r);
  float q = c::kE5;
  q = fma_f32(q, r, c::kE4);
  q = fma_f32(q, r, c::kE3);
  q = fma_f32(q, r, c::kE2);
  q = fma_f32(q, r, c::kE1);
  q = fma_f32(q, r, c::kE0);
  const float r2 = r * r;
  float y = fma_f32(q, r2, r) + 1.0f;
  // scale by 2^n in two steps so that results in the subnormal range are formed correctly
  int32_t ni = int32_t(n);
  int32_t n1 = ni < -126 ? -126 : (ni > 127 ? 127 : ni);
  int32_t n2 = ni - n1;
  y *= bits_f32(uint32_t(n1 + 127) << 23);
  if (n2 != 0) y *= bits_f32(uint32_t(n2 + 127) << 23);
  return y;
}

// e^x in float64, for the reductions that decide a whole batch's weighting (tilted weights): the
// C library's exp differs between the host and CUDA in the last bit, this one does not. Within
// about 1 ulp of the correctly rounded result (native/test/fastmath_test); +inf above ~709.78, 0
// below ~-745.13, NaN stays NaN.
CALMOE_HD double exp_f64(double x) {
  if (!(x == x)) return x;
  if (x > c::kExpHiD) return INFINITY;
  if (x < c::kExpLoD) return 0.0;
  const double n = rint_f64(x * c::kLog2eD);
  double r = fma_f64(-n, c::kLn2HiD, x);
  r = fma_f64(-n, c::kLn2LoD, r);
  double p = c::kF13;
  p = fma_f64(p, r, c::kF12);
  p = fma_f64(p, r, c::kF11);
  p = fma_f64(p, r, c::kF10);
  p = fma_f64(p, r, c::kF9);
  p = fma_f64(p, r, c::kF8);
  p = fma_f64(p, r, c::kF7);
  p = fma_f64(p, r, c::kF6);
  p = fma_f64(p, r, c::kF5);
  p = fma_f64(p, r, c::kF4);
  p = fma_f64(p, r, c::kF3);
  p = fma_f64(p, r, c::kF2);
  double y = 1.0 + fma_f64(p, r * r, r);  // 1 + r + r^2 (1/2 + r/6 + ...)
  // 2^n in two steps so that subnormal results are formed (n reaches -1075 and 1024)
  const int32_t ni = int32_t(n);
  const int32_t n1 = ni < -1022 ? -1022 : (ni > 1023 ? 1023 : ni);
  const int32_t n2 = ni - n1;
  y *= bits_f64(uint64_t(n1 + 1023) << 52);
  if (n2 != 0) y *= bits_f64(uint64_t(n2 + 1023) << 52);
  return y;
}

}  // namespace calmoe::fm
