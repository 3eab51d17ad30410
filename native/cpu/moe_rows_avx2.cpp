// The AVX2+FMA build of the per-row MoE loops (see moe_rows.h); selected only when use_avx2().
#include "cpu/moe_rows.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/moe_math.h"
#include "core/moe_row_bodies.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "cpu/simd_math_avx2.h"
#endif

namespace calmoe::cpu::moe_rows {
#if defined(__AVX2__) && defined(__FMA__)
namespace avx2 {

// moe::softmax 8 lanes at a time: lane k holds columns j = k mod 8, so the exp sums follow
// Sum8's order and exp8 rounds as fm::exp_f32: the same bits as the scalar function.
inline void row_softmax(const float* v, int64_t n, float inv_t, float* out) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto mask = [&](int64_t j0) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n - j0)), lanes); };
  float m = v[0];
  for (int64_t j = 1; j < n; ++j) m = v[j] > m ? v[j] : m;
  const __m256 vm = _mm256_set1_ps(m), vt = _mm256_set1_ps(inv_t);
  __m256 s = _mm256_setzero_ps();
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const __m256i mk = mask(j0);
    const __m256 x = _mm256_maskload_ps(v + j0, mk);
    const __m256 e = _mm256_and_ps(calmoe::cpu::avx2::exp8(_mm256_mul_ps(_mm256_sub_ps(x, vm), vt)), _mm256_castsi256_ps(mk));
    _mm256_maskstore_ps(out + j0, mk, e);
    s = _mm256_add_ps(s, e);
  }
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
  const float inv = 1.0f / _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
  const __m256 vi = _mm256_set1_ps(inv);
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const __m256i mk = mask(j0);
    _mm256_maskstore_ps(out + j0, mk, _mm256_mul_ps(_mm256_maskload_ps(out + j0, mk), vi));
  }
}

// softmax of 8 rows of n <= 16 at once, in place: the rows' first 16 floats transposed so that
// lane r holds row r (columns past n, possibly the next row's, are loaded but never used or
// stored); max, exp and the Sum8-ordered sums are then vertical. The same bits as row_softmax.
inline void softmax8(float* rows, int64_t n, float inv_t, int64_t avail) {
  using calmoe::cpu::avx2::exp8;
  using calmoe::cpu::avx2::transpose8;
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i hi_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n - 8)), lanes);
  const __m256i lo_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), lanes);
  __m256 lo[8], hi[8];
  for (int r = 0; r < 8; ++r) {  // full loads while they stay within the `avail` floats, else masked
    float* row = rows + r * n;
    lo[r] = r * n + 8 <= avail ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, lo_mask);
    hi[r] = n <= 8 ? _mm256_setzero_ps() : r * n + 16 <= avail ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, hi_mask);
  }
  transpose8(lo);
  transpose8(hi);
  auto col = [&](int64_t j) -> __m256& { return j < 8 ? lo[j] : hi[j - 8]; };
  __m256 m = col(0);
  for (int64_t j = 1; j < n; ++j) m = _mm256_max_ps(col(j), m);  // max(v, m): v > m ? v : m
  const __m256 vt = _mm256_set1_ps(inv_t);
  __m256 part[8];
  for (int k = 0; k < 8; ++k) part[k] = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    col(j) = exp8(_mm256_mul_ps(_mm256_sub_ps(col(j), m), vt));
    part[j & 7] = _mm256_add_ps(part[j & 7], col(j));
  }
  const __m256 total = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(part[0], part[4]), _mm256_add_ps(part[2], part[6])),
                                     _mm256_add_ps(_mm256_add_ps(part[1], part[5]), _mm256_add_ps(part[3], part[7])));
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), total);
  for (int64_t j = 0; j < n; ++j) col(j) = _mm256_mul_ps(col(j), inv);
  transpose8(lo);
  transpose8(hi);
  for (int r = 0; r < 8; ++r) {
    float* row = rows + r * n;
    if (n >= 8) _mm256_storeu_ps(row, lo[r]);
    else _mm256_maskstore_ps(row, lo_mask, lo[r]);
    if (n > 8) _mm256_maskstore_ps(row + 8, hi_mask, hi[r]);
  }
}

inline void rows_softmax(float* rows, int64_t count, int64_t n, float inv_t) {
  int64_t r = 0;
  if (n <= 16) {
    for (; r + 8 <= count; r += 8) softmax8(rows + r * n, n, inv_t, (count - r) * n);  // never read past the run
  }
  for (; r < count; ++r) row_softmax(rows + r * n, n, inv_t, rows + r * n);
}

#include "cpu/moe_rows_impl.h"
const Table& table() { return impl::table(); }
}  // namespace avx2
#else
namespace avx2 {
const Table& table() { return baseline::table(); }  // non-x86 builds: never selected
}  // namespace avx2
#endif
}  // namespace calmoe::cpu::moe_rows
