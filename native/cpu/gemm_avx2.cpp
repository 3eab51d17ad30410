// AVX2+FMA pieces of the GEMM (compiled with -mavx2 -mfma; gemm.cpp calls them only after
// use_avx2()): the 6x16 micro-kernel (12 ymm accumulators, 2 vector loads of B and 6 broadcasts of
// A per k; A packed or read in place from 6 rows), packing (8x8 transposes, software prefetch of
// gathered rows), and the epilogue. Every step repeats gemm.cpp's scalar code lane by lane (the
// same fmas, in the same order), so both give the same bits.
#include "cpu/gemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/activation.h"
#include "core/fastmath.h"
#include "cpu/simd_math_avx2.h"

namespace calmoe::cpu::gemm_detail::avx2 {
namespace {

#define GEMM_INLINE [[gnu::always_inline]] inline

using calmoe::cpu::avx2::exp8;
using calmoe::cpu::avx2::transpose8;

GEMM_INLINE int64_t row_of(const GemmOperand& op, int64_t r) { return op.rows ? op.rows[r] : r; }

GEMM_INLINE __m256i tail_mask(int n) {  // lanes [0, n) set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
GEMM_INLINE __m256 load8(const float* p, bool full, __m256i mask) {
  return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
GEMM_INLINE void store8(float* p, __m256 v, bool full, __m256i mask) {
  if (full) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, mask, v);
}

// Packing that reads one storage row per k prefetches the row kAhead steps on: gathered rows
// (X[idx]) defeat the hardware prefetcher, and each is a cache miss to L3 or memory otherwise.
constexpr int64_t kAhead = 8;
GEMM_INLINE void prefetch_span(const float* p, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) _mm_prefetch(reinterpret_cast<const char*>(p + j), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
}

// Rows r0..r7 become columns: r[q] = (in0[q], in1[q], ..., in7[q]).
// core/activation.h, lane by lane (the same operations in the same order).
GEMM_INLINE __m256 relu8(__m256 x) { return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), x); }
GEMM_INLINE __m256 relu_grad8(__m256 x) {
  return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f));
}
GEMM_INLINE __m256 gelu_sigmoid8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(act::kGeluK1), x), x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(act::kGeluK0), _mm256_add_ps(x, x3));
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u))));
}
GEMM_INLINE __m256 gelu8(__m256 x) { return _mm256_mul_ps(x, gelu_sigmoid8(x)); }
GEMM_INLINE __m256 gelu_grad8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = gelu_sigmoid8(x);
  const __m256 a = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, s), _mm256_sub_ps(one, s)), _mm256_set1_ps(2.0f * act::kGeluK0));
  const __m256 b = _mm256_add_ps(one, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(3.0f * act::kGeluK1), x), x));
  return _mm256_add_ps(s, _mm256_mul_ps(a, b));
}

// gemm.cpp's epilogue_value for columns j..j+7 of row i (lanes past the mask are not touched).
GEMM_INLINE __m256 epilogue8(__m256 v, const TileOut& o, int i, int j, bool full, __m256i mask) {
  if (o.bias) v = _mm256_add_ps(v, load8(o.bias + j, full, mask));
  if (o.pre) store8(o.pre + i * o.ldpre + j, v, full, mask);
  if (o.act == Act::Relu) v = relu8(v);
  else if (o.act == Act::Gelu) v = gelu8(v);
  if (o.dact != Act::None) {
    const __m256 p = load8(o.dpre + i * o.lddpre + j, full, mask);
    v = _mm256_mul_ps(v, o.dact == Act::Relu ? relu_grad8(p) : gelu_grad8(p));
  }
  return v;
}

}  // namespace

void pack_a(const GemmOperand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* dst) {
  const int64_t full = m / kMR * kMR;  // rows in whole slivers
  if (a.trans) {  // storage row k holds the kMR values of every sliver: read it once
    for (int64_t k = 0; k < kc; ++k) {
      if (k + kAhead < kc) prefetch_span(a.p + row_of(a, k0 + k + kAhead) * a.ld + i0, m);
      const float* s = a.p + row_of(a, k0 + k) * a.ld + i0;
      float* d = dst + k * kMR;
      for (int64_t i = 0; i < full; i += kMR, d += a_sliver(kc)) {
        _mm_storeu_ps(d, _mm_loadu_ps(s + i));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(d + 4), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + i + 4)));  // 2 floats, unaligned
      }
      for (int r = 0; r < kMR && full < m; ++r) d[r] = full + r < m ? s[full + r] : 0.0f;
    }
    return;
  }
  if (full < m) pack_a_scalar(a, i0 + full, m - full, k0, kc, dst + full / kMR * a_sliver(kc));
  for (int64_t i = 0; i < full; i += kMR, dst += a_sliver(kc)) {  // 6 rows x 8 k through an 8x8 transpose
    const float* s[kMR];
    for (int r = 0; r < kMR; ++r) s[r] = a.p + row_of(a, i0 + i + r) * a.ld + k0;
    for (int64_t r = i + kMR; r < std::min(m, i + 2 * kMR); ++r) prefetch_span(a.p + row_of(a, i0 + r) * a.ld + k0, kc);
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r[8];
      for (int q = 0; q < kMR; ++q) r[q] = _mm256_loadu_ps(s[q] + k);
      r[6] = r[7] = _mm256_setzero_ps();
      transpose8(r);
      for (int q = 0; q < 8; ++q) {
        float* d = dst + (k + q) * kMR;
        _mm_storeu_ps(d, _mm256_castps256_ps128(r[q]));
        _mm_store_sd(reinterpret_cast<double*>(d + 4), _mm_castps_pd(_mm256_extractf128_ps(r[q], 1)));
      }
    }
    for (; k < kc; ++k)
      for (int q = 0; q < kMR; ++q) dst[k * kMR + q] = s[q][k];
  }
}

void pack_b(const GemmOperand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* dst) {
  if (!b.trans) {
    const int64_t full = n / kNR * kNR;
    const int tail = int(n - full);
    const __m256i m0 = tail_mask(tail), m1 = tail_mask(tail - 8);
    for (int64_t k = 0; k < kc; ++k) {  // storage row k holds 16 values of every sliver: read it once
      if (k + kAhead < kc) prefetch_span(b.p + row_of(b, k0 + k + kAhead) * b.ld + j0, n);
      const float* s = b.p + row_of(b, k0 + k) * b.ld + j0;
      float* d = dst + k * kNR;
      for (int64_t j = 0; j < full; j += kNR, d += b_sliver(kc)) {
        _mm256_store_ps(d, _mm256_loadu_ps(s + j));
        _mm256_store_ps(d + 8, _mm256_loadu_ps(s + j + 8));
      }
      if (tail) {
        _mm256_store_ps(d, _mm256_maskload_ps(s + full, m0));
        _mm256_store_ps(d + 8, _mm256_maskload_ps(s + full + 8, m1));
      }
    }
    return;
  }
  // transposed: column c of a sliver is storage row row(j0 + c); 8x8 blocks through registers
  for (int64_t j = 0; j < n; j += kNR, dst += b_sliver(kc)) {
    const float* s[kNR];
    for (int c = 0; c < kNR; ++c) s[c] = j + c < n ? b.p + row_of(b, j0 + j + c) * b.ld + k0 : nullptr;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
      for (int h = 0; h < 2; ++h) {
        __m256 r[8];
        for (int q = 0; q < 8; ++q) r[q] = s[8 * h + q] ? _mm256_loadu_ps(s[8 * h + q] + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (k + q) * kNR + 8 * h, r[q]);
      }
    for (; k < kc; ++k)
      for (int c = 0; c < kNR; ++c) dst[k * kNR + c] = s[c] ? s[c][k] : 0.0f;
  }
}

namespace {

// One 8-column vector of the write-back: v = alpha acc [+ beta C] (first k block) or
// C + alpha acc, then the epilogue after the last k block.
GEMM_INLINE void finish8(float* c, __m256 acc, const TileOut& o, int i, int j, bool full, __m256i mask) {
  __m256 v;
  if (o.first) {
    v = _mm256_mul_ps(_mm256_set1_ps(o.alpha), acc);
    if (o.beta != 0.0f) v = _mm256_fmadd_ps(_mm256_set1_ps(o.beta), load8(c, full, mask), v);
  } else {
    v = _mm256_fmadd_ps(_mm256_set1_ps(o.alpha), acc, load8(c, full, mask));
  }
  if (o.last) v = epilogue8(v, o, i, j, full, mask);
  store8(c, v, full, mask);
}

// The write-back of a partial tile (m < 6 or n < 16) from the accumulators in t.
[[gnu::noinline]] void write_back_partial(const float (&t)[kMR][kNR], const TileOut& o) {
  for (int i = 0; i < o.m; ++i)
    for (int j = 0; j < o.n; j += 8)
      finish8(o.c + i * o.ldc + j, _mm256_load_ps(t[i] + j), o, i, j, o.n - j >= 8, tail_mask(o.n - j));
}

// The register tile: A from a packed sliver (kPacked: a[k * 6 + r]) or straight from 6 storage
// rows (ar[r][k]); B from a packed sliver. One fma chain per element, k in order.
template <bool kPacked>
GEMM_INLINE void tile(int64_t kc, const float* a, const float* const* ar, const float* b, const TileOut& o) {
  // C's rows arrive while the k loop runs (from L3 for large outputs: a stall at the write-back)
  for (int i = 0; i < o.m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(o.c + i * o.ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(o.c + i * o.ldc + kNR - 1), _MM_HINT_T0);
  }
  const float *a0 = nullptr, *a1 = nullptr, *a2 = nullptr, *a3 = nullptr, *a4 = nullptr, *a5 = nullptr;
  if (!kPacked) a0 = ar[0], a1 = ar[1], a2 = ar[2], a3 = ar[3], a4 = ar[4], a5 = ar[5];
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < kc; ++k, b += kNR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 0 : a0 + k);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 1 : a1 + k);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 2 : a2 + k);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 3 : a3 + k);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 4 : a4 + k);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(kPacked ? a + k * kMR + 5 : a5 + k);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  if (o.m == kMR && o.n == kNR) {  // whole tile: straight from the registers
    const __m256i all = _mm256_set1_epi32(-1);
    finish8(o.c, c00, o, 0, 0, true, all), finish8(o.c + 8, c01, o, 0, 8, true, all);
    finish8(o.c + o.ldc, c10, o, 1, 0, true, all), finish8(o.c + o.ldc + 8, c11, o, 1, 8, true, all);
    finish8(o.c + 2 * o.ldc, c20, o, 2, 0, true, all), finish8(o.c + 2 * o.ldc + 8, c21, o, 2, 8, true, all);
    finish8(o.c + 3 * o.ldc, c30, o, 3, 0, true, all), finish8(o.c + 3 * o.ldc + 8, c31, o, 3, 8, true, all);
    finish8(o.c + 4 * o.ldc, c40, o, 4, 0, true, all), finish8(o.c + 4 * o.ldc + 8, c41, o, 4, 8, true, all);
    finish8(o.c + 5 * o.ldc, c50, o, 5, 0, true, all), finish8(o.c + 5 * o.ldc + 8, c51, o, 5, 8, true, all);
    return;
  }
  alignas(32) float t[kMR][kNR];
  _mm256_store_ps(t[0], c00), _mm256_store_ps(t[0] + 8, c01);
  _mm256_store_ps(t[1], c10), _mm256_store_ps(t[1] + 8, c11);
  _mm256_store_ps(t[2], c20), _mm256_store_ps(t[2] + 8, c21);
  _mm256_store_ps(t[3], c30), _mm256_store_ps(t[3] + 8, c31);
  _mm256_store_ps(t[4], c40), _mm256_store_ps(t[4] + 8, c41);
  _mm256_store_ps(t[5], c50), _mm256_store_ps(t[5] + 8, c51);
  write_back_partial(t, o);
}

}  // namespace

void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) { tile<true>(kc, a, nullptr, b, o); }

void kernel_rows(int64_t kc, const float* const* a_rows, const float* b, const TileOut& o) {
  tile<false>(kc, nullptr, a_rows, b, o);
}

void epilogue(const TileOut& o) {
  for (int i = 0; i < o.m; ++i) {
    float* c = o.c + i * o.ldc;
    for (int j = 0; j < o.n; j += 8) {
      const bool full = o.n - j >= 8;
      const __m256i mask = tail_mask(o.n - j);
      store8(c + j, epilogue8(load8(c + j, full, mask), o, i, j, full, mask), full, mask);
    }
  }
}

}  // namespace calmoe::cpu::gemm_detail::avx2

#else  // no AVX2 at compile time (non-x86 builds): never selected; the scalar code stands in

namespace calmoe::cpu::gemm_detail::avx2 {
void pack_a(const GemmOperand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* dst) { pack_a_scalar(a, i0, m, k0, kc, dst); }
void pack_b(const GemmOperand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* dst) { pack_b_scalar(b, k0, kc, j0, n, dst); }
void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) { kernel_scalar(kc, a, b, o); }
void kernel_rows(int64_t kc, const float* const* a_rows, const float* b, const TileOut& o) {
  float a[kKC * kMR];  // kc <= kKC
  for (int64_t k = 0; k < kc; ++k)
    for (int r = 0; r < kMR; ++r) a[k * kMR + r] = a_rows[r][k];
  kernel_scalar(kc, a, b, o);
}
void epilogue(const TileOut& o) { epilogue_scalar(o); }
}  // namespace calmoe::cpu::gemm_detail::avx2

#endif
