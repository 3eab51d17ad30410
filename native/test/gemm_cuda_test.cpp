// The CUDA GEMM (native/cuda/gemm.cu) against a naive CPU loop, on odd sizes with every operand
// form (transposes, row gathers with repeats and any order, padded leading dimensions) and every
// epilogue (alpha, beta, bias, relu/gelu, saved pre-activation, backward through relu/gelu), alone
// and as grouped launches (empty GEMMs, K = 0, alpha = 0 included), and split-K.
//
// Fp32 mode: the kernel's documented order (one fma chain per output over k within blocks of 256,
// blocks added in order) is that of the naive loop below and of the CPU builtin GEMM, so the
// results must be the SAME BITS as both; a semantic error is reported first against a double
// reference with atol 1e-5 + rtol 1e-5 of sum |alpha a b| + |beta c|, so a failure says which.
// Tf32 mode (sm_80+): within 4e-3 of that scale (10-bit mantissas: 2 x 2^-11 per product, plus
// FP32 accumulation); Bf16 mode: within 8e-3 (8-bit mantissas: 2 x 2^-9); both run-to-run identical.
// Skipped, loudly, without a usable GPU.
#include "test_util.h"

#if CALMOE_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "core/activation.h"
#include "cpu/gemm.h"
#include "cuda/gemm.cuh"
#include "cuda/runtime.cuh"

using namespace calmoe;
using cuda::GemmAct;
using cuda::GemmDesc;
using cuda::GemmMath;

namespace {

// One operand in host memory: storage rows x cols (ld), optional gather.
struct HostOp {
  std::vector<float> data;
  int64_t ld = 0, storage_rows = 0;
  bool trans = false;
  std::vector<int32_t> rows;  // empty: no gather
  float at(int64_t i, int64_t j) const {  // logical (i, j)
    const int64_t r = trans ? j : i, c = trans ? i : j;
    const int64_t s = rows.empty() ? r : rows[r];
    return data[s * ld + c];
  }
};

// logical rows x cols; gathered: the logical "storage-row" index goes through a random map
HostOp make_op(t::Rng& rng, int64_t rows, int64_t cols, bool trans, bool gather, int pad) {
  HostOp o;
  o.trans = trans;
  const int64_t srows = trans ? cols : rows, scols = trans ? rows : cols;  // storage-row count (logical) and width
  o.ld = scols + pad;
  if (gather) {
    o.storage_rows = srows + 3;
    o.rows.resize(std::size_t(srows));
    for (auto& r : o.rows) r = rng.below(o.storage_rows);  // repeats and any order
  } else {
    o.storage_rows = srows;
  }
  o.data.resize(std::size_t(std::max<int64_t>(1, o.storage_rows * o.ld)));
  for (auto& v : o.data) v = rng.normal();
  return o;
}

struct Case {
  int64_t M = 0, N = 0, K = 0;
  bool at = false, bt = false, ag = false, bg = false;  // transposes and row gathers of A and B
  float alpha = 1, beta = 0;
  bool bias = false, pre = false;
  GemmAct act = GemmAct::None, dact = GemmAct::None;
  int pad = 0;
};

std::string describe(const Case& c) {
  char b[256];
  std::snprintf(b, sizeof b, "M=%lld N=%lld K=%lld a%s%s b%s%s alpha=%g beta=%g bias=%d pre=%d act=%d dact=%d pad=%d", (long long)c.M,
                (long long)c.N, (long long)c.K, c.at ? "^T" : "", c.ag ? "[idx]" : "", c.bt ? "^T" : "", c.bg ? "[idx]" : "", c.alpha, c.beta,
                int(c.bias), int(c.pre), int(c.act), int(c.dact), c.pad);
  return b;
}

float act_of(GemmAct a, float x) { return a == GemmAct::Relu ? act::relu(x) : a == GemmAct::Gelu ? act::gelu(x) : x; }
float dact_of(GemmAct a, float x) { return a == GemmAct::Relu ? act::relu_grad(x) : act::gelu_grad(x); }
cpu::Act cpu_act(GemmAct a) { return a == GemmAct::Relu ? cpu::Act::Relu : a == GemmAct::Gelu ? cpu::Act::Gelu : cpu::Act::None; }

template <class T>
T* to_device(const std::vector<T>& h, std::vector<void*>& owned) {
  void* p = nullptr;
  cuda::check(cudaMalloc(&p, std::max<std::size_t>(1, h.size()) * sizeof(T)), "cudaMalloc");
  if (!h.empty()) cuda::check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  owned.push_back(p);
  return static_cast<T*>(p);
}

// A case with its host data, reference results and device descriptor.
struct Prepared {
  Case c;
  HostOp a, b;
  std::vector<float> c0, bias, dpre;
  int64_t ldc = 0, ldpre = 0, ldd = 0;
  // where C(i, j) is in c0, want and the device buffer
  int64_t ci(int64_t i, int64_t j) const { return i * ldc + j; }
  std::vector<float> want, want_pre;   // the documented order (bits)
  std::vector<double> exact, scale;    // double reference of the epilogue input, and sum |terms|
  GemmDesc d;
  float* d_c = nullptr;
  float* d_pre = nullptr;
};

Prepared prepare(const Case& c, t::Rng& rng, std::vector<void*>& owned) {
  Prepared p;
  p.c = c;
  p.a = make_op(rng, c.M, c.K, c.at, c.ag, c.pad);
  p.b = make_op(rng, c.K, c.N, c.bt, c.bg, c.pad);
  p.ldc = c.N + c.pad;
  p.ldpre = c.N + 2 * c.pad + 1;
  p.ldd = c.N + c.pad + 2;
  p.c0.resize(std::size_t(std::max<int64_t>(1, c.M * p.ldc)));
  for (auto& v : p.c0) v = rng.normal();
  p.bias.resize(std::size_t(std::max<int64_t>(1, c.N)));
  for (auto& v : p.bias) v = rng.normal(0.5f);
  p.dpre.resize(std::size_t(std::max<int64_t>(1, c.M * p.ldd)));
  for (auto& v : p.dpre) v = rng.uniform() < 0.1 ? 0.0f : rng.normal(2.0f);  // exact zeros: relu'(0) = 0
  // the naive loop in the documented order
  p.want = p.c0;
  p.want_pre.assign(std::size_t(std::max<int64_t>(1, c.M * p.ldpre)), -7.0f);
  p.exact.assign(std::size_t(c.M * c.N), 0.0);
  p.scale.assign(std::size_t(c.M * c.N), 0.0);
  const int64_t K = c.alpha == 0.0f ? 0 : c.K;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      float v = 0.0f;
      double ex = 0, sc = 0;
      for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += cuda::kGemmKC) {
        float acc = 0.0f;
        for (int64_t k = k0; k < std::min(K, k0 + cuda::kGemmKC); ++k) {
          const float x = p.a.at(i, k), y = p.b.at(k, j);
          acc = std::fma(x, y, acc);
          ex += double(c.alpha) * double(x) * double(y);
          sc += std::fabs(double(c.alpha) * double(x) * double(y));
        }
        if (k0 == 0) {
          v = c.alpha * acc;
          if (c.beta != 0.0f) v = std::fma(c.beta, p.c0[p.ci(i, j)], v);
        } else {
          v = std::fma(c.alpha, acc, v);
        }
      }
      if (c.beta != 0.0f) {
        ex += double(c.beta) * double(p.c0[p.ci(i, j)]);
        sc += std::fabs(double(c.beta) * double(p.c0[p.ci(i, j)]));
      }
      if (c.bias) {
        v = v + p.bias[j];
        ex += p.bias[j];
        sc += std::fabs(p.bias[j]);
      }
      if (c.pre) p.want_pre[i * p.ldpre + j] = v;
      v = act_of(c.act, v);
      if (c.dact != GemmAct::None) v = v * dact_of(c.dact, p.dpre[i * p.ldd + j]);
      p.want[p.ci(i, j)] = v;
      p.exact[i * c.N + j] = ex;
      p.scale[i * c.N + j] = sc;
    }
  }
  // device copies and the descriptor
  GemmDesc& d = p.d;
  d.M = c.M;
  d.N = c.N;
  d.K = c.K;
  d.a = cuda::GemmOperand{to_device(p.a.data, owned), p.a.ld, p.a.rows.empty() ? nullptr : to_device(p.a.rows, owned), int32_t(c.at)};
  d.b = cuda::GemmOperand{to_device(p.b.data, owned), p.b.ld, p.b.rows.empty() ? nullptr : to_device(p.b.rows, owned), int32_t(c.bt)};
  p.d_c = to_device(p.c0, owned);
  d.c = p.d_c;
  d.ldc = p.ldc;
  d.alpha = c.alpha;
  d.beta = c.beta;
  d.bias = c.bias ? to_device(p.bias, owned) : nullptr;
  if (c.pre) {
    p.d_pre = to_device(std::vector<float>(p.want_pre.size(), -7.0f), owned);
    d.pre = p.d_pre;
    d.ldpre = p.ldpre;
  }
  d.act = c.act;
  if (c.dact != GemmAct::None) {
    d.dact = c.dact;
    d.dact_pre = to_device(p.dpre, owned);
    d.ld_dact = p.ldd;
  }
  return p;
}

// The CPU builtin GEMM on the same host operands: C(i, j) at i * N + j (unpadded).
std::vector<float> cpu_result(const Prepared& p) {
  std::vector<float> c(std::size_t(std::max<int64_t>(1, p.c.M * p.c.N)));
  for (int64_t i = 0; i < p.c.M; ++i)
    for (int64_t j = 0; j < p.c.N; ++j) c[std::size_t(i * p.c.N + j)] = p.c0[std::size_t(p.ci(i, j))];
  std::vector<float> pre(p.want_pre.size(), -7.0f);
  cpu::GemmArgs g;
  g.M = p.c.M;
  g.N = p.c.N;
  g.K = p.c.K;
  g.a = cpu::GemmOperand{p.a.data.data(), p.a.ld, p.c.at, p.a.rows.empty() ? nullptr : p.a.rows.data()};
  g.b = cpu::GemmOperand{p.b.data.data(), p.b.ld, p.c.bt, p.b.rows.empty() ? nullptr : p.b.rows.data()};
  g.c = c.data();
  g.ldc = p.c.N;
  g.alpha = p.c.alpha;
  g.beta = p.c.beta;
  g.bias = p.c.bias ? p.bias.data() : nullptr;
  g.act = cpu_act(p.c.act);
  if (p.c.pre) {
    g.pre = pre.data();
    g.ldpre = p.ldpre;
  }
  if (p.c.dact != GemmAct::None) {
    g.dact = cpu_act(p.c.dact);
    g.dact_pre = p.dpre.data();
    g.ld_dact = p.ldd;
  }
  cpu::sgemm(g);
  return c;
}

// Checks the device results of p; exact: bits of the documented order (Fp32), else a tolerance.
void verify(const Prepared& p, GemmMath math, const char* where) {
  const Case& c = p.c;
  std::vector<float> got(p.c0.size()), got_pre(p.want_pre.size());
  cuda::check(cudaMemcpy(got.data(), p.d_c, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (c.pre) cuda::check(cudaMemcpy(got_pre.data(), p.d_pre, got_pre.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  int64_t semantic = 0, bits = 0, untouched = 0;
  double worst = 0;
  for (int64_t i = 0; i < c.M; ++i) {  // C's rows, padding included
    for (int64_t j = 0; j < p.ldc; ++j) {
      const int64_t at = i * p.ldc + j;
      if (i >= c.M || j >= c.N) {  // padding is never written
        if (std::memcmp(&got[at], &p.c0[at], 4) != 0) ++untouched;
        continue;
      }
      // the epilogue input, in double, against the saved pre-activation or the output
      const double ex = p.exact[i * c.N + j], sc = p.scale[i * c.N + j];
      const double tol = math == GemmMath::Tf32 ? 4e-3 * sc + 1e-5 : math == GemmMath::Bf16 ? 8e-3 * sc + 1e-5 : 1e-5 + 1e-5 * sc;
      double ref = ex;
      float g = got[at];
      if (c.pre) g = got_pre[i * p.ldpre + j];
      else if (c.act != GemmAct::None || c.dact != GemmAct::None) {  // compare through the epilogue, in float
        ref = act_of(c.act, float(ex));
        if (c.dact != GemmAct::None) ref *= dact_of(c.dact, p.dpre[i * p.ldd + j]);
      }
      const double err = std::fabs(double(g) - ref);
      // act and act' are Lipschitz with constants below 1.2 (gelu), so their composition moves an
      // error by at most 1.44x; the float conversion of the reference adds 1e-6 relative
      const double lim = (c.pre || (c.act == GemmAct::None && c.dact == GemmAct::None)) ? tol : 1.5 * tol + 1e-6 * std::fabs(ref);
      if (!(err <= lim)) ++semantic;
      worst = std::max(worst, err / lim);
      if (math == GemmMath::Fp32) {
        if (std::memcmp(&got[at], &p.want[at], 4) != 0) ++bits;
        if (c.pre && std::memcmp(&got_pre[i * p.ldpre + j], &p.want_pre[i * p.ldpre + j], 4) != 0) ++bits;
      }
    }
  }
  if (semantic || bits || untouched) {
    char msg[512];
    std::snprintf(msg, sizeof msg, "%s [%s] %s: %lld outside the tolerance (worst %.3g x tol), %lld not the documented bits, %lld padding cells written",
                  where, cuda::gemm_math_name(math), describe(c).c_str(), (long long)semantic, worst, (long long)bits, (long long)untouched);
    t::fail(__FILE__, __LINE__, msg);
  }
}

void free_all(std::vector<void*>& owned) {
  for (void* p : owned) cudaFree(p);
  owned.clear();
}

// The tensor-core modes where the card has them (sm_80+); gemm_math_of never picks them elsewhere.
std::vector<GemmMath> maths() {
  if (cuda::gemm_tensor_cores()) return {GemmMath::Fp32, GemmMath::Tf32, GemmMath::Bf16};
  static bool said = false;
  if (!said) std::printf("  note: the card has no TF32/BF16 tensor cores (sm_80+): Fp32 only\n");
  said = true;
  return {GemmMath::Fp32};
}

// An M x N x K case in operand form `form`: bit 0 A transposed, 1 B transposed, 2 A gathered, 3 B
// gathered; no epilogue yet.
Case form_case(const int64_t (&size)[3], int form) {
  Case c;
  c.M = size[0];
  c.N = size[1];
  c.K = size[2];
  c.at = form & 1;
  c.bt = form & 2;
  c.ag = form & 4;
  c.bg = form & 8;
  return c;
}

TEST(single_gemms_every_operand_form) {
  t::Rng rng(1);
  const int64_t sizes[][3] = {{1, 1, 1},     {13, 7, 5},    {64, 64, 16},   {65, 63, 17},  {100, 37, 300},
                              {33, 129, 513}, {1977, 10, 128}, {7, 200, 1000}, {128, 8, 2048}, {3, 5, 257}, {257, 300, 65}};
  const GemmAct acts[] = {GemmAct::None, GemmAct::Relu, GemmAct::Gelu};
  int rot = 0;
  for (GemmMath math : maths()) {
    for (const auto& s : sizes) {
      for (int form = 0; form < 16; ++form) {
        Case c = form_case(s, form);
        // a rotating epilogue, so every form meets several
        ++rot;
        c.alpha = rot % 5 == 0 ? 0.5f : 1.0f;
        c.beta = rot % 3 == 0 ? -0.75f : 0.0f;
        c.bias = rot % 2 == 0;
        c.act = acts[rot % 3];
        c.pre = c.act != GemmAct::None && rot % 4 != 1;
        c.dact = c.act == GemmAct::None ? acts[(rot / 3) % 3] : GemmAct::None;
        c.pad = rot % 3;
        std::vector<void*> owned;
        Prepared p = prepare(c, rng, owned);
        cuda::gemm_one(p.d, math, nullptr);
        cuda::check(cudaDeviceSynchronize(), "gemm");
        verify(p, math, "gemm_one");
        if (math == GemmMath::Fp32) {  // the CPU builtin GEMM: the same order, so the same bits
          const std::vector<float> cpu = cpu_result(p);
          int64_t diff = 0;
          for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = 0; j < c.N; ++j) diff += std::memcmp(&cpu[i * c.N + j], &p.want[p.ci(i, j)], 4) != 0;
          if (diff) t::fail(__FILE__, __LINE__, "the CPU builtin GEMM differs from the documented order on " + std::to_string(diff) + " elements: " + describe(c));
        }
        free_all(owned);
      }
    }
  }
}

TEST(every_epilogue_combination) {
  t::Rng rng(2);
  const GemmAct acts[] = {GemmAct::None, GemmAct::Relu, GemmAct::Gelu};
  for (GemmMath math : maths()) {
    for (float alpha : {1.0f, -1.5f, 0.0f}) {
      for (float beta : {0.0f, 0.25f}) {
        for (int bias = 0; bias < 2; ++bias) {
          for (GemmAct act : acts) {
            for (int pre = 0; pre < 2; ++pre) {
              for (GemmAct dact : acts) {
                Case c;
                c.M = 37;
                c.N = 71;
                c.K = 270;
                c.at = true;
                c.ag = true;
                c.alpha = alpha;
                c.beta = beta;
                c.bias = bias;
                c.act = act;
                c.pre = pre;
                c.dact = dact;
                c.pad = 1;
                std::vector<void*> owned;
                Prepared p = prepare(c, rng, owned);
                cuda::gemm_one(p.d, math, nullptr);
                cuda::check(cudaDeviceSynchronize(), "gemm");
                verify(p, math, "epilogue");
                free_all(owned);
              }
            }
          }
        }
      }
    }
  }
}

TEST(grouped_launch_matches_single_gemms) {
  t::Rng rng(3);
  // mixed operand forms (form -1) in one launch, then each form alone
  for (int form = -1; form < 4; ++form)
  for (GemmMath math : maths()) {
    // experts of very different sizes, empty ones, K = 0 (C = beta C + epilogue), alpha = 0
    const int64_t ms[] = {0, 1, 13, 64, 65, 300, 0, 1977, 7, 128};
    std::vector<void*> owned;
    std::vector<Prepared> ps;
    for (std::size_t g = 0; g < sizeof ms / sizeof ms[0]; ++g) {
      Case c;
      c.M = ms[g];
      c.N = g % 2 ? 10 : 129;
      c.K = g == 3 ? 0 : int64_t(17 + 61 * g);
      c.at = form < 0 ? g % 3 == 1 : (form & 1) != 0;
      c.ag = g % 2 == 0;
      c.bt = form < 0 ? g % 4 == 3 : (form & 2) != 0;
      c.bg = g == 5;
      c.alpha = g == 8 ? 0.0f : 1.0f;
      c.beta = g == 3 || g == 8 ? 0.5f : 0.0f;
      c.bias = g % 2 == 1;
      c.act = g % 3 == 0 ? GemmAct::Gelu : GemmAct::None;
      c.pre = c.act != GemmAct::None;
      c.dact = g == 4 ? GemmAct::Relu : GemmAct::None;
      ps.push_back(prepare(c, rng, owned));
    }
    std::vector<GemmDesc> ds;
    for (auto& p : ps) ds.push_back(p.d);
    std::vector<std::vector<float>> first(ps.size());
    for (int rep = 0; rep < 2; ++rep) {  // run twice: the second run must give the same bits
      for (auto& p : ps) cuda::check(cudaMemcpy(p.d_c, p.c0.data(), p.c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
      cuda::gemm_batch_sync(ds.data(), int(ds.size()), math);
      for (std::size_t g = 0; g < ps.size(); ++g) {
        verify(ps[g], math, rep ? "grouped (second run)" : "grouped");
        std::vector<float> got(ps[g].c0.size());
        cuda::check(cudaMemcpy(got.data(), ps[g].d_c, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
        if (rep == 0) first[g] = got;
        else if (std::memcmp(got.data(), first[g].data(), got.size() * sizeof(float)) != 0)
          t::fail(__FILE__, __LINE__, std::string("grouped GEMM ") + std::to_string(g) + " [" + cuda::gemm_math_name(math) + "]: two runs differ");
      }
    }
    free_all(owned);
  }
}

TEST(precision_maps_to_math) {
  const bool tc = cuda::gemm_tensor_cores();
  CHECK(cuda::gemm_math_of(MatmulPrecision::Tf32) == (tc ? GemmMath::Tf32 : GemmMath::Fp32));
  CHECK(cuda::gemm_math_of(MatmulPrecision::Fp32) == GemmMath::Fp32);
  CHECK(cuda::gemm_math_of(MatmulPrecision::Bf16) == (tc ? GemmMath::Bf16 : GemmMath::Fp32));
  using cuda::gemm_tile_of;
  CHECK(cuda::gemm_tiles(129, 65, gemm_tile_of(GemmMath::Fp32)) == 3 * 2 && cuda::gemm_tiles(129, 65, gemm_tile_of(GemmMath::Tf32)) == 2 * 1);
  CHECK(cuda::gemm_tiles(0, 65, gemm_tile_of(GemmMath::Bf16)) == 0);
  CHECK(gemm_tile_of(GemmMath::Fp32).m == 64 && gemm_tile_of(GemmMath::Fp32).n == 64);
  CHECK(gemm_tile_of(GemmMath::Tf32).m == 128 && gemm_tile_of(GemmMath::Bf16).n == 128);
  CHECK(std::strcmp(cuda::gemm_math_name(GemmMath::Bf16), "bf16") == 0);
  CHECK(MoEConfig{}.precision == MatmulPrecision::Tf32);  // the documented default
}

// Split-K (a workspace given, M x N too small to fill the card, K over two summation blocks): Fp32
// keeps the documented bits; the tensor-core modes stay within their tolerance and run to run
// identical. Every operand form (the partial products shift A and B along k), epilogues, beta.
TEST(split_k_keeps_fp32_bits) {
  t::Rng rng(5);
  const int64_t sizes[][3] = {{37, 5, 1300}, {1, 1, 513}, {64, 16, 900}, {100, 3, 777}};
  cuda::GemmWorkspace ws;
  int rot = 0;
  for (GemmMath math : maths()) {
    for (const auto& s : sizes) {
      CHECK(cuda::gemm_k_splits(s[0], s[1], s[2], math) == (s[2] + cuda::kGemmKC - 1) / cuda::kGemmKC);
      for (int form = 0; form < 16; ++form) {
        Case c = form_case(s, form);
        ++rot;
        c.alpha = rot % 4 == 0 ? -0.5f : 1.0f;
        c.beta = rot % 3 == 0 ? 0.25f : 0.0f;
        c.bias = rot % 2 == 0;
        c.act = rot % 5 == 0 ? GemmAct::Gelu : GemmAct::None;
        c.pre = c.act != GemmAct::None;
        c.pad = rot % 3;
        std::vector<void*> owned;
        Prepared p = prepare(c, rng, owned);
        std::vector<float> first;
        for (int rep = 0; rep < 2; ++rep) {
          cuda::check(cudaMemcpy(p.d_c, p.c0.data(), p.c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
          cuda::gemm_one(p.d, math, nullptr, &ws);
          cuda::check(cudaDeviceSynchronize(), "gemm");
          verify(p, math, "split-k");
          std::vector<float> got(p.c0.size());
          cuda::check(cudaMemcpy(got.data(), p.d_c, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
          if (rep == 0) first = got;
          else if (std::memcmp(got.data(), first.data(), got.size() * sizeof(float)) != 0) t::fail(__FILE__, __LINE__, "split-k: two runs differ: " + describe(c));
        }
        free_all(owned);
      }
    }
  }
  CHECK(cuda::gemm_k_splits(4096, 4096, 8192, GemmMath::Fp32) == 1);  // enough tiles: no split
  CHECK(cuda::gemm_k_splits(8, 8, 256, GemmMath::Fp32) == 1);         // one summation block
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED gemm_cuda_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  calmoe::cpu::set_gemm_backend("builtin");
  return t::run_all("gemm_cuda");
}

#else
int main() {
  std::printf("SKIPPED gemm_cuda_test: this build has no CUDA backend\n");
  return 77;
}
#endif
