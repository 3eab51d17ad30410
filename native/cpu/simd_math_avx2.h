// AVX2 versions of core/fastmath.h: the same operations in the same order, lane by lane, so
// every lane rounds exactly as the scalar function does. Include only from *_avx2.cpp files.
#pragma once
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "core/fastmath.h"

namespace calmoe::cpu::avx2 {

// log_f32 for normal, positive, finite x (callers clamp: p >= 1e-12, softmax sums >= 1).
[[gnu::always_inline]] inline __m256 log8(__m256 x) {
  using namespace calmoe::fm::c;
  const __m256i u = _mm256_castps_si256(x);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(126));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(kSqrtHalf), _CMP_LT_OQ);
  e = _mm256_add_epi32(e, _mm256_castps_si256(small));  // -1 where small (mask is all ones)
  const __m256 one = _mm256_set1_ps(1.0f);
  m = _mm256_blendv_ps(_mm256_sub_ps(m, one), _mm256_sub_ps(_mm256_add_ps(m, m), one), small);
  const __m256 z = _mm256_mul_ps(m, m);
  __m256 p = _mm256_set1_ps(kL8);
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL7));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL6));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL5));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL4));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL3));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL2));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL1));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(kL0));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(m, z), p);
  const __m256 fe = _mm256_cvtepi32_ps(e);
  y = _mm256_fmadd_ps(fe, _mm256_set1_ps(kLn2Lo), y);
  y = _mm256_fmadd_ps(_mm256_set1_ps(-0.5f), z, y);
  __m256 r = _mm256_add_ps(m, y);
  return _mm256_fmadd_ps(fe, _mm256_set1_ps(kLn2Hi), r);
}

// exp_f32 lane by lane over its whole domain: +inf above ~88.72, 0 below ~-103.97, NaN stays NaN.
[[gnu::always_inline]] inline __m256 exp8(__m256 x) {
  using namespace calmoe::fm::c;
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 nn = _mm256_xor_ps(n, _mm256_set1_ps(-0.0f));  // -n
  __m256 r = _mm256_fmadd_ps(nn, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fmadd_ps(nn, _mm256_set1_ps(kLn2Lo), r);
  __m256 q = _mm256_set1_ps(kE5);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kE4));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kE3));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kE2));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kE1));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kE0));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);  // exact: n is integral (lanes out of range are replaced below)
  const __m256i n1 = _mm256_min_epi32(_mm256_max_epi32(ni, _mm256_set1_epi32(-126)), _mm256_set1_epi32(127));
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));  // 2^0 = 1 is exact
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(kExpLo), _CMP_LT_OQ), y);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(kExpHi), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN stays NaN
}

// fm::exp_f64 lane by lane over its whole domain: +inf above ~709.78, 0 below ~-745.13, NaN
// stays NaN (the scalar function's early returns become blends; its skipped multiply by 2^0 is
// exact here).
[[gnu::always_inline]] inline __m256d exp4d(__m256d x) {
  using namespace calmoe::fm::c;
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(kLog2eD)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256d nn = _mm256_xor_pd(n, _mm256_set1_pd(-0.0));  // -n
  __m256d r = _mm256_fmadd_pd(nn, _mm256_set1_pd(kLn2HiD), x);
  r = _mm256_fmadd_pd(nn, _mm256_set1_pd(kLn2LoD), r);
  __m256d p = _mm256_set1_pd(kF13);
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF12));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF11));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF10));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF9));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF8));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF7));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF6));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF5));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF4));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF3));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kF2));
  __m256d y = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_fmadd_pd(p, _mm256_mul_pd(r, r), r));
  const __m128i ni = _mm256_cvtpd_epi32(n);  // exact: n is integral (lanes out of range are replaced below)
  const __m128i n1 = _mm_min_epi32(_mm_max_epi32(ni, _mm_set1_epi32(-1022)), _mm_set1_epi32(1023));
  const __m128i n2 = _mm_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi64x(1023);
  y = _mm256_mul_pd(y, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n1), bias), 52)));
  y = _mm256_mul_pd(y, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n2), bias), 52)));
  y = _mm256_andnot_pd(_mm256_cmp_pd(x, _mm256_set1_pd(kExpLoD), _CMP_LT_OQ), y);
  y = _mm256_blendv_pd(y, _mm256_set1_pd(INFINITY), _mm256_cmp_pd(x, _mm256_set1_pd(kExpHiD), _CMP_GT_OQ));
  return _mm256_blendv_pd(y, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));  // NaN stays NaN
}

// In-register 8x8 transpose: r[k] lane j <- r[j] lane k.
[[gnu::always_inline]] inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// floor(x * 2^frac) for 4 non-negative finite floats (as core/fixed_point.h to_fixed), in 64-bit lanes.
[[gnu::always_inline]] inline __m256i to_fixed4(__m128 x, int frac_bits) {
  const __m128i u = _mm_castps_si128(x);
  const __m128i e = _mm_and_si128(_mm_srli_epi32(u, 23), _mm_set1_epi32(0xff));
  const __m128i is_norm = _mm_cmpgt_epi32(e, _mm_setzero_si128());
  __m128i m = _mm_and_si128(u, _mm_set1_epi32(0x007fffff));
  m = _mm_or_si128(m, _mm_and_si128(is_norm, _mm_set1_epi32(0x00800000)));
  const __m128i e1 = _mm_max_epi32(e, _mm_set1_epi32(1));
  const __m128i shift = _mm_add_epi32(e1, _mm_set1_epi32(frac_bits - 150));
  const __m256i m64 = _mm256_cvtepu32_epi64(m);
  const __m256i s64 = _mm256_cvtepi32_epi64(shift);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i left = _mm256_sllv_epi64(m64, _mm256_max_epi32(s64, zero));  // counts < 64 here
  const __m256i right = _mm256_srlv_epi64(m64, _mm256_sub_epi64(zero, s64)); // >= 64 gives 0
  return _mm256_blendv_epi8(right, left, _mm256_cmpgt_epi64(s64, _mm256_set1_epi64x(-1)));
}

// to_fixed4 for values known to be normal and >= 2^(-frac_bits + 23) (every bit lands at or
// above 2^-frac: a left shift, no rounding): top-label confidences of valid rows (>= 1/C).
[[gnu::always_inline]] inline __m256i to_fixed4_large(__m128 x, int frac_bits) {
  const __m128i u = _mm_castps_si128(x);
  const __m128i m = _mm_or_si128(_mm_and_si128(u, _mm_set1_epi32(0x007fffff)), _mm_set1_epi32(0x00800000));
  const __m128i shift = _mm_add_epi32(_mm_srli_epi32(u, 23), _mm_set1_epi32(frac_bits - 150));
  return _mm256_sllv_epi64(_mm256_cvtepu32_epi64(m), _mm256_cvtepu32_epi64(shift));
}

}  // namespace calmoe::cpu::avx2
#endif
