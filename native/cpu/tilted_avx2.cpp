// AVX2 unnormalised tilted weights: four losses at a time through exp4d (cpu/simd_math_avx2.h).
#include "cpu/tilted_avx2.h"

#include "core/tilted.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "cpu/simd_math_avx2.h"

namespace calmoe::cpu::avx2 {

void tilt_unnormalised(const float* l, int64_t n, double eta, double max_scaled, double* u) {
  const __m256d ve = _mm256_set1_pd(eta), vm = _mm256_set1_pd(max_scaled);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d x = _mm256_sub_pd(_mm256_mul_pd(ve, _mm256_cvtps_pd(_mm_loadu_ps(l + i))), vm);  // eta l - max, as tilt::unnormalised
    _mm256_storeu_pd(u + i, exp4d(x));
  }
  for (; i < n; ++i) u[i] = tilt::unnormalised(l[i], eta, max_scaled);
}

}  // namespace calmoe::cpu::avx2

#else  // no AVX2 at compile time (non-x86 builds): never selected

namespace calmoe::cpu::avx2 {
void tilt_unnormalised(const float* l, int64_t n, double eta, double max_scaled, double* u) {
  for (int64_t i = 0; i < n; ++i) u[i] = tilt::unnormalised(l[i], eta, max_scaled);
}
}  // namespace calmoe::cpu::avx2

#endif
