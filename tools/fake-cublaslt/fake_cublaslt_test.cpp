// Tests of the fake cuBLASLt (tools/fake-cublaslt): dlopens the library (argv[1], or
// $CALMOE_FAKE_CUBLASLT_PATH) and calls it with host pointers. Results against a naive loop in
// double over operands rounded by this file's own rounding (frexp/ldexp, not bit tricks), for every
// op combination, compute type, batch strides (0 included), epilogue, beta in place; exact bits
// where TF32 / BF16 rounding decides; every refusal rule with its status; the fault injections; the
// call log; the emulator's dry run; the exported symbols (read from the ELF file).
// Prints "N passed, N failed"; exits 1 on a failure.
#include <dlfcn.h>
#include <elf.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "cuda/cublaslt_api.h"

using namespace calmoe::lt;

namespace {

int g_passed = 0, g_failed = 0;
Api g;

#define EXPECT(cond)                                                              \
  do {                                                                            \
    if (cond) ++g_passed;                                                         \
    else {                                                                        \
      ++g_failed;                                                                 \
      std::fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
    }                                                                             \
  } while (0)
#define EXPECT_STATUS(got, want)                                                                                  \
  do {                                                                                                            \
    const Status g_ = (got), w_ = (want);                                                                         \
    if (g_ == w_) ++g_passed;                                                                                     \
    else {                                                                                                        \
      ++g_failed;                                                                                                 \
      std::fprintf(stderr, "  FAIL %s:%d: %s: status %d, want %d\n", __FILE__, __LINE__, #got, int(g_), int(w_)); \
    }                                                                                                             \
  } while (0)

// Buffers 256-byte aligned (as cudaMalloc's), filled with NaN so that a read of what was never
// written shows.
struct Buf {
  float* p = nullptr;
  std::size_t n = 0;
  explicit Buf(std::size_t count) : n(count) {
    p = static_cast<float*>(std::aligned_alloc(256, ((count * 4 + 255) / 256 + 1) * 256));
    for (std::size_t i = 0; i < count; ++i) p[i] = std::nanf("");
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

// Independent references of the roundings: mantissa kept to `bits` bits after the leading one.
double round_away(double x, int bits) {  // ties away from zero (cvt.rna)
  if (x == 0 || !std::isfinite(x)) return x;
  int e;
  const double f = std::frexp(x, &e);
  return std::ldexp(std::round(std::ldexp(f, bits + 1)), e - bits - 1);
}
double round_even(double x, int bits) {  // ties to even
  if (x == 0 || !std::isfinite(x)) return x;
  int e;
  const double f = std::frexp(x, &e);
  return std::ldexp(std::nearbyint(std::ldexp(f, bits + 1)), e - bits - 1);
}
double ref_round(float x, int32_t compute) {
  if (compute == kCompute32FFastTF32) return round_away(x, 10);
  if (compute == kCompute32FFast16BF) return round_even(x, 7);
  return x;
}

struct Mat {
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
  std::size_t elems() const { return std::size_t((batch - 1) * stride + int64_t(cols) * ld); }
};

// One GEMM as calmoe would describe it; fields left at their defaults are not set.
struct Call {
  int32_t compute = kCompute32FFastTF32, scale = kR32F;
  int32_t transa = kOpN, transb = kOpN;
  uint32_t epilogue = kEpilogueDefault;
  const float* bias = nullptr;
  int64_t bias_stride = -1;  // -1: not set
  Mat a{1, 1, 1}, b{1, 1, 1}, c{1, 1, 1}, d{1, 1, 1};
  float alpha = 1, beta = 0;
  const float *A = nullptr, *B = nullptr, *C = nullptr;
  float* D = nullptr;
  uint32_t align[4] = {0, 0, 0, 0};  // 0: preference default
  uint64_t max_ws = 0;
  bool set_max_ws = false;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  bool null_algo = false;
  // results
  Status heuristic = -1, matmul = -1;
  int returned = -1;
  HeuristicResult result{};
};

Handle g_handle = nullptr;

MatrixLayout make_layout(const Mat& m) {
  MatrixLayout l = nullptr;
  if (g.MatrixLayoutCreate(&l, kR32F, m.rows, m.cols, m.ld) != kSuccess) return nullptr;
  if (m.batch != 1) g.MatrixLayoutSetAttribute(l, kLayoutBatchCount, &m.batch, sizeof m.batch);
  if (m.stride != 0) g.MatrixLayoutSetAttribute(l, kLayoutStridedBatchOffset, &m.stride, sizeof m.stride);
  return l;
}

// Runs the heuristic, then (if it found an algorithm, or null_algo) the matmul.
void run(Call& c, const std::function<void(MatmulDesc, MatrixLayout[4], Preference)>& tweak = nullptr) {
  MatmulDesc desc = nullptr;
  g.MatmulDescCreate(&desc, c.compute, c.scale);
  g.MatmulDescSetAttribute(desc, kDescTransA, &c.transa, 4);
  g.MatmulDescSetAttribute(desc, kDescTransB, &c.transb, 4);
  if (c.epilogue != kEpilogueDefault) g.MatmulDescSetAttribute(desc, kDescEpilogue, &c.epilogue, 4);
  if (c.bias) g.MatmulDescSetAttribute(desc, kDescBiasPointer, &c.bias, sizeof c.bias);
  if (c.bias_stride >= 0) g.MatmulDescSetAttribute(desc, kDescBiasBatchStride, &c.bias_stride, 8);
  MatrixLayout ls[4] = {make_layout(c.a), make_layout(c.b), make_layout(c.c), make_layout(c.d)};
  Preference pref = nullptr;
  g.MatmulPreferenceCreate(&pref);
  if (c.set_max_ws) g.MatmulPreferenceSetAttribute(pref, kPrefMaxWorkspaceBytes, &c.max_ws, 8);
  for (int i = 0; i < 4; ++i)
    if (c.align[i]) g.MatmulPreferenceSetAttribute(pref, kPrefMinAlignmentA + i, &c.align[i], 4);
  if (tweak) tweak(desc, ls, pref);
  c.returned = 0;
  c.heuristic = g.MatmulAlgoGetHeuristic(g_handle, desc, ls[0], ls[1], ls[2], ls[3], pref, 1, &c.result, &c.returned);
  if ((c.heuristic == kSuccess && c.returned == 1) || c.null_algo)
    c.matmul = g.Matmul(g_handle, desc, &c.alpha, c.A, ls[0], c.B, ls[1], &c.beta, c.C, ls[2], c.D, ls[3], c.null_algo ? nullptr : &c.result.algo,
                        c.ws, c.ws_bytes, nullptr);
  g.MatmulPreferenceDestroy(pref);
  for (MatrixLayout l : ls) g.MatrixLayoutDestroy(l);
  g.MatmulDescDestroy(desc);
}

// Fills the elements a layout covers (not the padding: that stays NaN) with seeded values.
void fill(float* p, const Mat& m, uint32_t seed) {
  for (int32_t b = 0; b < m.batch; ++b)
    for (uint64_t j = 0; j < m.cols; ++j)
      for (uint64_t i = 0; i < m.rows; ++i) {
        seed = seed * 1664525u + 1013904223u;
        p[b * m.stride + int64_t(j) * m.ld + int64_t(i)] = float(int32_t(seed >> 8) % 2001 - 1000) / 997.0f;
      }
}

// The naive reference of c (already run) into ref (D's layout), from the inputs as they were
// (C's values taken from c_before when in place).
bool matches_reference(const Call& c, const float* c_values, double rtol, std::string* why) {
  const uint64_t m = c.d.rows, n = c.d.cols, k = c.transa == kOpN ? c.a.cols : c.a.rows;
  for (int32_t b = 0; b < c.d.batch; ++b)
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t i = 0; i < m; ++i) {
        double acc = 0, mag = 0;
        for (uint64_t q = 0; q < k; ++q) {
          const float av = c.transa == kOpN ? c.A[b * c.a.stride + int64_t(i) + int64_t(q) * c.a.ld] : c.A[b * c.a.stride + int64_t(q) + int64_t(i) * c.a.ld];
          const float bv = c.transb == kOpN ? c.B[b * c.b.stride + int64_t(q) + int64_t(j) * c.b.ld] : c.B[b * c.b.stride + int64_t(j) + int64_t(q) * c.b.ld];
          const double pr = ref_round(av, c.compute) * ref_round(bv, c.compute);
          acc += pr;
          mag += std::fabs(pr);
        }
        double v = double(c.alpha) * acc;
        mag *= std::fabs(c.alpha);
        if (c.beta != 0) {
          const double cv = c_values[b * c.c.stride + int64_t(i) + int64_t(j) * c.c.ld];
          v += double(c.beta) * cv;
          mag += std::fabs(double(c.beta) * cv);
        }
        if (c.bias) {
          const double bv = c.bias[b * (c.bias_stride < 0 ? 0 : c.bias_stride) + int64_t(i)];
          v += bv;
          mag += std::fabs(bv);
        }
        if (c.epilogue == kEpilogueRelu || c.epilogue == kEpilogueReluBias) v = v > 0 ? v : 0;
        const double got = c.D[b * c.d.stride + int64_t(i) + int64_t(j) * c.d.ld];
        if (!(std::fabs(got - v) <= 1e-30 + rtol * mag)) {
          char buf[200];
          std::snprintf(buf, sizeof buf, "batch %d D(%llu,%llu) = %.9g, reference %.9g", b, (unsigned long long)i, (unsigned long long)j, got, v);
          *why = buf;
          return false;
        }
      }
  return true;
}

// A problem m x n x k with ld padding and a batch, for the ops (transa, transb).
struct Problem {
  Call c;
  Buf A, B, C, D;
  static Mat stored(uint64_t r, uint64_t cl, int32_t batch, int64_t pad, bool shared) {
    Mat m{r, cl, int64_t(r) + pad, batch, 0};
    m.stride = shared ? 0 : m.ld * int64_t(cl) + pad * 3;
    return m;
  }
  Problem(uint64_t m, uint64_t n, uint64_t k, int32_t ta, int32_t tb, int32_t batch, bool shared_b, int32_t compute, int64_t pad = 3)
      : c(make(m, n, k, ta, tb, batch, shared_b, compute, pad)), A(c.a.elems()), B(c.b.elems()), C(c.c.elems()), D(c.d.elems()) {
    fill(A.p, c.a, 1 + uint32_t(m));
    fill(B.p, c.b, 7 + uint32_t(n));
    fill(C.p, c.c, 11 + uint32_t(k));
    c.A = A.p;
    c.B = B.p;
    c.C = C.p;
    c.D = D.p;
  }
  static Call make(uint64_t m, uint64_t n, uint64_t k, int32_t ta, int32_t tb, int32_t batch, bool shared_b, int32_t compute, int64_t pad) {
    Call c;
    c.compute = compute;
    c.transa = ta;
    c.transb = tb;
    c.a = ta == kOpN ? stored(m, k, batch, pad, false) : stored(k, m, batch, pad, false);
    c.b = tb == kOpN ? stored(k, n, batch, pad, shared_b) : stored(n, k, batch, pad, shared_b);
    c.c = stored(m, n, batch, pad, false);
    c.d = stored(m, n, batch, pad + 1, false);
    return c;
  }
};

void test_ops_and_computes() {
  for (int32_t compute : {kCompute32F, kCompute32FFastTF32, kCompute32FFast16BF})
    for (int32_t ta : {kOpN, kOpT})
      for (int32_t tb : {kOpN, kOpT})
        for (int shape = 0; shape < 3; ++shape) {
          const uint64_t m = shape == 0 ? 5 : shape == 1 ? 13 : 1, n = shape == 0 ? 7 : shape == 1 ? 9 : 6, k = shape == 0 ? 3 : shape == 1 ? 33 : 1;
          const int32_t batch = shape == 1 ? 3 : 1;
          Problem p(m, n, k, ta, tb, batch, /*shared_b=*/shape == 1 && ta == kOpT, compute);
          p.c.alpha = shape == 2 ? -0.5f : 1.0f;
          run(p.c);
          EXPECT_STATUS(p.c.heuristic, kSuccess);
          EXPECT_STATUS(p.c.matmul, kSuccess);
          std::string why;
          const bool ok = matches_reference(p.c, p.C.p, 1e-6, &why);
          if (!ok) std::fprintf(stderr, "  compute %d trans %d%d shape %d: %s\n", compute, ta, tb, shape, why.c_str());
          EXPECT(ok);
          // D's padding (between columns and batches) is untouched
          bool pad_kept = true;
          for (int32_t b = 0; b < p.c.d.batch; ++b)
            for (uint64_t j = 0; j < n; ++j)
              for (int64_t i = int64_t(m); i < p.c.d.ld; ++i) pad_kept &= std::isnan(p.D.p[b * p.c.d.stride + int64_t(j) * p.c.d.ld + i]);
          EXPECT(pad_kept);
        }
}

void test_shared_operand_stride0() {
  // A shared by every batch (stride 0), B and D per batch: each D_b = A B_b.
  Problem p(4, 3, 5, kOpN, kOpN, 4, false, kCompute32F);
  p.c.a.stride = 0;
  run(p.c);
  EXPECT_STATUS(p.c.matmul, kSuccess);
  std::string why;
  EXPECT(matches_reference(p.c, p.C.p, 1e-6, &why));
  // batch 2's D equals a separate call with batch 2's B
  Problem q(4, 3, 5, kOpN, kOpN, 1, false, kCompute32F);
  std::memcpy(q.A.p, p.A.p, sizeof(float) * q.c.a.elems());
  for (uint64_t j = 0; j < 3; ++j)
    for (uint64_t i = 0; i < 5; ++i) q.B.p[j * q.c.b.ld + i] = p.B.p[2 * p.c.b.stride + int64_t(j) * p.c.b.ld + int64_t(i)];
  run(q.c);
  bool same = true;
  for (uint64_t j = 0; j < 3; ++j)
    for (uint64_t i = 0; i < 4; ++i) same &= q.D.p[j * q.c.d.ld + i] == p.D.p[2 * p.c.d.stride + int64_t(j) * p.c.d.ld + int64_t(i)];
  EXPECT(same);
}

void test_epilogues() {
  for (uint32_t epi : {kEpilogueDefault, kEpilogueRelu, kEpilogueBias, kEpilogueReluBias})
    for (int64_t bias_stride : {int64_t(-1), int64_t(0), int64_t(9)}) {
      const bool bias = epi == kEpilogueBias || epi == kEpilogueReluBias;
      if (!bias && bias_stride >= 0) continue;
      Problem p(6, 5, 7, kOpT, kOpN, 2, false, kCompute32FFastTF32);
      Buf bias_buf(32);
      for (int i = 0; i < 32; ++i) bias_buf.p[i] = float(i % 5) - 2.0f + 0.25f * float(i);
      p.c.epilogue = epi;
      if (bias) p.c.bias = bias_buf.p;
      p.c.bias_stride = bias_stride;
      run(p.c);
      EXPECT_STATUS(p.c.matmul, kSuccess);
      std::string why;
      const bool ok = matches_reference(p.c, p.C.p, 1e-6, &why);
      if (!ok) std::fprintf(stderr, "  epilogue %u bias stride %lld: %s\n", epi, (long long)bias_stride, why.c_str());
      EXPECT(ok);
      if (epi == kEpilogueRelu || epi == kEpilogueReluBias) {  // some were clamped, none negative
        int zeros = 0;
        bool neg = false;
        for (int32_t b = 0; b < 2; ++b)
          for (uint64_t j = 0; j < 5; ++j)
            for (uint64_t i = 0; i < 6; ++i) {
              const float v = p.D.p[b * p.c.d.stride + int64_t(j) * p.c.d.ld + int64_t(i)];
              zeros += v == 0.0f;
              neg |= v < 0.0f;
            }
        EXPECT(zeros > 0 && !neg);
      }
    }
}

void test_beta_in_place() {
  Problem p(7, 4, 9, kOpN, kOpT, 2, false, kCompute32FFastTF32);
  p.c.d = p.c.c;  // D is C (same layout)
  Buf c_before(p.c.c.elems());
  std::memcpy(c_before.p, p.C.p, sizeof(float) * p.c.c.elems());
  p.c.D = p.C.p;
  p.c.alpha = 2.0f;
  p.c.beta = 0.5f;
  run(p.c);
  EXPECT_STATUS(p.c.matmul, kSuccess);
  std::string why;
  const bool ok = matches_reference(p.c, c_before.p, 1e-6, &why);
  if (!ok) std::fprintf(stderr, "  in place: %s\n", why.c_str());
  EXPECT(ok);
  // beta = 0: C (all NaN) is not read
  Problem q(3, 3, 3, kOpN, kOpN, 1, false, kCompute32F);
  for (std::size_t i = 0; i < q.C.n; ++i) q.C.p[i] = std::nanf("");
  run(q.c);
  bool finite = true;
  for (uint64_t j = 0; j < 3; ++j)
    for (uint64_t i = 0; i < 3; ++i) finite &= std::isfinite(q.D.p[j * q.c.d.ld + i]);
  EXPECT(finite);
}

// One element: D = a * b (k = 1), or a sum over k of given products, exact.
float one(int32_t compute, const std::vector<float>& a, const std::vector<float>& b, int32_t ta = kOpN) {
  const uint64_t k = a.size();
  Buf A(k), B(k), C(1), D(1);
  std::memcpy(A.p, a.data(), 4 * k);
  std::memcpy(B.p, b.data(), 4 * k);
  Call c;
  c.compute = compute;
  c.transa = ta;
  c.a = ta == kOpN ? Mat{1, k, 1} : Mat{k, 1, int64_t(k)};
  c.b = Mat{k, 1, int64_t(k)};
  c.c = c.d = Mat{1, 1, 1};
  c.A = A.p;
  c.B = B.p;
  c.C = C.p;
  c.D = D.p;
  run(c);
  EXPECT_STATUS(c.matmul, kSuccess);
  return D.p[0];
}

void test_rounding() {
  const float e11 = std::ldexp(1.0f, -11), e10 = std::ldexp(1.0f, -10), e8 = std::ldexp(1.0f, -8), e7 = std::ldexp(1.0f, -7),
              e6 = std::ldexp(1.0f, -6);
  // TF32 (cvt.rna): a tie goes away from zero; 32F keeps every bit; BF16 drops it.
  EXPECT(one(kCompute32FFastTF32, {1 + e11}, {1}) == 1 + e10);
  EXPECT(one(kCompute32FFastTF32, {1}, {-(1 + e11)}) == -(1 + e10));
  EXPECT(one(kCompute32FFastTF32, {1 + e11 / 2}, {1}) == 1.0f);  // below the tie
  EXPECT(one(kCompute32F, {1 + e11}, {1}) == 1 + e11);
  EXPECT(one(kCompute32FFast16BF, {1 + e11}, {1}) == 1.0f);
  // BF16 ties go to even: 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6; above a tie rounds up
  EXPECT(one(kCompute32FFast16BF, {1 + e8}, {1}) == 1.0f);
  EXPECT(one(kCompute32FFast16BF, {1 + 3 * e8}, {1}) == 1 + e6);
  EXPECT(one(kCompute32FFast16BF, {1}, {1 + e8 + e11}) == 1 + e7);
  EXPECT(one(kCompute32FFastTF32, {1 + e8 + e11}, {1}) == 1 + e8 + e10);
  // both operands are rounded: (1 + 2^-11)^2 in TF32 is (1 + 2^-10)^2 exactly
  EXPECT(one(kCompute32FFastTF32, {1 + e11}, {1 + e11}) == (1 + e10) * (1 + e10));
  // FP32 accumulation in increasing k: 1 + 2^-24 + 2^-24 stays 1 (each add rounds), -1 then cancels
  const float e24 = std::ldexp(1.0f, -24);
  EXPECT(one(kCompute32F, {1, e24, e24}, {1, 1, 1}) == 1.0f);
  EXPECT(one(kCompute32F, {e24, e24, 1}, {1, 1, 1}) == 1 + 2 * e24);
  // the same through op(A) = T
  EXPECT(one(kCompute32FFastTF32, {1 + e11, 2}, {1, 1}, kOpT) == 3 + e10);
}

// ---- refusals ---------------------------------------------------------------------------------------
void test_attribute_refusals() {
  MatmulDesc d = nullptr;
  EXPECT_STATUS(g.MatmulDescCreate(&d, kCompute32FFastTF32, kR32F), kSuccess);
  const int32_t t = kOpT;
  const int64_t t64 = kOpT;
  const uint32_t epi_gelu = 32, epi_bad = 3;
  const void* ptr = nullptr;
  const int32_t ptr32 = 0;
  const int64_t neg = -1;
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescTransA, &t, 4), kSuccess);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescTransA, &t64, 8), kInvalidValue);  // wrong size
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescTransB, &t, 2), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescTransA, nullptr, 4), kInvalidValue);
  const int32_t five = 5;
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescTransA, &five, 4), kInvalidValue);  // not an operation
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescEpilogue, &t64, 8), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescEpilogue, &epi_gelu, 4), kNotSupported);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescEpilogue, &epi_bad, 4), kNotSupported);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescBiasPointer, &ptr, sizeof ptr), kSuccess);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescBiasPointer, &ptr32, 4), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescBiasBatchStride, &ptr32, 4), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescBiasBatchStride, &neg, 8), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, kDescComputeType, &t64, 8), kInvalidValue);
  EXPECT_STATUS(g.MatmulDescSetAttribute(d, 2 /* POINTER_MODE: not modelled */, &t, 4), kNotSupported);
  EXPECT_STATUS(g.MatmulDescDestroy(d), kSuccess);

  MatrixLayout l = nullptr;
  EXPECT_STATUS(g.MatrixLayoutCreate(&l, kR32F, 4, 4, 4), kSuccess);
  const uint64_t rows = 8;
  const int32_t rows32 = 8, row_order = 1, zero = 0;
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutRows, &rows, 8), kSuccess);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutRows, &rows32, 4), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutLd, &rows32, 4), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutBatchCount, &rows, 8), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutBatchCount, &zero, 4), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutStridedBatchOffset, &rows32, 4), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutStridedBatchOffset, &neg, 8), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutOrder, &row_order, 4), kNotSupported);
  EXPECT_STATUS(g.MatrixLayoutSetAttribute(l, kLayoutType, &rows, 8), kInvalidValue);
  EXPECT_STATUS(g.MatrixLayoutDestroy(l), kSuccess);

  Preference p = nullptr;
  EXPECT_STATUS(g.MatmulPreferenceCreate(&p), kSuccess);
  const uint64_t ws = 1 << 20;
  const uint32_t a16 = 16, a12 = 12;
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, kPrefMaxWorkspaceBytes, &ws, 8), kSuccess);
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, kPrefMaxWorkspaceBytes, &a16, 4), kInvalidValue);
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, kPrefMinAlignmentA, &ws, 8), kInvalidValue);
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, kPrefMinAlignmentD, &a16, 4), kSuccess);
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, kPrefMinAlignmentB, &a12, 4), kInvalidValue);
  EXPECT_STATUS(g.MatmulPreferenceSetAttribute(p, 9 /* MAX_WAVES_COUNT: not modelled */, &a16, 4), kNotSupported);
  EXPECT_STATUS(g.MatmulPreferenceDestroy(p), kSuccess);
}

void test_problem_refusals() {
  auto base = [] { return Problem(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32, 0); };
  {  // ld < rows
    Problem p = base();
    p.c.a.ld = 3;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // op(A) rows != D rows (transa says T but A is stored m x k)
    Problem p = base();
    p.c.transa = kOpT;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // inner dimensions differ
    Problem p = base();
    p.c.b.rows = 4;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // op(B) columns != D columns
    Problem p = base();
    p.c.b.cols = 2;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // C not m x n
    Problem p = base();
    p.c.c.cols = 2;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // batch counts differ
    Problem p(4, 3, 5, kOpN, kOpN, 2, false, kCompute32FFastTF32, 0);
    p.c.b.batch = 1;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // D's batches overlap
    Problem p(4, 3, 5, kOpN, kOpN, 2, false, kCompute32FFastTF32, 0);
    p.c.d.stride = 4;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // a bias batch stride that is neither 0 (shared) nor at least m: the batches' biases overlap
    Problem p(4, 3, 5, kOpN, kOpN, 2, false, kCompute32FFastTF32, 0);
    Buf bias(16);
    p.c.epilogue = kEpilogueBias;
    p.c.bias = bias.p;
    p.c.bias_stride = 3;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // an empty matrix
    Problem p = base();
    p.c.d.cols = 0;
    p.c.c.cols = 0;
    p.c.b.cols = 0;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  {  // layout type other than R_32F
    Problem p = base();
    run(p.c, [](MatmulDesc, MatrixLayout ls[4], Preference) {
      const uint32_t r16f = 2;
      g.MatrixLayoutSetAttribute(ls[1], kLayoutType, &r16f, 4);
    });
    EXPECT_STATUS(p.c.heuristic, kNotSupported);
  }
  {  // compute type not modelled, scale type not R_32F
    Problem p = base();
    p.c.compute = 64;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kNotSupported);
    Problem q = base();
    q.c.scale = 2;
    run(q.c);
    EXPECT_STATUS(q.c.heuristic, kNotSupported);
  }
  {  // requested 0, NULL results, NULL preference, NULL or destroyed handle
    Problem p = base();
    run(p.c, [](MatmulDesc d, MatrixLayout ls[4], Preference pref) {
      HeuristicResult r{};
      int n = -1;
      EXPECT_STATUS(g.MatmulAlgoGetHeuristic(g_handle, d, ls[0], ls[1], ls[2], ls[3], pref, 0, &r, &n), kInvalidValue);
      EXPECT(n == 0);
      EXPECT_STATUS(g.MatmulAlgoGetHeuristic(g_handle, d, ls[0], ls[1], ls[2], ls[3], pref, 1, nullptr, &n), kInvalidValue);
      EXPECT_STATUS(g.MatmulAlgoGetHeuristic(g_handle, d, ls[0], ls[1], ls[2], ls[3], nullptr, 1, &r, &n), kInvalidValue);
      EXPECT_STATUS(g.MatmulAlgoGetHeuristic(nullptr, d, ls[0], ls[1], ls[2], ls[3], pref, 1, &r, &n), kNotInitialized);
      EXPECT_STATUS(g.MatmulAlgoGetHeuristic(g_handle, d, nullptr, ls[1], ls[2], ls[3], pref, 1, &r, &n), kInvalidValue);
    });
    EXPECT_STATUS(p.c.heuristic, kSuccess);
  }
}

void test_call_refusals() {
  auto base = [] { return Problem(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32, 0); };
  {  // bias epilogue without a bias, a bias without a bias epilogue
    Problem p = base();
    p.c.epilogue = kEpilogueReluBias;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kSuccess);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
    Problem q = base();
    Buf bias(4);
    q.c.bias = bias.p;
    run(q.c);
    EXPECT_STATUS(q.c.matmul, kInvalidValue);
  }
  {  // alignment: the default promise is 256 bytes; 16 must be said
    Problem p = base();
    Buf big(64 + p.c.a.elems());
    fill(big.p + 4, p.c.a, 3);
    p.c.A = big.p + 4;  // 16-byte aligned only
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
    p.c.align[0] = 16;
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kSuccess);
    p.c.A = big.p + 1;  // 4-byte aligned: more than promised
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
    Problem q = base();
    q.c.D = q.D.p + 2;  // D 8-byte aligned under the default 256
    q.c.align[0] = q.c.align[1] = q.c.align[2] = 4;
    run(q.c);
    EXPECT_STATUS(q.c.matmul, kInvalidValue);
    q.c.align[3] = 8;
    run(q.c);
    EXPECT_STATUS(q.c.matmul, kSuccess);
  }
  {  // workspace: the algo needs some when k is large and the preference allows it
    Problem p(8, 8, 300, kOpT, kOpN, 1, false, kCompute32FFastTF32, 0);
    run(p.c);  // no workspace allowed (the documented default): none needed
    EXPECT(p.c.result.workspaceSize == 0);
    EXPECT_STATUS(p.c.matmul, kSuccess);
    p.c.set_max_ws = true;
    p.c.max_ws = 1 << 20;
    std::vector<unsigned char> ws(1 << 20);
    p.c.ws = ws.data();
    p.c.ws_bytes = 1024;  // less than the algo's need
    run(p.c);
    EXPECT(p.c.result.workspaceSize > 0 && p.c.result.workspaceSize <= p.c.max_ws);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
    p.c.ws_bytes = p.c.result.workspaceSize;
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kSuccess);
    p.c.ws = nullptr;
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
    p.c.max_ws = p.c.result.workspaceSize - 1;  // the preference's max rules the need out
    p.c.ws_bytes = 0;
    run(p.c);
    EXPECT(p.c.result.workspaceSize == 0);
    EXPECT_STATUS(p.c.matmul, kSuccess);
  }
  {  // an algo from another problem; an algo never returned by the heuristic; no algo (implicit)
    Problem p = base();
    Problem other(4, 3, 6, kOpN, kOpN, 1, false, kCompute32FFastTF32, 0);
    run(other.c);
    run(p.c, [&](MatmulDesc d, MatrixLayout ls[4], Preference) {
      EXPECT_STATUS(g.Matmul(g_handle, d, &p.c.alpha, p.c.A, ls[0], p.c.B, ls[1], &p.c.beta, p.c.C, ls[2], p.c.D, ls[3], &other.c.result.algo,
                             nullptr, 0, nullptr),
                    kInvalidValue);
      MatmulAlgo junk{};
      EXPECT_STATUS(g.Matmul(g_handle, d, &p.c.alpha, p.c.A, ls[0], p.c.B, ls[1], &p.c.beta, p.c.C, ls[2], p.c.D, ls[3], &junk, nullptr, 0, nullptr),
                    kInvalidValue);
      EXPECT_STATUS(g.Matmul(g_handle, d, nullptr, p.c.A, ls[0], p.c.B, ls[1], &p.c.beta, p.c.C, ls[2], p.c.D, ls[3], nullptr, nullptr, 0, nullptr),
                    kInvalidValue);
      EXPECT_STATUS(g.Matmul(g_handle, d, &p.c.alpha, nullptr, ls[0], p.c.B, ls[1], &p.c.beta, p.c.C, ls[2], p.c.D, ls[3], nullptr, nullptr, 0, nullptr),
                    kInvalidValue);
    });
    Problem q = base();
    q.c.null_algo = true;
    run(q.c);
    EXPECT_STATUS(q.c.matmul, kSuccess);
    std::string why;
    EXPECT(matches_reference(q.c, q.C.p, 1e-6, &why));
  }
  {  // in place with another layout for D
    Problem p(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32, 0);
    Buf c2(64);
    p.c.c = Mat{4, 3, 8};
    p.c.C = c2.p;
    p.c.D = c2.p;
    p.c.beta = 1;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kSuccess);
    EXPECT_STATUS(p.c.matmul, kInvalidValue);
  }
  {  // destroyed handle
    Handle h = nullptr;
    EXPECT_STATUS(g.Create(&h), kSuccess);
    EXPECT_STATUS(g.Destroy(h), kSuccess);
    EXPECT_STATUS(g.Create(nullptr), kInvalidValue);
  }
}

// ---- fault injection and the call log ---------------------------------------------------------------------
void test_faults_and_log() {
  unsetenv("CALMOE_FAKE_CUBLASLT");
  EXPECT(g.GetVersion() == 130100);
  setenv("CALMOE_FAKE_CUBLASLT", "version=120900", 1);
  EXPECT(g.GetVersion() == 120900);
  setenv("CALMOE_FAKE_CUBLASLT", "noalgo", 1);
  {
    Problem p(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32);
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kNotSupported);
    EXPECT(p.c.returned == 0);
    p.c.null_algo = true;
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kNotSupported);
  }
  setenv("CALMOE_FAKE_CUBLASLT", "unsupported", 1);
  {
    Problem p(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32);
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kSuccess);
    EXPECT_STATUS(p.c.matmul, kNotSupported);
  }
  setenv("CALMOE_FAKE_CUBLASLT", "wrong,version=130000", 1);
  {
    EXPECT(g.GetVersion() == 130000);
    Problem p(4, 3, 5, kOpN, kOpN, 2, false, kCompute32F);
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kSuccess);
    std::string why;
    EXPECT(!matches_reference(p.c, p.C.p, 1e-6, &why));
    unsetenv("CALMOE_FAKE_CUBLASLT");
    Problem q(4, 3, 5, kOpN, kOpN, 2, false, kCompute32F);
    run(q.c);
    for (int32_t b = 0; b < 2; ++b) {  // exactly the first element of each batch's D is off by one
      EXPECT(p.D.p[b * p.c.d.stride] == q.D.p[b * q.c.d.stride] + 1.0f);
      EXPECT(p.D.p[b * p.c.d.stride + 1] == q.D.p[b * q.c.d.stride + 1]);
    }
  }
  unsetenv("CALMOE_FAKE_CUBLASLT");
  setenv("EMU_DRY_RUN", "1", 1);  // the emulator's dry run: checked, not computed
  {
    Problem p(4, 3, 5, kOpN, kOpN, 1, false, kCompute32FFastTF32);
    run(p.c);
    EXPECT_STATUS(p.c.matmul, kSuccess);
    EXPECT(std::isnan(p.D.p[0]) && std::isnan(p.D.p[p.c.d.ld * 2 + 3]));
    p.c.a.ld = 2;
    run(p.c);
    EXPECT_STATUS(p.c.heuristic, kInvalidValue);
  }
  unsetenv("EMU_DRY_RUN");
  char path[] = "/tmp/fake_cublaslt_log_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT(fd >= 0);
  if (fd >= 0) close(fd);
  setenv("CALMOE_FAKE_CUBLASLT_LOG", path, 1);
  {
    Problem p(6, 5, 7, kOpT, kOpN, 3, false, kCompute32FFastTF32);
    Buf bias(6);
    for (int i = 0; i < 6; ++i) bias.p[i] = float(i);
    p.c.epilogue = kEpilogueReluBias;
    p.c.bias = bias.p;
    run(p.c);
    Problem q(2, 2, 2, kOpN, kOpT, 1, false, kCompute32FFast16BF);
    run(q.c);
    Problem refused(2, 2, 2, kOpN, kOpN, 1, false, kCompute32F);
    refused.c.epilogue = kEpilogueBias;  // no bias pointer: refused, not logged
    run(refused.c);
  }
  unsetenv("CALMOE_FAKE_CUBLASLT_LOG");
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::remove(path);
  EXPECT(lines.size() == 2);
  if (lines.size() == 2) {
    EXPECT(lines[0] == "matmul m=6 n=5 k=7 transa=T transb=N batch=3 epilogue=RELU_BIAS compute=32F_FAST_TF32");
    EXPECT(lines[1] == "matmul m=2 n=2 k=2 transa=N transb=T batch=1 epilogue=DEFAULT compute=32F_FAST_16BF");
    for (auto& l : lines) std::fprintf(stderr, "  log: %s\n", l.c_str());
  }
}

// ---- the exported symbols, from the file's .dynsym ------------------------------------------------------------
std::set<std::string> exported(const char* file) {
  std::set<std::string> out;
  std::ifstream f(file, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < sizeof(Elf64_Ehdr)) return out;
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(bytes.data());
  if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) return out;
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(bytes.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_DYNSYM) continue;
    const char* strtab = bytes.data() + sh[sh[i].sh_link].sh_offset;
    const auto* sym = reinterpret_cast<const Elf64_Sym*>(bytes.data() + sh[i].sh_offset);
    for (std::size_t s = 0; s < sh[i].sh_size / sizeof(Elf64_Sym); ++s)
      if (sym[s].st_shndx != SHN_UNDEF && ELF64_ST_BIND(sym[s].st_info) != STB_LOCAL && sym[s].st_name) out.insert(strtab + sym[s].st_name);
  }
  return out;
}

void test_exports(const char* file) {
  std::set<std::string> want = {kFakeMarker};
#define WANT_NAME(member, name) want.insert(#name);
  CALMOE_LT_ENTRY_POINTS(WANT_NAME)
#undef WANT_NAME
  const std::set<std::string> got = exported(file);
  for (const auto& s : got)
    if (!want.count(s)) std::fprintf(stderr, "  exported but not an entry point: %s\n", s.c_str());
  for (const auto& s : want)
    if (!got.count(s)) std::fprintf(stderr, "  not exported: %s\n", s.c_str());
  EXPECT(got == want);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress survives a crash
  const char* path = argc > 1 ? argv[1] : std::getenv("CALMOE_FAKE_CUBLASLT_PATH");
  if (!path) {
    std::fprintf(stderr, "usage: fake_cublaslt_test /path/to/fake/libcublasLt.so.13 (or CALMOE_FAKE_CUBLASLT_PATH)\n");
    return 2;
  }
  for (const char* v : {"CALMOE_FAKE_CUBLASLT", "CALMOE_FAKE_CUBLASLT_LOG", "EMU_DRY_RUN", "EMU_LAUNCH_LOG"}) unsetenv(v);
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    return 1;
  }
  EXPECT(dlsym(h, kFakeMarker) != nullptr);
  bool resolved = true;
#define RESOLVE(member, name)                                       \
  g.member = reinterpret_cast<decltype(g.member)>(dlsym(h, #name)); \
  if (!g.member) {                                                  \
    std::fprintf(stderr, "no symbol %s\n", #name);                  \
    resolved = false;                                               \
  }
  CALMOE_LT_ENTRY_POINTS(RESOLVE)
#undef RESOLVE
  if (!resolved) return 1;
  if (g.Create(&g_handle) != kSuccess) return 1;
  std::fprintf(stderr, "(the refusal tests below make the fake print one 'fake-cublaslt: ...' line each)\n");
  const struct {
    const char* name;
    void (*fn)();
  } tests[] = {{"ops_and_computes", test_ops_and_computes}, {"shared_operand_stride0", test_shared_operand_stride0},
               {"epilogues", test_epilogues},             {"beta_in_place", test_beta_in_place},
               {"rounding", test_rounding},               {"attribute_refusals", test_attribute_refusals},
               {"problem_refusals", test_problem_refusals}, {"call_refusals", test_call_refusals},
               {"faults_and_log", test_faults_and_log}};
  for (const auto& t : tests) {
    const int before = g_failed;
    t.fn();
    std::printf("%s fake_cublaslt.%s\n", g_failed == before ? "ok  " : "FAIL", t.name);
  }
  {
    const int before = g_failed;
    test_exports(path);
    std::printf("%s fake_cublaslt.exports\n", g_failed == before ? "ok  " : "FAIL");
  }
  g.Destroy(g_handle);
  dlclose(h);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
