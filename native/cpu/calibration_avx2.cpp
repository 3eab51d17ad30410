// AVX2 top-label kernel. Each row is read with contiguous 8-float loads (gathers are slow on
// some x86 cores); its sums follow Sum8's lane order, so results are bit-identical to the scalar
// row_probs / row_logits. Rows go in blocks of 8 so that the per-row tail (bins, fixed point,
// log, exp) runs 8 lanes at a time. A block with any invalid row is left to the scalar path,
// which reports the exact first issue.
#include "cpu/calibration_avx2.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/simd_math_avx2.h"

namespace calmoe::cpu::avx2 {
namespace {

using namespace calib;

// Everything on the per-row path is forced inline: GCC otherwise keeps some of it out of line.
#define CALMOE_INLINE [[gnu::always_inline]] inline

// The sum of an 8-lane register in Sum8's order: ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)).
CALMOE_INLINE float hsum8(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // s0+s4, s1+s5, s2+s6, s3+s7
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));                                  // (s0+s4)+(s2+s6), (s1+s5)+(s3+s7)
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

CALMOE_INLINE __m256 hmax8(__m256 v) {  // the max, broadcast to every lane
  __m256 m = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4e));
  return _mm256_max_ps(m, _mm256_permute_ps(m, 0xb1));
}

CALMOE_INLINE __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

CALMOE_INLINE __m256i tail_mask(int64_t n) {  // lanes [0, n) set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Lanes j0..j0+7 of a row: a full load, or a masked load past the end (masked lanes read 0).
CALMOE_INLINE __m256 load_chunk(const float* row, int64_t j0, int64_t C) {
  return j0 + 8 <= C ? _mm256_loadu_ps(row + j0) : _mm256_maskload_ps(row + j0, tail_mask(C - j0));
}

// First column holding `m` (the row max, broadcast).
CALMOE_INLINE int64_t first_index_of(const float* row, int64_t C, __m256 m) {
  for (int64_t j0 = 0; j0 < C; j0 += 8) {
    int bits = _mm256_movemask_ps(_mm256_cmp_ps(load_chunk(row, j0, C), m, _CMP_EQ_OQ));
    if (j0 + 8 > C) bits &= (1 << (C - j0)) - 1;
    if (bits) return j0 + __builtin_ctz(unsigned(bits));
  }
  return 0;
}

// Lanes of chunk j0 that hold column y, as an all-ones mask (zero when y is elsewhere).
CALMOE_INLINE __m256 is_label(int64_t j0, int32_t y) {
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_add_epi32(_mm256_set1_epi32(int32_t(j0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), _mm256_set1_epi32(y)));
}

struct RowStats {
  float conf, other, s;  // s: softmax denominator (logits)
  float zmax;
  int32_t arg;
  bool valid;
};

// row_probs' statistics for one row (validity, max, first argmax, canonical sums). With a
// compile-time column count kC <= 32 the chunks stay in registers and the argmax is branch-free.
template <bool kExtras, int kC>
CALMOE_INLINE RowStats probs_row(const float* row, int64_t Crt, int32_t y, float tol) {
  constexpr int kChunks = (kC > 0 && kC <= 32) ? (kC + 7) / 8 : 0;
  const int64_t C = kC ? kC : Crt;
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  __m256 vmax = zero, sum = zero, other = zero, bad = zero;
  auto visit = [&](__m256 v, int64_t j0) {  // masked lanes read 0: valid, neutral for max and sums
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(v, zero, _CMP_NGE_UQ), _mm256_cmp_ps(v, one, _CMP_NLE_UQ)));
    vmax = _mm256_max_ps(vmax, v);
    sum = _mm256_add_ps(sum, v);
    if (kExtras) {
      const __m256 w = _mm256_andnot_ps(is_label(j0, y), v);  // fma(0, 0, acc) == acc: skips j == y
      other = _mm256_fmadd_ps(w, w, other);
    }
  };
  RowStats r;
  if constexpr (kChunks > 0) {
    __m256 v[kChunks];
#pragma GCC unroll 4
    for (int t = 0; t < kChunks; ++t) {
      v[t] = load_chunk(row, 8 * t, kC);
      visit(v[t], 8 * t);
    }
    const __m256 m = hmax8(vmax);
    uint32_t bits = 0;
#pragma GCC unroll 4
    for (int t = 0; t < kChunks; ++t) bits |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v[t], m, _CMP_EQ_OQ))) << (8 * t);
    bits &= kC >= 32 ? 0xffffffffu : ((1u << kC) - 1u);
    r.conf = _mm256_cvtss_f32(m);
    r.arg = bits ? int32_t(__builtin_ctz(bits)) : 0;
  } else {
    for (int64_t j0 = 0; j0 < C; j0 += 8) visit(load_chunk(row, j0, C), j0);
    const __m256 m = hmax8(vmax);
    r.conf = _mm256_cvtss_f32(m);
    r.arg = _mm256_movemask_ps(bad) == 0 ? int32_t(first_index_of(row, C, m)) : 0;
  }
  const float total = hsum8(sum);
  r.valid = (_mm256_movemask_ps(bad) == 0) & (std::fabs(total - 1.0f) <= tol) & (y >= 0) & (y < C);
  r.other = kExtras ? hsum8(other) : 0.0f;
  r.s = 0;
  r.zmax = 0;
  return r;
}

// row_logits' statistics for one row.
template <bool kExtras, int kC>
CALMOE_INLINE RowStats logits_row(const float* row, int64_t Crt, int32_t y) {
  constexpr int kChunks = (kC > 0 && kC <= 32) ? (kC + 7) / 8 : 0;
  const int64_t C = kC ? kC : Crt;
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  const __m256i expmask = _mm256_set1_epi32(0x7f800000);
  // lanes past C read -inf: exp(-inf - max) = 0 and they never win the max
  auto load = [&](int64_t j0) {
    const __m256 v = load_chunk(row, j0, C);
    return j0 + 8 <= C ? v : _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(tail_mask(C - j0)));
  };
  auto nonfinite = [&](__m256 v, int64_t j0) {
    __m256i nf = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), expmask), expmask);
    return j0 + 8 <= C ? nf : _mm256_and_si256(nf, tail_mask(C - j0));
  };
  RowStats r;
  __m256 vmax = ninf;
  __m256i bad = _mm256_setzero_si256();
  __m256 s = _mm256_setzero_ps(), other = _mm256_setzero_ps();
  auto accumulate = [&](__m256 v, int64_t j0, __m256 m) {
    const __m256 e = exp8(_mm256_sub_ps(v, m));
    s = _mm256_add_ps(s, e);
    if (kExtras) {
      const __m256 w = _mm256_andnot_ps(is_label(j0, y), e);
      other = _mm256_fmadd_ps(w, w, other);
    }
  };
  if constexpr (kChunks > 0) {
    __m256 v[kChunks];
#pragma GCC unroll 4
    for (int t = 0; t < kChunks; ++t) {
      v[t] = load(8 * t);
      bad = _mm256_or_si256(bad, nonfinite(v[t], 8 * t));
      vmax = _mm256_max_ps(vmax, v[t]);
    }
    r.valid = _mm256_testz_si256(bad, bad) & (y >= 0) & (y < C);
    if (!r.valid) return r;
    const __m256 m = hmax8(vmax);
    uint32_t bits = 0;
#pragma GCC unroll 4
    for (int t = 0; t < kChunks; ++t) {
      bits |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v[t], m, _CMP_EQ_OQ))) << (8 * t);
      accumulate(v[t], 8 * t, m);
    }
    r.zmax = _mm256_cvtss_f32(m);
    r.arg = int32_t(__builtin_ctz(bits));
  } else {
    for (int64_t j0 = 0; j0 < C; j0 += 8) {
      const __m256 v = load(j0);
      bad = _mm256_or_si256(bad, nonfinite(v, j0));
      vmax = _mm256_max_ps(vmax, v);
    }
    r.valid = _mm256_testz_si256(bad, bad) & (y >= 0) & (y < C);
    if (!r.valid) return r;
    const __m256 m = hmax8(vmax);
    r.zmax = _mm256_cvtss_f32(m);
    r.arg = int32_t(first_index_of(row, C, m));
    for (int64_t j0 = 0; j0 < C; j0 += 8) accumulate(load(j0), j0, m);
  }
  r.s = hsum8(s);
  r.other = kExtras ? hsum8(other) : 0.0f;
  r.conf = 0;
  return r;
}

// Bin of 8 confidences: c*M formed exactly in double (two halves of 4 lanes), ceil/floor, clamp.
CALMOE_INLINE __m256i bins8(__m256 conf, int M, bool left_closed) {
  const __m256d m = _mm256_set1_pd(double(M));
  __m256d lo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(conf)), m);
  __m256d hi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(conf, 1)), m);
  if (left_closed) {
    lo = _mm256_round_pd(lo, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    hi = _mm256_round_pd(hi, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  } else {
    lo = _mm256_round_pd(lo, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
    hi = _mm256_round_pd(hi, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  }
  __m256i b = _mm256_set_m128i(_mm256_cvtpd_epi32(hi), _mm256_cvtpd_epi32(lo));
  if (!left_closed) b = _mm256_sub_epi32(b, _mm256_set1_epi32(1));
  b = _mm256_max_epi32(b, _mm256_setzero_si256());
  return _mm256_min_epi32(b, _mm256_set1_epi32(M - 1));
}

// 4 x u128 lane accumulators (lo, hi) for the totals.
struct Acc4 {
  __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
  CALMOE_INLINE void add(__m256i v) {
    lo = _mm256_add_epi64(lo, v);
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    const __m256i carry = _mm256_cmpgt_epi64(_mm256_xor_si256(v, sign), _mm256_xor_si256(lo, sign));  // lo < v unsigned
    hi = _mm256_sub_epi64(hi, carry);
  }
  CALMOE_INLINE void add8(__m256 v, int frac) {
    add(to_fixed4(_mm256_castps256_ps128(v), frac));
    add(to_fixed4(_mm256_extractf128_ps(v, 1), frac));
  }
  void flush(uint64_t& wlo, uint64_t& whi) const {
    alignas(32) uint64_t l[4], h[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(h), hi);
    for (int k = 0; k < 4; ++k) u128_add(wlo, whi, l[k], h[k]);
  }
};

// Histogram cells for one worker's run: kReplicas copies (rows go round-robin) so consecutive
// rows falling in the same bin do not wait on each other's read-modify-write. Folded into the
// state's 128-bit words at the end.
class Hist {
 public:
  static constexpr int kReplicas = 4;
  static constexpr int64_t kMaxReplicatedCells = 256;
  explicit Hist(int64_t cells)
      : cells_(cells), reps_(cells <= kMaxReplicatedCells ? kReplicas : 1), rep_mask_(reps_ - 1), w_(std::size_t(cells * reps_ * 3), 0) {}
  // word 0: count << 32 | positives (a run has fewer than 2^32 rows); words 1, 2: the low and
  // high 32-bit halves of the fixed-point confidences, summed separately (no carry chain).
  CALMOE_INLINE void add(int replica, int32_t cell, bool positive, uint64_t fixed_conf) {
    uint64_t* b = w_.data() + (int64_t(replica & rep_mask_) * cells_ + cell) * 3;  // reps_ is a power of two
    b[0] += (uint64_t(1) << 32) | uint64_t(positive);
    b[1] += fixed_conf & 0xffffffffu;
    b[2] += fixed_conf >> 32;
  }
  void fold_into(uint64_t* state) const {
    for (int r = 0; r < reps_; ++r) {
      for (int64_t c = 0; c < cells_; ++c) {
        const uint64_t* b = w_.data() + (int64_t(r) * cells_ + c) * 3;
        uint64_t* out = state + kHeaderWords + c * kBinWords;
        out[0] += b[0] >> 32;
        out[1] += b[0] & 0xffffffffu;
        u128_add(out[2], out[3], b[1]);                    // + lo
        u128_add(out[2], out[3], b[2] << 32, b[2] >> 32);  // + hi * 2^32
      }
    }
  }

 private:
  int64_t cells_;
  int reps_, rep_mask_;
  std::vector<uint64_t> w_;
};

// Probabilities with at most 16 columns: rows go in blocks of 8 with the rows in the lanes.
// Each row's 16 floats from its start (two 8-float loads; past the row they read the next row,
// or nothing at the matrix's end) are transposed 8 rows at a time, giving column j of the block
// as one vector. Max, first argmax, the range check and the row sums (in Sum8's association:
// lane k = the columns j = k mod 8, in increasing j) are then vertical: the same bits as the
// scalar row_probs, a few instructions per row.
template <bool kExtras, int kC>
int64_t run_probs_columns(const KernelArgs& a, int64_t begin, int64_t end, uint64_t* w) {
  static_assert(kC > 0 && kC <= 16, "two 8x8 transposes");
  constexpr int64_t C = kC;
  const int M = a.bins;
  const int64_t total_floats = a.rows * C;
  Hist hist(int64_t(a.groups) * M);
  Acc4 nll, brier;
  uint64_t rows = 0, correct = 0;
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  alignas(32) int32_t cell[8];
  alignas(32) uint64_t fx[8];
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const float* base = a.scores + i * C;
    __m256 lo[8], hi[8];
    for (int k = 0; k < 8; ++k) {
      const float* row = base + k * C;
      const int64_t at = (i + k) * C;
      lo[k] = at + 8 <= total_floats ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, tail_mask(total_floats - at));
      if (C > 8) hi[k] = at + 16 <= total_floats ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, tail_mask(total_floats - at - 8));
    }
    transpose8(lo);  // lo[j]: column j of the 8 rows
    if (C > 8) transpose8(hi);
    auto col = [&](int j) { return j < 8 ? lo[j] : hi[j - 8]; };
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.labels + i));
    __m256 best = col(0), mn = col(0);
    __m256i arg = _mm256_setzero_si256();
    __m256 part[8];  // Sum8's lane partials, 8 rows wide
    __m256 oth[8];
    __m256 py = zero;
#pragma GCC unroll 16
    for (int j = 0; j < kC; ++j) {
      const __m256 v = col(j);
      const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);  // strict: the first max wins
      best = _mm256_blendv_ps(best, v, gt);
      arg = _mm256_blendv_epi8(arg, _mm256_set1_epi32(j), _mm256_castps_si256(gt));
      mn = _mm256_min_ps(mn, v);
      part[j & 7] = j < 8 ? _mm256_add_ps(zero, v) : _mm256_add_ps(part[j & 7], v);
      if (kExtras) {
        const __m256 is_y = _mm256_castsi256_ps(_mm256_cmpeq_epi32(y, _mm256_set1_epi32(j)));
        const __m256 wv = _mm256_andnot_ps(is_y, v);  // fma(0, 0, acc) == acc: skips j == y
        oth[j & 7] = _mm256_fmadd_ps(wv, wv, j < 8 ? zero : oth[j & 7]);
        py = _mm256_blendv_ps(py, v, is_y);
      }
    }
#pragma GCC unroll 8
    for (int k = kC; k < 8; ++k) {
      part[k] = zero;
      if (kExtras) oth[k] = zero;
    }
    const __m256 total = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(part[0], part[4]), _mm256_add_ps(part[2], part[6])),
                                       _mm256_add_ps(_mm256_add_ps(part[1], part[5]), _mm256_add_ps(part[3], part[7])));
    // validity: every p in [0, 1] (min >= 0, max <= 1; NaN or Inf make the sum fail), |sum - 1|
    // <= tol, label in [0, C), group in range. Any failure: the scalar path names the row.
    const __m256 range_ok = _mm256_and_ps(_mm256_cmp_ps(mn, zero, _CMP_GE_OQ), _mm256_cmp_ps(best, one, _CMP_LE_OQ));
    const __m256 sum_ok = _mm256_and_ps(range_ok, _mm256_cmp_ps(abs8(_mm256_sub_ps(total, one)), _mm256_set1_ps(a.sum_tol), _CMP_LE_OQ));
    const __m256i label_ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), y), _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(C)), y));
    __m256i ok = _mm256_and_si256(_mm256_castps_si256(sum_ok), label_ok);
    __m256i g = _mm256_setzero_si256();
    if (a.group_ids) {
      g = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.group_ids + i));
      ok = _mm256_and_si256(ok, _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), g), _mm256_cmpgt_epi32(_mm256_set1_epi32(a.groups), g)));
    }
    if (_mm256_movemask_ps(_mm256_castsi256_ps(ok)) != 0xff) break;
    if (kExtras) {
      const __m256 other = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(oth[0], oth[4]), _mm256_add_ps(oth[2], oth[6])),
                                         _mm256_add_ps(_mm256_add_ps(oth[1], oth[5]), _mm256_add_ps(oth[3], oth[7])));
      const __m256 q = _mm256_sub_ps(one, py);
      brier.add8(_mm256_fmadd_ps(q, q, other), kBrierFracBits);
      nll.add8(_mm256_sub_ps(_mm256_setzero_ps(), log8(_mm256_max_ps(py, _mm256_set1_ps(kMinProb)))), kNllFracBits);
    }
    const unsigned hits = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(arg, y))));
    __m256i b = bins8(best, M, a.left_closed);
    if (a.group_ids) b = _mm256_add_epi32(b, _mm256_mullo_epi32(g, _mm256_set1_epi32(M)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(cell), b);
    // a valid row's max is >= (1 - tol) / C, normally far above 2^-40, where the shift-only
    // conversion is exact; a generous sumTolerance can allow smaller ones: the general path then
    if (_mm256_movemask_ps(_mm256_cmp_ps(best, _mm256_set1_ps(0x1p-30f), _CMP_GE_OQ)) == 0xff) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(fx), to_fixed4_large(_mm256_castps256_ps128(best), kConfFracBits));
      _mm256_store_si256(reinterpret_cast<__m256i*>(fx + 4), to_fixed4_large(_mm256_extractf128_ps(best, 1), kConfFracBits));
    } else {
      _mm256_store_si256(reinterpret_cast<__m256i*>(fx), to_fixed4(_mm256_castps256_ps128(best), kConfFracBits));
      _mm256_store_si256(reinterpret_cast<__m256i*>(fx + 4), to_fixed4(_mm256_extractf128_ps(best, 1), kConfFracBits));
    }
    if (a.out_conf) _mm256_storeu_ps(a.out_conf + i, best);
    for (int k = 0; k < 8; ++k) {
      const bool hit_k = (hits >> k) & 1u;
      hist.add(k, cell[k], hit_k, fx[k]);
      if (a.out_conf) a.out_positive[i + k] = uint8_t(hit_k);
    }
    rows += 8;
    correct += uint64_t(__builtin_popcount(hits));
  }
  hist.fold_into(w);
  w[kWRows] += rows;
  w[kWCorrect] += correct;
  if (kExtras) {
    nll.flush(w[kWNllLo], w[kWNllHi]);
    brier.flush(w[kWBrierLo], w[kWBrierHi]);
  }
  return -2 - i;
}

template <bool kExtras, bool kLogits, int kC>
int64_t run(const KernelArgs& a, int64_t begin, int64_t end, uint64_t* w) {
  const int64_t C = kC ? kC : a.cols;
  const int M = a.bins;
  Hist hist(int64_t(a.groups) * M);
  Acc4 nll, brier;
  uint64_t rows = 0, correct = 0;
  alignas(32) float conf[8], other[8], s[8], zy[8], py[8];
  alignas(32) int32_t arg[8], cell[8];
  alignas(32) uint64_t fx[8];
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    bool ok = true;
    for (int k = 0; k < 8; ++k) {
      const float* row = a.scores + (i + k) * C;
      const int32_t y = a.labels[i + k];
      const RowStats r = kLogits ? logits_row<kExtras, kC>(row, C, y) : probs_row<kExtras, kC>(row, C, y, a.sum_tol);
      ok &= r.valid;
      conf[k] = r.conf;
      other[k] = r.other;
      s[k] = r.s;
      arg[k] = r.arg;
      if (kExtras) {
        const int32_t yc = r.valid ? y : 0;  // only valid rows are used
        if (kLogits) zy[k] = row[yc] - r.zmax;
        else py[k] = row[yc];
      }
    }
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.labels + i));
    __m256i group_ok = _mm256_set1_epi32(-1), g = _mm256_setzero_si256();
    if (a.group_ids) {
      g = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.group_ids + i));
      group_ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), g), _mm256_cmpgt_epi32(_mm256_set1_epi32(a.groups), g));
    }
    if (!ok || _mm256_movemask_ps(_mm256_castsi256_ps(group_ok)) != 0xff) break;  // scalar finds the bad row
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 c;
    if (kLogits) {
      const __m256 sv = _mm256_load_ps(s);
      c = _mm256_div_ps(one, sv);
      if (kExtras) {
        const __m256 z = _mm256_load_ps(zy);
        const __m256 p = _mm256_div_ps(exp8(z), sv);
        const __m256 q = _mm256_sub_ps(one, p);
        brier.add8(_mm256_fmadd_ps(q, q, _mm256_div_ps(_mm256_load_ps(other), _mm256_mul_ps(sv, sv))), kBrierFracBits);
        nll.add8(_mm256_min_ps(_mm256_sub_ps(log8(sv), z), _mm256_set1_ps(kMaxNll)), kNllFracBits);
      }
    } else {
      c = _mm256_load_ps(conf);
      if (kExtras) {
        const __m256 p = _mm256_load_ps(py);
        const __m256 q = _mm256_sub_ps(one, p);
        brier.add8(_mm256_fmadd_ps(q, q, _mm256_load_ps(other)), kBrierFracBits);
        nll.add8(_mm256_sub_ps(_mm256_setzero_ps(), log8(_mm256_max_ps(p, _mm256_set1_ps(kMinProb)))), kNllFracBits);
      }
    }
    __m256i b = bins8(c, M, a.left_closed);
    if (a.group_ids) b = _mm256_add_epi32(b, _mm256_mullo_epi32(g, _mm256_set1_epi32(M)));
    const __m256i hit = _mm256_cmpeq_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(arg)), y);
    _mm256_store_si256(reinterpret_cast<__m256i*>(cell), b);
    _mm256_store_si256(reinterpret_cast<__m256i*>(arg), hit);
    _mm256_store_si256(reinterpret_cast<__m256i*>(fx), to_fixed4(_mm256_castps256_ps128(c), kConfFracBits));
    _mm256_store_si256(reinterpret_cast<__m256i*>(fx + 4), to_fixed4(_mm256_extractf128_ps(c, 1), kConfFracBits));
    if (a.out_conf) _mm256_storeu_ps(a.out_conf + i, c);
    for (int k = 0; k < 8; ++k) {
      hist.add(k, cell[k], arg[k] != 0, fx[k]);
      if (a.out_conf) a.out_positive[i + k] = uint8_t(arg[k] & 1);
    }
    rows += 8;
    correct += uint64_t(__builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(hit)))));
  }
  hist.fold_into(w);
  w[kWRows] += rows;
  w[kWCorrect] += correct;
  if (kExtras) {
    nll.flush(w[kWNllLo], w[kWNllHi]);
    brier.flush(w[kWBrierLo], w[kWBrierHi]);
  }
  return -2 - i;  // rows [i, end) are left for the scalar path
}

}  // namespace

namespace {
// Column counts up to 16 get their own instantiation (loops and tail masks resolved at compile
// time); wider rows use the run-time loop.
template <bool kExtras, bool kLogits, int kC = 1>
int64_t run_cols(const KernelArgs& a, int64_t begin, int64_t end, uint64_t* w) {
  if constexpr (kC <= 16) {
    if (a.cols == kC) {
      if constexpr (!kLogits) return run_probs_columns<kExtras, kC>(a, begin, end, w);
      return run<kExtras, kLogits, kC>(a, begin, end, w);
    }
    return run_cols<kExtras, kLogits, kC + 1>(a, begin, end, w);
  } else {
    return run<kExtras, kLogits, 0>(a, begin, end, w);
  }
}
}  // namespace

bool calib_supported(const KernelArgs& a) { return a.kind == CalibKind::TopLabel && a.cols >= 1; }

int64_t calib_accumulate(const KernelArgs& a, int64_t begin, int64_t end, uint64_t* w) {
  const bool logits = a.score_kind == ScoreKind::Logits;
  if (a.extras) return logits ? run_cols<true, true>(a, begin, end, w) : run_cols<true, false>(a, begin, end, w);
  return logits ? run_cols<false, true>(a, begin, end, w) : run_cols<false, false>(a, begin, end, w);
}

}  // namespace calmoe::cpu::avx2

#else  // no AVX2 at compile time (non-x86 builds): never selected

namespace calmoe::cpu::avx2 {
bool calib_supported(const calib::KernelArgs&) { return false; }
int64_t calib_accumulate(const calib::KernelArgs&, int64_t begin, int64_t, uint64_t*) { return -2 - begin; }
}  // namespace calmoe::cpu::avx2

#endif
