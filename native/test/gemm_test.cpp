// GEMM (native/cpu/gemm.h) against a naive reference in double: every transpose and gather (with
// repeated and shuffled indices), odd sizes, alpha/beta, each epilogue, padded leading dimensions;
// the same bits for any thread count, for a batch as for single calls, and for the scalar and
// AVX2 kernels; the BLAS path against the reference and the builtin path when it is built.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "host/thread_pool.h"
#include "test_util.h"

// Every operator new in this executable is counted: the GEMM must not allocate in steady state.
static std::atomic<long> g_allocs{0};
void* operator new(std::size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t al) {
  ++g_allocs;
  void* p = nullptr;
  if (posix_memalign(&p, std::max(std::size_t(al), sizeof(void*)), n ? n : 1) != 0) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using calmoe::cpu::Act;
using calmoe::cpu::GemmArgs;
using calmoe::cpu::GemmOperand;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// One operand's storage: `srows` storage rows of `len` floats each, ld >= len (padding is NaN, so
// reading it shows), and the gather list when gathered.
struct Operand {
  std::vector<float> data;
  std::vector<int32_t> rows;
  GemmOperand op;
};

// `logical` is the count of storage rows the operand indexes (M or K for A; K or N for B,
// depending on trans); `len` the length of each storage row used.
Operand make_operand(t::Rng& r, int64_t logical, int64_t len, bool trans, bool gather) {
  Operand o;
  const int64_t srows = gather ? logical / 2 + 3 : logical;  // fewer storage rows: indices repeat
  const int64_t ld = len + r.below(4);
  o.data.assign(std::size_t(std::max<int64_t>(1, srows * ld)), kNaN);
  for (int64_t s = 0; s < srows; ++s)
    for (int64_t c = 0; c < len; ++c) o.data[s * ld + c] = float(r.uniform() * 2 - 1);
  if (gather) {
    o.rows.resize(std::size_t(logical));
    for (auto& v : o.rows) v = r.below(srows);
  }
  o.op.p = o.data.data();
  o.op.ld = ld;
  o.op.trans = trans;
  o.op.rows = gather ? o.rows.data() : nullptr;
  return o;
}

double at(const GemmOperand& op, int64_t i, int64_t j) {  // logical element (i, j)
  const int64_t r = op.trans ? j : i, c = op.trans ? i : j;
  return double(op.p[(op.rows ? op.rows[r] : r) * op.ld + c]);
}

const double kPi = 3.14159265358979323846;

double gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / kPi) * (x + 0.044715 * x * x * x))); }
double dgelu_ref(double x) {
  const double k = std::sqrt(2 / kPi), t = std::tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
}

enum class Epi { None, BiasRelu, BiasGelu, DRelu, DGelu, Bias };
const Epi kEpis[] = {Epi::None, Epi::BiasRelu, Epi::BiasGelu, Epi::DRelu, Epi::DGelu, Epi::Bias};

// A full problem: operands, C (with padding), epilogue inputs and outputs.
struct Problem {
  int64_t M, N, K;
  Operand a, b;
  std::vector<float> c0, bias, pre, dpre;
  int64_t ldc, ldpre, lddpre;
  GemmArgs g;
  std::vector<float> c;

  void reset() {  // C and pre back to their initial contents, g pointing at them
    c = c0;
    std::fill(pre.begin(), pre.end(), kNaN);
    g.c = c.data();
    if (g.pre) g.pre = pre.data();
  }
};

Problem make_problem(uint64_t seed, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool ga, bool gb, Epi epi,
                     float alpha, float beta) {
  t::Rng r(seed);
  Problem p;
  p.M = M, p.N = N, p.K = K;
  p.a = make_operand(r, ta ? K : M, ta ? M : K, ta, ga);
  p.b = make_operand(r, tb ? N : K, tb ? K : N, tb, gb);
  p.ldc = N + r.below(3);
  p.ldpre = N + r.below(3);
  p.lddpre = N + r.below(3);
  p.c0.assign(std::size_t(std::max<int64_t>(1, M * p.ldc)), kNaN);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) p.c0[i * p.ldc + j] = beta == 0 ? kNaN : float(r.uniform() * 2 - 1);  // NaN: must not be read
  p.bias.resize(std::size_t(N) + 1);
  for (auto& v : p.bias) v = float(r.uniform() - 0.5);
  p.pre.assign(std::size_t(std::max<int64_t>(1, M * p.ldpre)), kNaN);
  p.dpre.assign(std::size_t(std::max<int64_t>(1, M * p.lddpre)), kNaN);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) p.dpre[i * p.lddpre + j] = r.normal(1.5f);
  GemmArgs& g = p.g;
  g.M = M, g.N = N, g.K = K;
  g.a = p.a.op, g.b = p.b.op;
  g.ldc = p.ldc;
  g.alpha = alpha, g.beta = beta;
  if (epi == Epi::BiasRelu || epi == Epi::BiasGelu || epi == Epi::Bias) g.bias = p.bias.data();
  if (epi == Epi::BiasRelu || epi == Epi::BiasGelu) {
    g.act = epi == Epi::BiasRelu ? Act::Relu : Act::Gelu;
    g.pre = p.pre.data();
    g.ldpre = p.ldpre;
  }
  if (epi == Epi::DRelu || epi == Epi::DGelu) {
    g.dact = epi == Epi::DRelu ? Act::Relu : Act::Gelu;
    g.dact_pre = p.dpre.data();
    g.ld_dact = p.lddpre;
  }
  p.reset();
  return p;
}

// Checks p's C (and pre) against the reference; padding of C and pre must be untouched.
bool check_reference(const Problem& p, const char* what) {
  const GemmArgs& g = p.g;
  const int64_t M = p.M, N = p.N, K = p.K;
  std::vector<double> A(std::size_t(M * K)), B(std::size_t(K * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) A[i * K + k] = at(g.a, i, k);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) B[k * N + j] = at(g.b, k, j);
  std::vector<double> sum(static_cast<std::size_t>(N)), mag(static_cast<std::size_t>(N));
  int bad = 0;
  for (int64_t i = 0; i < M; ++i) {
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(mag.begin(), mag.end(), 0.0);
    if (g.alpha != 0)
      for (int64_t k = 0; k < K; ++k) {
        const double a = A[i * K + k];
        for (int64_t j = 0; j < N; ++j) {
          sum[j] += a * B[k * N + j];
          mag[j] += std::fabs(a * B[k * N + j]);
        }
      }
    for (int64_t j = 0; j < N; ++j) {
      const double c0 = g.beta != 0 ? double(p.c0[i * p.ldc + j]) : 0.0;
      double v = double(g.alpha) * sum[j] + double(g.beta) * c0;
      double m = std::fabs(double(g.alpha)) * mag[j] + std::fabs(double(g.beta) * c0);
      if (g.bias) v += double(g.bias[j]), m += std::fabs(double(g.bias[j]));
      // float32 sums of K products: about sqrt(K) roundings of the running magnitude
      const double atol = 1e-6 * std::sqrt(double(K) + 1) * (m + 1e-3), rtol = 1e-5;
      if (g.pre && !t::close(p.pre[i * p.ldpre + j], v, atol, rtol) && bad++ < 5)
        std::fprintf(stderr, "  %s: pre(%lld, %lld) = %.9g, want %.9g\n", what, (long long)i, (long long)j, p.pre[i * p.ldpre + j], v);
      if (g.act == Act::Relu) v = v > 0 ? v : 0;
      if (g.act == Act::Gelu) v = gelu_ref(v);
      if (g.dact != Act::None) {
        const double pre = double(g.dact_pre[i * g.ld_dact + j]);
        v *= g.dact == Act::Relu ? (pre > 0 ? 1.0 : 0.0) : dgelu_ref(pre);
      }
      const double got = p.c[i * p.ldc + j];
      if (!t::close(got, v, 1.2 * atol, rtol) && bad++ < 5)
        std::fprintf(stderr, "  %s: C(%lld, %lld) = %.9g, want %.9g (atol %.3g)\n", what, (long long)i, (long long)j, got, v, atol);
    }
    for (int64_t j = N; j < p.ldc && i * p.ldc + j < int64_t(p.c.size()); ++j)
      if (!std::isnan(p.c[i * p.ldc + j]) && !(p.c[i * p.ldc + j] == p.c0[i * p.ldc + j]) && bad++ < 5)
        std::fprintf(stderr, "  %s: C padding (%lld, %lld) was written\n", what, (long long)i, (long long)j);
    if (g.pre)
      for (int64_t j = N; j < p.ldpre && i * p.ldpre + j < int64_t(p.pre.size()); ++j)
        if (!std::isnan(p.pre[i * p.ldpre + j]) && bad++ < 5)
          std::fprintf(stderr, "  %s: pre padding (%lld, %lld) was written\n", what, (long long)i, (long long)j);
  }
  return bad == 0;
}

std::string describe(const Problem& p, Epi epi) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "M=%lld N=%lld K=%lld ta=%d tb=%d ga=%d gb=%d epi=%d alpha=%g beta=%g", (long long)p.M,
                (long long)p.N, (long long)p.K, int(p.g.a.trans), int(p.g.b.trans), p.g.a.rows != nullptr,
                p.g.b.rows != nullptr, int(epi), p.g.alpha, p.g.beta);
  return buf;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

struct Threads {  // restores the thread count on scope exit
  int saved = calmoe::cpu_threads();
  ~Threads() { calmoe::set_cpu_threads(saved); }
};

struct Backend {  // restores the GEMM path on scope exit
  std::string saved = calmoe::cpu::gemm_backend();
  ~Backend() { calmoe::cpu::set_gemm_backend(saved == "openblas" ? "blas" : saved.c_str()); }
};

const float kAlphaBeta[][2] = {{1, 0}, {0.75f, -1.25f}, {-2, 1}, {0, 0.5f}};

}  // namespace

// Every size in {0, 1, 5, 13, 17, 64, 100, 255, 1977}^3 (at most one 1977); each triple gets a
// different mix of transposes, gathers, epilogue and alpha/beta, so all of them meet all sizes.
TEST(sizes_against_reference) {
  const int64_t S[] = {0, 1, 5, 13, 17, 64, 100, 255, 1977};
  uint64_t n = 0;
  int failed = 0;
  for (int64_t M : S)
    for (int64_t N : S)
      for (int64_t K : S) {
        if ((M == 1977) + (N == 1977) + (K == 1977) > 1) continue;
        const uint64_t h = (n++ * 0x9e3779b97f4a7c15ull) >> 40;
        const Epi epi = kEpis[h % 6];
        const float* ab = kAlphaBeta[(h / 6) % 4];
        Problem p = make_problem(n, M, N, K, h & 64, h & 128, h & 256, h & 512, epi, ab[0], ab[1]);
        calmoe::cpu::sgemm(p.g);
        if (!check_reference(p, describe(p, epi).c_str()) && failed++ < 10)
          t::fail(__FILE__, __LINE__, "reference mismatch: " + describe(p, epi));
      }
}

// The full cross product of transposes, gathers, epilogues and alpha/beta, for a K of one block,
// of several blocks (kKC = 256) and of a partial register tile in every dimension.
TEST(every_variant_against_reference) {
  const int64_t shapes[][3] = {{13, 17, 5}, {37, 45, 300}, {7, 33, 513}};
  uint64_t seed = 1000;
  for (const auto& s : shapes)
    for (int v = 0; v < 16; ++v)
      for (Epi epi : kEpis)
        for (const auto& ab : kAlphaBeta) {
          Problem p = make_problem(++seed, s[0], s[1], s[2], v & 1, v & 2, v & 4, v & 8, epi, ab[0], ab[1]);
          calmoe::cpu::sgemm(p.g);
          if (!check_reference(p, describe(p, epi).c_str())) t::fail(__FILE__, __LINE__, describe(p, epi));
        }
}

// beta == 0 never reads C (NaN there stays out); alpha == 0 never reads A or B.
TEST(alpha_beta_zero_do_not_read) {
  Problem p = make_problem(7, 20, 30, 40, false, false, false, false, Epi::None, 1, 0);
  calmoe::cpu::sgemm(p.g);  // C0 is NaN
  CHECK(check_reference(p, "beta=0"));
  Problem q = make_problem(8, 20, 30, 40, true, false, true, false, Epi::BiasGelu, 0, 0.5f);
  std::fill(q.a.data.begin(), q.a.data.end(), kNaN);
  calmoe::cpu::sgemm(q.g);
  CHECK(check_reference(q, "alpha=0"));
  Problem k0 = make_problem(9, 20, 30, 0, false, true, false, true, Epi::DGelu, 1, -1);
  calmoe::cpu::sgemm(k0.g);
  CHECK(check_reference(k0, "K=0"));
}

// 1, 2 and 3 threads give the same bits: the first three shapes are cut into row or column tiles
// that differ with the thread count; each element's k order does not.
TEST(threads_same_bits) {
  Threads keep;
  const int64_t shapes[][3] = {{300, 200, 600}, {1977, 64, 255}, {12, 3000, 300}, {256, 128, 128}, {128, 10, 2048}};
  uint64_t seed = 50;
  for (const auto& s : shapes)
    for (int v = 0; v < 16; v += 5) {
      const Epi epi = kEpis[v % 6];
      Problem p = make_problem(++seed, s[0], s[1], s[2], v & 1, v & 2, v & 4, v & 8, epi, 1, v & 1 ? 0.5f : 0);
      std::vector<float> c[3], pre[3];
      for (int th = 1; th <= 3; ++th) {
        calmoe::set_cpu_threads(th);
        p.reset();
        calmoe::cpu::sgemm(p.g);
        c[th - 1] = p.c;
        pre[th - 1] = p.pre;
      }
      CHECK(check_reference(p, describe(p, epi).c_str()));
      CHECK(same_bits(c[0], c[1]) && same_bits(c[0], c[2]));
      CHECK(same_bits(pre[0], pre[1]) && same_bits(pre[0], pre[2]));
    }
}

// The AVX2 and scalar kernels and epilogues give the same bits.
TEST(scalar_and_avx2_same_bits) {
  if (!calmoe::cpu::use_avx2()) {
    std::printf("  skipped: no AVX2+FMA here (or CALMOE_SIMD=scalar)\n");
    return;
  }
  Backend keep;
  const int64_t shapes[][3] = {{13, 17, 5}, {37, 45, 300}, {64, 100, 17}, {100, 33, 513}, {6, 16, 256}};
  uint64_t seed = 70;
  for (const auto& s : shapes)
    for (int v = 0; v < 16; ++v) {
      const Epi epi = kEpis[(v + s[0]) % 6];
      const float* ab = kAlphaBeta[v % 4];
      Problem p = make_problem(++seed, s[0], s[1], s[2], v & 1, v & 2, v & 4, v & 8, epi, ab[0], ab[1]);
      CHECK(calmoe::cpu::set_gemm_backend("builtin-scalar"));
      calmoe::cpu::sgemm(p.g);
      CHECK(check_reference(p, ("scalar " + describe(p, epi)).c_str()));
      const std::vector<float> c = p.c, pre = p.pre;
      CHECK(calmoe::cpu::set_gemm_backend("builtin-avx2"));
      p.reset();
      calmoe::cpu::sgemm(p.g);
      if (!same_bits(c, p.c) || !same_bits(pre, p.pre)) t::fail(__FILE__, __LINE__, "scalar != avx2: " + describe(p, epi));
    }
}

// The epilogues on special values (K = 0, beta = 1: C carries them in): the same bits from the
// scalar code (core/activation.h itself) and the AVX2 code (NaN matching NaN), and the reference
// where it is finite.
TEST(epilogue_special_values) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> special = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-6f, -0.75f, 0.5f, 3.0f, -3.0f, 9.0f, -9.0f, 20.0f, -20.0f,
                                60.0f, -60.0f, 1e10f, -1e10f, 1e20f, -1e20f, 3e38f, inf, -inf, kNaN, 1.0f};
  // a sweep through exp's ranges: exp(-2u) overflows near x = -10.1 and is subnormal near x = +10
  for (float x = -12.0f; x <= 12.0f; x += 0.0037f) special.push_back(x);
  const int64_t N = int64_t(special.size());
  Backend keep;
  for (int variant = 0; variant < 4; ++variant) {
    std::vector<float> c_ref;
    for (const char* path : {"builtin-scalar", "builtin-avx2"}) {
      if (!calmoe::cpu::set_gemm_backend(path)) continue;
      std::vector<float> c = variant < 2 ? special : std::vector<float>(special.size(), 1.5f), pre(special.size());
      GemmArgs g;
      g.M = 1, g.N = N, g.K = 0, g.c = c.data(), g.ldc = N, g.beta = 1;
      if (variant < 2) g.act = variant == 0 ? Act::Relu : Act::Gelu;
      else g.dact = variant == 2 ? Act::Relu : Act::Gelu, g.dact_pre = special.data(), g.ld_dact = N;
      calmoe::cpu::sgemm(g);
      for (int64_t j = 0; j < N; ++j) {
        const double x = special[j];
        double want = variant == 0 ? (x > 0 ? x : 0) : variant == 1 ? gelu_ref(x) : 1.5 * (variant == 2 ? (x > 0 ? 1.0 : 0.0) : dgelu_ref(x));
        if (std::isfinite(want) && std::fabs(x) < 1e19) CHECK_CLOSE(c[j], want, 1e-6, 1e-5);
        if (variant == 1 && x == inf) CHECK(c[j] == inf);
        if (variant == 1 && x == -inf) CHECK(std::isnan(c[j]));  // -inf * 0, as PyTorch's formula
        if (variant == 0 || variant == 2) {
          if (std::isnan(x)) CHECK(c[j] == 0);  // relu(NaN) = relu'(NaN) = 0: NaN > 0 is false
        } else if (std::isnan(x)) {
          CHECK(std::isnan(c[j]));
        }
      }
      if (c_ref.empty()) {
        c_ref = c;
      } else {
        for (int64_t j = 0; j < N; ++j)
          if (!(std::isnan(c[j]) && std::isnan(c_ref[j])) && std::memcmp(&c[j], &c_ref[j], sizeof(float)) != 0)
            t::fail(__FILE__, __LINE__, "scalar != avx2 at x = " + std::to_string(special[j]) + ", variant " + std::to_string(variant));
      }
    }
  }
}

// The MoE pattern: per expert, the forward H = gelu(X[idx] W1 + b1) and the backward
// dW1 = X[idx]^T dH, as one batch of GEMMs of uneven sizes (one empty): the same bits as single
// calls, for 1 and 2 threads, and the reference.
TEST(batch_matches_single_calls) {
  Threads keep;
  const int64_t d = 24, h = 40, B = 700;
  const int64_t counts[] = {300, 0, 1, 17, 250, 132};
  const int E = 6;
  t::Rng r(99);
  std::vector<float> X(std::size_t(B * d)), W1(std::size_t(E * d * h)), b1(std::size_t(E * h)), dH(std::size_t(B * h));
  for (auto& v : X) v = r.normal();
  for (auto& v : W1) v = r.normal(0.2f);
  for (auto& v : b1) v = r.normal(0.1f);
  for (auto& v : dH) v = r.normal();
  std::vector<int32_t> perm(static_cast<std::size_t>(B));  // a shuffled dispatch: expert e takes a slice
  for (int64_t i = 0; i < B; ++i) perm[i] = int32_t(i);
  std::shuffle(perm.begin(), perm.end(), r.g);
  std::vector<GemmArgs> fwd(E), bwd(E);
  std::vector<float> H(std::size_t(B * h)), pre(std::size_t(B * h)), dW1(std::size_t(E * d * h));
  int64_t off = 0;
  for (int e = 0; e < E; ++e) {
    GemmArgs& f = fwd[e];
    f.M = counts[e], f.N = h, f.K = d;
    f.a = {X.data(), d, false, perm.data() + off};
    f.b = {W1.data() + e * d * h, h};
    f.c = H.data() + off * h, f.ldc = h;
    f.bias = b1.data() + e * h;
    f.act = Act::Gelu;
    f.pre = pre.data() + off * h, f.ldpre = h;
    GemmArgs& w = bwd[e];
    w.M = d, w.N = h, w.K = counts[e];
    w.a = {X.data(), d, true, perm.data() + off};  // X[idx]^T
    w.b = {dH.data() + off * h, h};
    w.c = dW1.data() + e * d * h, w.ldc = h;
    off += counts[e];
  }
  std::vector<float> H1, P1, D1;
  for (int th = 1; th <= 2; ++th) {
    calmoe::set_cpu_threads(th);
    std::fill(H.begin(), H.end(), 0.0f);
    std::fill(dW1.begin(), dW1.end(), 0.0f);
    calmoe::cpu::sgemm_batch(fwd.data(), E);
    calmoe::cpu::sgemm_batch(bwd.data(), E);
    if (th == 1) {
      H1 = H, P1 = pre, D1 = dW1;
    } else {
      CHECK(same_bits(H, H1) && same_bits(pre, P1) && same_bits(dW1, D1));
    }
  }
  const std::vector<float> Hb = H, Pb = pre, Db = dW1;
  for (int e = 0; e < E; ++e) calmoe::cpu::sgemm(fwd[e]), calmoe::cpu::sgemm(bwd[e]);
  CHECK(same_bits(H, Hb) && same_bits(pre, Pb) && same_bits(dW1, Db));
  // sgemm called from inside pool tasks (it then runs inline on that thread)
  std::fill(H.begin(), H.end(), 0.0f);
  std::fill(dW1.begin(), dW1.end(), 0.0f);
  calmoe::cpu::parallel_for(E, [&](int64_t e, int) { calmoe::cpu::sgemm(fwd[e]), calmoe::cpu::sgemm(bwd[e]); });
  CHECK(same_bits(H, Hb) && same_bits(pre, Pb) && same_bits(dW1, Db));
  // reference, one expert at a time
  off = 0;
  for (int e = 0; e < E; ++e) {
    for (int64_t i = 0; i < counts[e]; ++i)
      for (int64_t j = 0; j < h; ++j) {
        double s = b1[e * h + j];
        for (int64_t k = 0; k < d; ++k) s += double(X[perm[off + i] * d + k]) * W1[e * d * h + k * h + j];
        CHECK_CLOSE(pre[(off + i) * h + j], s, 1e-5, 1e-5);
        CHECK_CLOSE(H[(off + i) * h + j], gelu_ref(s), 1e-5, 1e-5);
      }
    for (int64_t k = 0; k < d; ++k)
      for (int64_t j = 0; j < h; ++j) {
        double s = 0;
        for (int64_t i = 0; i < counts[e]; ++i) s += double(X[perm[off + i] * d + k]) * dH[(off + i) * h + j];
        CHECK_CLOSE(dW1[e * d * h + k * h + j], s, 1e-4, 1e-5);
      }
    off += counts[e];
  }
}

// The BLAS path: the reference, every variant, and the builtin path to rounding; its bits do not
// depend on the thread count either (its tiles depend on the shape only).
TEST(blas_against_reference_and_builtin) {
  if (!calmoe::cpu::gemm_blas_available()) {
    std::printf("  skipped: built without a CBLAS (CALMOE_BLAS=OFF or none found; e.g. apt-get install libopenblas-dev)\n");
    return;
  }
  Backend keep;
  Threads threads;
  const int64_t shapes[][3] = {{13, 17, 5}, {37, 45, 300}, {300, 130, 77}, {1, 1977, 13}, {0, 5, 5}, {5, 5, 0}};
  uint64_t seed = 3000;
  for (const auto& s : shapes)
    for (int v = 0; v < 16; ++v) {
      const Epi epi = kEpis[(v + s[1]) % 6];
      const float* ab = kAlphaBeta[(v + s[0]) % 4];
      Problem p = make_problem(++seed, s[0], s[1], s[2], v & 1, v & 2, v & 4, v & 8, epi, ab[0], ab[1]);
      CHECK(calmoe::cpu::set_gemm_backend("blas"));
      CHECK(std::string(calmoe::cpu::gemm_backend()) == "openblas" || std::string(calmoe::cpu::gemm_backend()) == "blas");
      calmoe::set_cpu_threads(1);
      calmoe::cpu::sgemm(p.g);
      CHECK(check_reference(p, ("blas " + describe(p, epi)).c_str()));
      const std::vector<float> blas1 = p.c;
      calmoe::set_cpu_threads(2);
      p.reset();
      calmoe::cpu::sgemm(p.g);
      CHECK(same_bits(blas1, p.c));
      CHECK(calmoe::cpu::set_gemm_backend("builtin"));
      p.reset();
      calmoe::cpu::sgemm(p.g);
      for (int64_t i = 0; i < p.M; ++i)
        for (int64_t j = 0; j < p.N; ++j) CHECK_CLOSE(blas1[i * p.ldc + j], p.c[i * p.ldc + j], 1e-5 * std::sqrt(double(p.K) + 1), 1e-5);
    }
}

// After a warm-up (workspaces grown once), calls allocate nothing: single calls and batches, on
// each path. One thread, so that which threads have warmed up is certain.
TEST(no_allocation_in_steady_state) {
  Threads keep;
  Backend backend;
  calmoe::set_cpu_threads(1);
  Problem p = make_problem(11, 300, 200, 600, false, false, true, false, Epi::BiasGelu, 1, 0);
  Problem q = make_problem(12, 77, 130, 513, true, true, true, true, Epi::DRelu, 0.5f, 1);
  const GemmArgs batch[] = {p.g, q.g, p.g};  // p twice: it reads and writes the same, harmlessly
  for (const char* path : {"builtin-avx2", "builtin-scalar", "blas"}) {
    if (!calmoe::cpu::set_gemm_backend(path)) continue;
    calmoe::cpu::sgemm(p.g), calmoe::cpu::sgemm(q.g), calmoe::cpu::sgemm_batch(batch, 3);
    const long before = g_allocs.load();
    calmoe::cpu::sgemm(p.g), calmoe::cpu::sgemm(q.g), calmoe::cpu::sgemm_batch(batch, 3);
    if (g_allocs.load() != before) t::fail(__FILE__, __LINE__, std::string(path) + ": allocated in steady state");
  }
}

TEST(backend_names_and_bad_args) {
  const std::string b = calmoe::cpu::gemm_backend();
  CHECK(b == "builtin-avx2" || b == "builtin-scalar" || b == "openblas" || b == "blas");
  CHECK(!calmoe::cpu::set_gemm_backend("nonsense"));
  CHECK(calmoe::cpu::set_gemm_backend("blas") == calmoe::cpu::gemm_blas_available());
  CHECK(calmoe::cpu::set_gemm_backend(b == "openblas" ? "blas" : b.c_str()));
  GemmArgs g;
  g.M = -1;
  CHECK_THROWS(calmoe::cpu::sgemm(g), calmoe::ErrorKind::Range, "M, N, K must be >= 0");
  std::vector<float> c(8);
  g.M = 2, g.N = 4, g.K = 0, g.c = c.data(), g.ldc = 3;
  CHECK_THROWS(calmoe::cpu::sgemm(g), calmoe::ErrorKind::Range, "ldc = 3 < N = 4");
  g.ldc = 4;
  g.dact = Act::Relu;
  CHECK_THROWS(calmoe::cpu::sgemm_batch(&g, 1), calmoe::ErrorKind::Type, "sgemm_batch[0]: dact is set but dact_pre is null");
}

TEST_MAIN("gemm")
