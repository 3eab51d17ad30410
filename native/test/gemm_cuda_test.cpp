// The CUDA GEMM (native/cuda/gemm.cu) against a naive CPU loop, on odd sizes with every operand
// form (transposes, row gathers with repeats and any order, padded leading dimensions) and every
// epilogue (alpha, beta, bias, relu/gelu, saved pre-activation, backward through relu/gelu) and C
// stored as is or transposed, alone and as grouped launches (empty GEMMs, K = 0, alpha = 0 included).
//
// Fp32 mode: the kernel's documented order (one fma chain per output over k within blocks of 256,
// blocks added in order) is that of the naive loop below and of the CPU builtin GEMM, so the
// results must be the SAME BITS as both; a semantic error is reported first against a double
// reference with atol 1e-5 + rtol 1e-5 of sum |alpha a b| + |beta c|, so a failure says which.
// Tf32 mode (sm_80+): within 4e-3 of that scale (10-bit mantissas: 2 x 2^-11 per product, plus
// FP32 accumulation); Bf16 mode: within 8e-3 (8-bit mantissas: 2 x 2^-9); both run-to-run identical.
// Every TF32 kernel gives the same bits, and reads each stored element where it should (layout
// probes that say which element a wrong output read).
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
  bool ct = false;  // C stored transposed (GemmDesc::ct)
};

std::string describe(const Case& c) {
  char b[256];
  std::snprintf(b, sizeof b, "M=%lld N=%lld K=%lld a%s%s b%s%s alpha=%g beta=%g bias=%d pre=%d act=%d dact=%d pad=%d%s", (long long)c.M,
                (long long)c.N, (long long)c.K, c.at ? "^T" : "", c.ag ? "[idx]" : "", c.bt ? "^T" : "", c.bg ? "[idx]" : "", c.alpha, c.beta,
                int(c.bias), int(c.pre), int(c.act), int(c.dact), c.pad, c.ct ? " C^T" : "");
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
  // where C(i, j) is in c0, want and the device buffer (ldc: of its storage rows, N or, with ct, M)
  int64_t ci(int64_t i, int64_t j) const { return c.ct ? j * ldc + i : i * ldc + j; }
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
  p.ldc = (c.ct ? c.M : c.N) + c.pad;
  p.ldpre = c.N + 2 * c.pad + 1;
  p.ldd = c.N + c.pad + 2;
  p.c0.resize(std::size_t(std::max<int64_t>(1, (c.ct ? c.N : c.M) * p.ldc)));
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
  d.ct = c.ct ? 1 : 0;
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

// The CPU builtin GEMM on the same host operands: C(i, j) at i * N + j (whatever p's C layout).
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
const char* tf32_kernel_name() {
  switch (cuda::gemm_tf32_kernel()) {
    case cuda::GemmTf32Kernel::Async1: return ", async kernel, 1 block/SM";
    case cuda::GemmTf32Kernel::Async2: return ", async kernel, 2 blocks/SM";
    case cuda::GemmTf32Kernel::Mma: return ", mma.sync kernel";
    case cuda::GemmTf32Kernel::Wgmma: return ", wgmma kernel (mma.sync off forms 2, 3)";
    case cuda::GemmTf32Kernel::Wgmma256: return ", wgmma kernel on 128 x 256 tiles (mma.sync off forms 2, 3)";
    default: return ", register-staged kernel";
  }
}

void verify(const Prepared& p, GemmMath math, const char* where) {
  const Case& c = p.c;
  std::vector<float> got(p.c0.size()), got_pre(p.want_pre.size());
  cuda::check(cudaMemcpy(got.data(), p.d_c, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (c.pre) cuda::check(cudaMemcpy(got_pre.data(), p.d_pre, got_pre.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  int64_t semantic = 0, bits = 0, untouched = 0;
  double worst = 0;
  for (int64_t r = 0; r < (c.ct ? c.N : c.M); ++r) {  // C's storage rows, padding included
    for (int64_t col = 0; col < p.ldc; ++col) {
      const int64_t at = r * p.ldc + col, i = c.ct ? col : r, j = c.ct ? r : col;
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
    std::snprintf(msg, sizeof msg, "%s [%s%s] %s: %lld outside the tolerance (worst %.3g x tol), %lld not the documented bits, %lld padding cells written",
                  where, cuda::gemm_math_name(math), math == GemmMath::Tf32 ? tf32_kernel_name() : "", describe(c).c_str(), (long long)semantic, worst, (long long)bits, (long long)untouched);
    t::fail(__FILE__, __LINE__, msg);
  }
}

void free_all(std::vector<void*>& owned) {
  for (void* p : owned) cudaFree(p);
  owned.clear();
}

// The TF32 kernels these tests run, the register-staged reference first: those the card runs (a
// kernel it cannot run falls back to one already listed), or with GEMM_TEST_TF32_KERNELS=mma,wgmma
// (CALMOE_CUDA_TF32_KERNEL's names) only those beside the reference, so that scripts/gpu-verify.sh
// can try each kernel new to a card in a process of its own (one that faults takes the process's
// CUDA context, and every later test, with it).
const char* tf32_only() { return std::getenv("GEMM_TEST_TF32_KERNELS"); }
std::vector<cuda::GemmTf32Kernel> tf32_kernels() {
  using K = cuda::GemmTf32Kernel;
  const char* only = tf32_only();
  std::vector<K> out;
  for (K k : {K::Registers, K::Async1, K::Async2, K::Mma, K::Wgmma, K::Wgmma256}) {
    if (k != K::Registers && only && (std::string(",") + only + ",").find(std::string(",") + cuda::gemm_tf32_kernel_name(k) + ",") == std::string::npos)
      continue;
    cuda::gemm_set_tf32_kernel(k);
    if (cuda::gemm_tf32_kernel() == k) out.push_back(k);
  }
  cuda::gemm_set_tf32_kernel(K::Registers);
  return out;
}

// The tensor-core modes where the card has them (sm_80+); gemm_math_of never picks them elsewhere.
// Tf32 once per TF32 kernel (gemm_set_tf32_kernel), each run leaving that kernel selected.
struct MathRun {
  GemmMath math;
  cuda::GemmTf32Kernel kernel;
};
std::vector<MathRun> maths() {
  using K = cuda::GemmTf32Kernel;
  if (cuda::gemm_tensor_cores()) {
    std::vector<MathRun> runs = {{GemmMath::Fp32, K::Registers}};
    for (K k : tf32_kernels()) runs.push_back({GemmMath::Tf32, k});
    runs.push_back({GemmMath::Bf16, K::Registers});
    return runs;
  }
  static bool said = false;
  if (!said) std::printf("  note: the card has no TF32/BF16 tensor cores (sm_80+): Fp32 only\n");
  said = true;
  return {{GemmMath::Fp32, K::Registers}};
}
// Selects the run's TF32 kernel and gives its math.
GemmMath select(const MathRun& r) {
  cuda::gemm_set_tf32_kernel(r.kernel);
  return r.math;
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
  for (const MathRun& run : maths()) {
    const GemmMath math = select(run);
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
        c.ct = rot % 7 == 3;  // C stored transposed now and then
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
  for (const MathRun& run : maths()) {
    const GemmMath math = select(run);
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
                c.ct = pre != bias;
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
  // mixed operand forms (form -1: the launch cannot be specialised), then each form alone (the
  // async TF32 kernels are specialised on it)
  for (int form = -1; form < 4; ++form)
  for (const MathRun& run : maths()) {
    const GemmMath math = select(run);
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
      c.ct = g % 3 == 2;
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
  CHECK(cuda::gemm_tiles(129, 257, cuda::GemmTile{128, 256}) == 2 * 2);
  CHECK(std::strcmp(cuda::gemm_math_name(GemmMath::Bf16), "bf16") == 0);
  CHECK(MoEConfig{}.precision == MatmulPrecision::Tf32);  // the documented default
  // Async1 where the card has 108 KB of shared memory per block, else the register-staged kernel
  cuda::gemm_set_tf32_kernel(cuda::GemmTf32Kernel::Async1);
  CHECK(cuda::gemm_tf32_kernel() == cuda::GemmTf32Kernel::Async1 || cuda::gemm_tf32_kernel() == cuda::GemmTf32Kernel::Registers);
  cuda::gemm_set_tf32_kernel(cuda::GemmTf32Kernel::Mma);
  CHECK(cuda::gemm_tf32_kernel() == cuda::GemmTf32Kernel::Mma || cuda::gemm_tf32_kernel() == cuda::GemmTf32Kernel::Registers);
  // Wgmma on an sm_90 card running this build's sm_90a code, else Mma (or the register-staged kernel)
  cuda::gemm_set_tf32_kernel(cuda::GemmTf32Kernel::Wgmma);
  const cuda::GemmTf32Kernel w = cuda::gemm_tf32_kernel();
  CHECK(w == cuda::GemmTf32Kernel::Wgmma || w == cuda::GemmTf32Kernel::Mma || w == cuda::GemmTf32Kernel::Registers);
  std::printf("  note: CALMOE_CUDA_TF32_KERNEL=wgmma runs the %s kernel on this device\n",
              w == cuda::GemmTf32Kernel::Wgmma ? "wgmma" : w == cuda::GemmTf32Kernel::Mma ? "mma.sync" : "register-staged");
  // the tile a launch runs: 128 x 256 for Wgmma256 on form 2 only (where it runs), the mode's shape otherwise
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 2).n == 128 && cuda::gemm_tile(GemmMath::Fp32, 2).m == 64);
  cuda::gemm_set_tf32_kernel(cuda::GemmTf32Kernel::Wgmma256);
  const cuda::GemmTf32Kernel w2 = cuda::gemm_tf32_kernel();
  CHECK(w2 == cuda::GemmTf32Kernel::Wgmma256 || w2 == cuda::GemmTf32Kernel::Mma || w2 == cuda::GemmTf32Kernel::Registers);
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 2).n == (w2 == cuda::GemmTf32Kernel::Wgmma256 ? 256 : 128));
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 3).n == (w2 == cuda::GemmTf32Kernel::Wgmma256 ? 256 : 128));
  // a launch no wider than 128 keeps 128 x 128 tiles (N = 100 would fill 39% of a 256-wide one)
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 2, 129).n == (w2 == cuda::GemmTf32Kernel::Wgmma256 ? 256 : 128));
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 2, 128).n == 128 && cuda::gemm_tile(GemmMath::Tf32, 3, 100).n == 128);
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 1).n == 128);
  CHECK(cuda::gemm_tile(GemmMath::Tf32, 0).n == 128 && cuda::gemm_tile(GemmMath::Tf32, cuda::kGemmFormAny).n == 128);
  CHECK(cuda::gemm_tile(GemmMath::Bf16, 2).n == 128 && cuda::gemm_tile(GemmMath::Fp32, 2).n == 64);
  cuda::gemm_set_tf32_kernel(cuda::GemmTf32Kernel::Registers);  // the default
  CHECK(cuda::gemm_tf32_kernel() == cuda::GemmTf32Kernel::Registers);
}

// Split-K (a workspace given, M x N too small to fill the card, K over two summation blocks): Fp32
// keeps the documented bits; the tensor-core modes stay within their tolerance and run to run
// identical. Every operand form (the partial products shift A and B along k), epilogues, beta.
TEST(split_k_keeps_fp32_bits) {
  t::Rng rng(5);
  const int64_t sizes[][3] = {{37, 5, 1300}, {1, 1, 513}, {64, 16, 900}, {100, 3, 777}};
  cuda::GemmWorkspace ws;
  int rot = 0;
  for (const MathRun& run : maths()) {
    const GemmMath math = select(run);
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
        c.ct = rot % 4 == 1;
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

// The TF32 kernels add the same products in the same order (gemm.cuh), so each gives the
// register-staged kernel's bits: then which one runs (a default chosen by measurement) cannot
// change a result. Every operand form, gathers, sizes with partial tiles and k steps, epilogues.
TEST(tf32_kernels_agree_bit_for_bit) {
  if (!cuda::gemm_tensor_cores()) return;
  using K = cuda::GemmTf32Kernel;
  t::Rng rng(4);
  const int64_t sizes[][3] = {{13, 7, 5}, {129, 130, 67}, {300, 257, 260}, {64, 200, 1000}};
  for (const auto& s : sizes) {
    for (int form = 0; form < 16; ++form) {
      Case c = form_case(s, form);
      c.beta = form % 3 == 0 ? 0.5f : 0.0f;
      c.bias = form % 2 == 0;
      c.act = form % 5 == 0 ? GemmAct::Gelu : GemmAct::None;
      c.pad = form % 3;
      c.ct = form % 4 == 1;
      std::vector<void*> owned;
      Prepared p = prepare(c, rng, owned);
      std::vector<float> want;
      for (K k : tf32_kernels()) {
        cuda::gemm_set_tf32_kernel(k);
        cuda::check(cudaMemcpy(p.d_c, p.c0.data(), p.c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
        cuda::gemm_one(p.d, GemmMath::Tf32, nullptr);
        // right within the tolerance first: on a GPU a failure here (a wrong layout) reads
        // differently from right values in other bits (another summation inside the unit)
        verify(p, GemmMath::Tf32, "tf32 kernel agreement");
        std::vector<float> got(p.c0.size());
        cuda::check(cudaMemcpy(got.data(), p.d_c, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
        if (want.empty()) {
          want = got;
          continue;
        }
        int64_t diff = 0;
        for (std::size_t i = 0; i < got.size(); ++i) diff += std::memcmp(&got[i], &want[i], 4) != 0;
        if (diff) t::fail(__FILE__, __LINE__, std::string(tf32_kernel_name()) + ": " + std::to_string(diff) + " elements differ from the register-staged kernel's bits: " + describe(c));
      }
      cuda::gemm_set_tf32_kernel(K::Registers);
      free_all(owned);
    }
  }
}

// Layout probes: GEMMs whose products each pick one stored element, so that a wrong layout model
// (a swizzle, a descriptor stride, a fragment or accumulator mapping) is reported as which element
// was read instead of which, the evidence needed to mend it without another GPU run. The selecting
// operand holds one 1 per row or column (C(i, j) = A(i, j % K) with B selecting, B(i % K, j) with A
// selecting); the probed one holds its storage row, then its storage column, as values (small
// integers: exact in TF32), so two GEMMs give the stored (row, column) each output read. Gathers are
// permutations here (a repeated row would sum two selections). Every TF32 kernel, every form.
// Reading a report: a misread selector shows as the probed operand read at another k, so an error
// in B alone also shows in A's probe, along k; B's own probe (A selecting) says which. C stored in
// the wrong place shows in both probes as another output's element (C(0,1) read [8][0] for [0][1]:
// C(0, 1) holds C(8, 0)).
struct ProbeMiss {
  int64_t i, j, r, c, got_r, got_c;
};

// The stored (row, column) of logical element (i, j) of h.
void stored_at(const HostOp& h, int64_t i, int64_t j, int64_t& r, int64_t& c) {
  const int64_t lr = h.trans ? j : i;
  r = h.rows.empty() ? lr : h.rows[lr];
  c = h.trans ? i : j;
}

void fill_probe(HostOp& h, bool col) {
  for (int64_t r = 0; r < h.storage_rows; ++r)
    for (int64_t c = 0; c < h.ld; ++c) h.data[r * h.ld + c] = float(col ? c : r);
}

// Logical (i, k) of a selecting A is 1 when k == i % K; of a selecting B, (k, j) when k == j % K.
void fill_selector(HostOp& h, bool is_a, int64_t M_or_N, int64_t K) {
  std::fill(h.data.begin(), h.data.end(), 0.0f);
  for (int64_t x = 0; x < M_or_N; ++x) {
    int64_t r, c;
    if (is_a) stored_at(h, x, x % K, r, c);
    else stored_at(h, x % K, x, r, c);
    h.data[r * h.ld + c] = 1.0f;
  }
}

void make_permutation(HostOp& h, t::Rng& rng) {
  if (h.rows.empty()) return;
  std::vector<int32_t> all(std::size_t(h.storage_rows));
  for (std::size_t k = 0; k < all.size(); ++k) all[k] = int32_t(k);
  for (std::size_t k = all.size(); k > 1; --k) std::swap(all[k - 1], all[std::size_t(rng.below(int64_t(k)))]);
  std::copy(all.begin(), all.begin() + int64_t(h.rows.size()), h.rows.begin());
}

// Runs the probes of operand A (probe_a) or B for case c on the selected TF32 kernel, both operands
// marked GemmOperand::tf32 or not (the kernels' other staging path); the outputs that read another
// element than they should.
std::vector<ProbeMiss> run_probe(const Case& c, bool probe_a, int32_t marked, t::Rng& rng) {
  HostOp a = make_op(rng, c.M, c.K, c.at, c.ag, c.pad), b = make_op(rng, c.K, c.N, c.bt, c.bg, c.pad);
  make_permutation(a, rng);
  make_permutation(b, rng);
  HostOp& probed = probe_a ? a : b;
  if (probe_a) fill_selector(b, false, c.N, c.K);
  else fill_selector(a, true, c.M, c.K);
  const int64_t ldc = (c.ct ? c.M : c.N) + c.pad, crows = c.ct ? c.N : c.M;
  std::vector<float> got[2];
  for (int col = 0; col < 2; ++col) {
    fill_probe(probed, col);
    std::vector<void*> owned;
    GemmDesc d;
    d.M = c.M;
    d.N = c.N;
    d.K = c.K;
    d.a = cuda::GemmOperand{to_device(a.data, owned), a.ld, a.rows.empty() ? nullptr : to_device(a.rows, owned), int32_t(c.at)};
    d.b = cuda::GemmOperand{to_device(b.data, owned), b.ld, b.rows.empty() ? nullptr : to_device(b.rows, owned), int32_t(c.bt)};
    got[col].assign(std::size_t(crows * ldc), -1.0f);
    d.c = to_device(got[col], owned);
    d.ldc = ldc;
    d.ct = c.ct ? 1 : 0;
    d.a.tf32 = d.b.tf32 = marked;  // the values are integers: TF32 already
    cuda::gemm_one(d, GemmMath::Tf32, nullptr);
    cuda::check(cudaMemcpy(got[col].data(), d.c, got[col].size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    free_all(owned);
  }
  std::vector<ProbeMiss> misses;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      ProbeMiss m{i, j, 0, 0, 0, 0};
      if (probe_a) stored_at(a, i, j % c.K, m.r, m.c);
      else stored_at(b, i % c.K, j, m.r, m.c);
      const int64_t at = c.ct ? j * ldc + i : i * ldc + j;
      const float gr = got[0][at], gc = got[1][at];
      // a value that is not a stored index (a sum of two, or never written) shows as -1
      m.got_r = gr == std::floor(gr) && gr >= 0 ? int64_t(gr) : -1;
      m.got_c = gc == std::floor(gc) && gc >= 0 ? int64_t(gc) : -1;
      if (m.got_r != m.r || m.got_c != m.c) misses.push_back(m);
    }
  }
  return misses;
}

TEST(tf32_layout_probes) {
  if (!cuda::gemm_tensor_cores()) return;
  using K = cuda::GemmTf32Kernel;
  t::Rng rng(7);
  // a full 128 x 256 tile and partial ones in both directions, a full k step of 32 and a partial one
  const int64_t size[3] = {130, 260, 40};
  for (K k : tf32_kernels()) {
    cuda::gemm_set_tf32_kernel(k);
    for (int form = 0; form < 16; ++form) {
      Case c = form_case(size, form);
      c.pad = form % 3;
      c.ct = form % 4 == 1;
      for (int op = 0; op < 2; ++op) {
        const std::vector<ProbeMiss> misses = run_probe(c, op == 0, form % 2, rng);
        if (misses.empty()) continue;
        // the most common displacements first: a layout error is usually a few regular shifts
        std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> shifts;
        for (const ProbeMiss& m : misses) {
          const std::pair<int64_t, int64_t> s{m.got_r - m.r, m.got_c - m.c};
          auto it = std::find_if(shifts.begin(), shifts.end(), [&](const auto& e) { return e.first == s; });
          if (it == shifts.end()) shifts.push_back({s, 1});
          else ++it->second;
        }
        std::sort(shifts.begin(), shifts.end(), [](const auto& x, const auto& y) { return x.second > y.second; });
        std::string msg = std::string(tf32_kernel_name()) + ", " + describe(c) + (form % 2 ? " (operands marked tf32)" : "") + ": " + std::to_string(misses.size()) + " of " +
                          std::to_string(c.M * c.N) + " outputs read the wrong element of " + (op == 0 ? "A" : "B") +
                          " (stored [row][col]; -1: not a single element):";
        for (std::size_t e = 0; e < std::min<std::size_t>(6, misses.size()); ++e) {
          const ProbeMiss& m = misses[e];
          msg += " C(" + std::to_string(m.i) + "," + std::to_string(m.j) + ") read [" + std::to_string(m.got_r) + "][" + std::to_string(m.got_c) +
                 "] for [" + std::to_string(m.r) + "][" + std::to_string(m.c) + "];";
        }
        msg += " commonest shifts (rows, cols) x count:";
        for (std::size_t e = 0; e < std::min<std::size_t>(4, shifts.size()); ++e)
          msg += " (" + std::to_string(shifts[e].first.first) + "," + std::to_string(shifts[e].first.second) + ")x" + std::to_string(shifts[e].second);
        t::fail(__FILE__, __LINE__, msg);
      }
    }
  }
  cuda::gemm_set_tf32_kernel(K::Registers);
}

TEST(tf32_kernel_names) {
  using K = cuda::GemmTf32Kernel;
  for (K k : {K::Registers, K::Async1, K::Async2, K::Mma, K::Wgmma, K::Wgmma256, K::Auto}) {
    K back = K::Registers;
    CHECK(cuda::gemm_tf32_kernel_parse(cuda::gemm_tf32_kernel_name(k), &back) && back == k);
  }
  K k = K::Mma;
  for (const char* bad : {"", "Wgmma", "wgmma 256", "tc", "auto "}) CHECK(!cuda::gemm_tf32_kernel_parse(bad, &k));
  CHECK(!cuda::gemm_tf32_kernel_parse(nullptr, &k));
  CHECK(k == K::Mma);  // untouched by a refused name
}

void select_kernel(cuda::GemmTf32Kernel k) { cuda::gemm_set_tf32_kernel(k); }

// Auto: the kernel chosen gives the register-staged kernel's bits (every trial agreed here), and the
// choice names every kernel the card runs with its time.
TEST(auto_choice_picks_a_kernel_that_agrees) {
  if (!cuda::gemm_tensor_cores()) return;
  if (tf32_only()) return;  // the trials run every kernel
  using K = cuda::GemmTf32Kernel;
  cuda::gemm_set_tf32_kernel(K::Auto);
  const K chosen = cuda::gemm_tf32_kernel();  // chooses now
  const std::string how = cuda::gemm_tf32_kernel_choice();
  std::printf("  %s\n", how.c_str());  // on a card: every kernel's time on a training step's GEMMs
  CHECK(chosen != K::Auto);
  CHECK(how.rfind(std::string("auto: ") + cuda::gemm_tf32_kernel_name(chosen) + " (", 0) == 0);
  K again = K::Registers;
  std::string summary;
  const std::vector<cuda::GemmTf32Trial> trials = cuda::gemm_tf32_trials(select_kernel, &again, &summary);
  CHECK(!trials.empty() && trials[0].kernel == K::Registers);
  for (const cuda::GemmTf32Trial& t : trials) {
    if (!t.error.empty() || t.differing)
      t::fail(__FILE__, __LINE__, std::string(cuda::gemm_tf32_kernel_name(t.kernel)) + " was refused: " + summary);
    CHECK(t.seconds > 0);
    CHECK(t.values > 10000);
    CHECK(how.find(cuda::gemm_tf32_kernel_name(t.kernel)) != std::string::npos);
  }
  for (K k : {K::Mma, K::Wgmma, K::Wgmma256}) {  // each kernel the card runs had its trial
    cuda::gemm_set_tf32_kernel(k);
    const K runs = cuda::gemm_tf32_kernel();
    CHECK(std::any_of(trials.begin(), trials.end(), [&](const cuda::GemmTf32Trial& t) { return t.kernel == runs; }));
  }
  cuda::gemm_set_tf32_kernel(K::Registers);
}

// A kernel whose bits differ from the reference in a single value is never chosen: with one bit of
// the reference flipped, every other kernel is refused and the register-staged one runs.
TEST(auto_choice_refuses_a_kernel_that_differs) {
  if (!cuda::gemm_tensor_cores()) return;
  if (tf32_only()) return;  // the trials run every kernel
  using K = cuda::GemmTf32Kernel;
  K chosen = K::Mma;
  std::string summary;
  const std::vector<cuda::GemmTf32Trial> trials = cuda::gemm_tf32_trials(select_kernel, &chosen, &summary, true);
  CHECK(chosen == K::Registers);
  CHECK(cuda::gemm_tf32_kernel() == K::Registers);
  CHECK(trials.size() > 1);  // sm_80 or newer: at least the mma.sync kernel runs beside it
  for (std::size_t i = 1; i < trials.size(); ++i) {
    CHECK_EQ(trials[i].differing, int64_t(1));
    CHECK(trials[i].seconds == 0);
    CHECK(summary.find(std::string("; ") + cuda::gemm_tf32_kernel_name(trials[i].kernel) + ", 1 of ") != std::string::npos ||
          summary.find(std::string("refused: ") + cuda::gemm_tf32_kernel_name(trials[i].kernel) + ", 1 of ") != std::string::npos);
  }
  cuda::gemm_set_tf32_kernel(K::Registers);
}

// GemmOperand::tf32: an operand whose values are TF32 already (rounded on the host here as the
// kernels round: to nearest, ties away from zero) may skip the kernels' rounding: the same bits as
// the unmarked GEMM. A, B or both marked (only the marked operand is rounded on the host, so a
// kernel that skipped the other's rounding would differ).
TEST(tf32_host_rounding) {  // cuda::tf32_round, which the marked operands below are rounded with
  CHECK_EQ(cuda::tf32_round(1.0f), 1.0f);
  CHECK_EQ(cuda::tf32_round(1.0f + 0x1p-11f), 1.0f + 0x1p-10f);  // a tie: away from zero
  CHECK_EQ(cuda::tf32_round(-1.0f - 0x1p-11f), -1.0f - 0x1p-10f);
  CHECK_EQ(cuda::tf32_round(1.0f + 0x1p-12f), 1.0f);              // below half: down
  CHECK_EQ(cuda::tf32_round(1.0f + 0x1p-11f + 0x1p-23f), 1.0f + 0x1p-10f);
}

TEST(tf32_marked_operands_same_bits) {
  if (!cuda::gemm_tensor_cores()) return;
  using K = cuda::GemmTf32Kernel;
  t::Rng rng(6);
  const int64_t sizes[][3] = {{129, 130, 67}, {64, 200, 300}};
  for (const auto& s : sizes) {
    for (int form = 0; form < 16; ++form) {
      for (int marked = 1; marked <= 3; ++marked) {  // bit 0: A, bit 1: B
        Case c = form_case(s, form);
        c.beta = form % 3 == 0 ? 0.5f : 0.0f;
        c.bias = form % 2 == 0;
        c.pad = form % 3;
        std::vector<void*> owned;
        Prepared p = prepare(c, rng, owned);
        for (int op = 0; op < 2; ++op) {
          if (!(marked >> op & 1)) continue;
          HostOp& h = op == 0 ? p.a : p.b;
          for (float& v : h.data) v = cuda::tf32_round(v);
          cuda::check(cudaMemcpy(const_cast<float*>(op == 0 ? p.d.a.p : p.d.b.p), h.data.data(), h.data.size() * sizeof(float), cudaMemcpyHostToDevice),
                      "cudaMemcpy");
        }
        for (K k : tf32_kernels()) {
          cuda::gemm_set_tf32_kernel(k);
          std::vector<float> got[2];
          for (int flag = 0; flag < 2; ++flag) {
            GemmDesc d = p.d;
            d.a.tf32 = flag && (marked & 1);
            d.b.tf32 = flag && (marked & 2);
            cuda::check(cudaMemcpy(p.d_c, p.c0.data(), p.c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
            cuda::gemm_one(d, GemmMath::Tf32, nullptr);
            got[flag].resize(p.c0.size());
            cuda::check(cudaMemcpy(got[flag].data(), p.d_c, got[flag].size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
          }
          if (std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)) != 0)
            t::fail(__FILE__, __LINE__, std::string(tf32_kernel_name()) + ": marking " + (marked == 3 ? "both operands" : marked == 1 ? "A" : "B") +
                                            " as TF32 changed the bits: " + describe(c));
        }
        cuda::gemm_set_tf32_kernel(K::Registers);
        free_all(owned);
      }
    }
  }
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
