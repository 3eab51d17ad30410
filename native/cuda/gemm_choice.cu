// The automatic choice of the TF32 GEMM kernel (GemmTf32Kernel::Auto, gemm.cuh). The register-staged
// kernel has run on a card and is the reference: every other kernel the card runs must give its bits
// on the self-check GEMMs below (every operand form, gathered rows with repeats, partial tiles and k
// steps, C stored transposed, operands marked TF32, epilogues), or it is never used, so the choice
// cannot change a result. The kernels that agree are timed on the two GEMMs that dominate a training
// step, in the operand forms the engine gives each kernel (moe_engine.cu): an expert's first-layer
// forward and its dW. The fastest runs. Once per process; on a GPU an estimated fraction of a second
// (not yet measured on a card).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/gemm.cuh"
#include "cuda/runtime.cuh"

namespace calmoe::cuda {
namespace {

// A self-check GEMM with its operands in device memory.
struct CheckGemm {
  GemmDesc d;
  std::vector<float> c0;  // C before the GEMM (read where beta != 0; padding never written)
  DeviceBuffer<float> a, b, c, bias, dpre;
  DeviceBuffer<int32_t> a_rows, b_rows;
};

// A fixed generator (the same cases on every card and run).
struct Lcg {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  }
  int32_t below(int64_t n) { return int32_t(next() % uint64_t(n)); }
  float value() { return float(int(next() % 2001u) - 1000) / 257.0f; }  // not TF32 values: the rounding is exercised
};

// One operand of `rows` x `cols` logical elements, stored transposed or not, rows gathered (with
// repeats) or not, `pad` floats past each storage row.
GemmOperand make_operand(Lcg& g, int64_t rows, int64_t cols, bool trans, bool gather, int pad, bool marked, DeviceBuffer<float>& data,
                         DeviceBuffer<int32_t>& row_map) {
  const int64_t srows = trans ? cols : rows, scols = trans ? rows : cols, stored = gather ? srows + 3 : srows, ld = scols + pad;
  std::vector<float> h(std::size_t(stored * ld));
  for (float& v : h) v = marked ? tf32_round(g.value()) : g.value();
  data.resize(h.size());
  data.upload(h.data(), h.size());
  GemmOperand o{data.get(), ld, nullptr, trans ? 1 : 0, marked ? 1 : 0};
  if (gather) {
    std::vector<int32_t> r(static_cast<std::size_t>(srows));
    for (int32_t& x : r) x = g.below(stored);
    row_map.resize(r.size());
    row_map.upload(r.data(), r.size());
    o.rows = row_map.get();
  }
  return o;
}

// Two sizes (partial 128 x 128 and 128 x 256 tiles, a partial k step) in all 16 operand forms (bit
// 0: A transposed, 1: B transposed, 2: A gathered, 3: B gathered), each with its own epilogue.
std::vector<CheckGemm> check_gemms() {
  const int64_t sizes[][3] = {{129, 130, 67}, {300, 260, 70}};
  std::vector<CheckGemm> out(2 * 16);
  Lcg g{12345};
  std::size_t n = 0;
  for (const auto& s : sizes) {
    for (int form = 0; form < 16; ++form) {
      CheckGemm& x = out[n++];
      GemmDesc& d = x.d;
      d.M = s[0], d.N = s[1], d.K = s[2];
      const int pad = form % 3;
      const bool marked = form % 6 == 5;
      d.a = make_operand(g, d.M, d.K, form & 1, form & 4, pad, marked, x.a, x.a_rows);
      d.b = make_operand(g, d.K, d.N, form & 2, form & 8, pad, marked, x.b, x.b_rows);
      d.ct = form % 4 == 1;
      d.ldc = (d.ct ? d.M : d.N) + pad;
      x.c0.resize(std::size_t((d.ct ? d.N : d.M) * d.ldc));
      for (float& v : x.c0) v = g.value();
      x.c.resize(x.c0.size());
      d.c = x.c.get();
      d.beta = form % 3 == 0 ? 0.5f : 0.0f;
      if (form % 2 == 0) {
        std::vector<float> h(std::size_t(d.N));
        for (float& v : h) v = g.value();
        x.bias.resize(h.size());
        x.bias.upload(h.data(), h.size());
        d.bias = x.bias.get();
      }
      d.act = form % 5 == 0 ? GemmAct::Gelu : GemmAct::None;
      if (form % 7 == 3) {  // the backward through relu: some pre-activations are exactly 0
        std::vector<float> h(std::size_t(d.M * d.N));
        for (float& v : h) v = g.below(10) == 0 ? 0.0f : g.value();
        x.dpre.resize(h.size());
        x.dpre.upload(h.data(), h.size());
        d.dact = GemmAct::Relu, d.dact_pre = x.dpre.get(), d.ld_dact = d.N;
      }
    }
  }
  return out;
}

// Every check GEMM's C (the whole storage, padding included) on the kernel selected now.
std::vector<float> run_checks(std::vector<CheckGemm>& gemms) {
  std::vector<float> all;
  for (CheckGemm& x : gemms) {
    x.c.upload(x.c0.data(), x.c0.size());
    gemm_one(x.d, GemmMath::Tf32, nullptr);
    check(cudaDeviceSynchronize(), "the TF32 kernel check");
    const std::size_t at = all.size();
    all.resize(at + x.c0.size());
    x.c.download(all.data() + at, x.c0.size());
  }
  return all;
}

// The time of the two GEMMs that dominate an expert's training step, in the forms the engine gives
// kernel k (W1L's expert on 4096 rows: d 1024, h 2048; smaller under the CPU emulator).
double step_seconds(GemmTf32Kernel k) {
#if defined(CALMOE_CUDA_EMU)
  const int64_t rows = 256, d = 64, h = 128;
#else
  const int64_t rows = 4096, d = 1024, h = 2048;
#endif
  const bool wg = gemm_tf32_kernel_is_wgmma(k);
  GemmBenchCase forward;  // x W_1: W_1 as stored (form 0), or its transposed copy (form 2) on wgmma
  forward.M = rows, forward.N = h, forward.K = d, forward.trans_b = wg, forward.tf32 = true;
  GemmBenchCase dw;  // dW_1 = x^T delta (form 1), or on wgmma dW_1^T = delta^T x with x^T's copy (form 3, C stored transposed)
  dw.M = wg ? h : d, dw.N = wg ? d : h, dw.K = rows, dw.trans_a = true, dw.trans_b = wg, dw.tf32 = true, dw.ct = wg;
  return gemm_seconds(forward, GemmMath::Tf32, 3) + gemm_seconds(dw, GemmMath::Tf32, 3);
}

}  // namespace

std::vector<GemmTf32Trial> gemm_tf32_trials(void (*select)(GemmTf32Kernel), GemmTf32Kernel* chosen, std::string* summary, bool perturb_reference) {
  use_default_device();
  std::vector<CheckGemm> gemms = check_gemms();
  select(GemmTf32Kernel::Registers);
  std::vector<float> reference = run_checks(gemms);
  if (perturb_reference) {  // C(0, 0) of the first GEMM: an output every kernel writes
    uint32_t u;
    std::memcpy(&u, &reference[0], 4);
    u ^= 1u;
    std::memcpy(&reference[0], &u, 4);
  }
  std::vector<GemmTf32Trial> trials(1);
  trials[0].values = int64_t(reference.size());
  for (GemmTf32Kernel k : {GemmTf32Kernel::Mma, GemmTf32Kernel::Async2, GemmTf32Kernel::Async1, GemmTf32Kernel::Wgmma, GemmTf32Kernel::Wgmma256}) {
    select(k);
    if (gemm_tf32_kernel() != k) continue;  // not on this card
    GemmTf32Trial t;
    t.kernel = k;
    t.values = int64_t(reference.size());
    try {
      const std::vector<float> got = run_checks(gemms);
      for (std::size_t i = 0; i < got.size(); ++i) t.differing += std::memcmp(&got[i], &reference[i], 4) != 0;
    } catch (const std::exception& e) {
      t.error = e.what();
      cudaGetLastError();  // a launch error is not sticky: the next kernel may still run
    }
    trials.push_back(t);
  }
  std::size_t best = 0;
  for (std::size_t i = 0; i < trials.size(); ++i) {
    GemmTf32Trial& t = trials[i];
    if (!t.error.empty() || t.differing) continue;
    select(t.kernel);
    t.seconds = step_seconds(t.kernel);
    if (t.seconds < trials[best].seconds) best = i;
  }
  *chosen = trials[best].kernel;
  select(*chosen);
  // "mma (0.21 ms on the step's GEMMs; registers 1.90, async2 0.80; refused: wgmma, 12 of 98000 values differ)"
  std::string s = std::string(gemm_tf32_kernel_name(*chosen)), timed, refused;
  char buf[64];
  std::snprintf(buf, sizeof buf, " (%.3g ms on a training step's GEMMs", trials[best].seconds * 1e3);
  s += buf;
  for (const GemmTf32Trial& t : trials) {
    if (&t == &trials[best]) continue;
    if (t.error.empty() && !t.differing) {
      std::snprintf(buf, sizeof buf, "%s%s %.3g", timed.empty() ? "; " : ", ", gemm_tf32_kernel_name(t.kernel), t.seconds * 1e3);
      timed += buf;
    } else {
      refused += std::string(refused.empty() ? "; refused: " : "; ") + gemm_tf32_kernel_name(t.kernel) + ", " +
                 (t.error.empty() ? std::to_string(t.differing) + " of " + std::to_string(t.values) + " values differ from the register-staged kernel's bits"
                                  : "it failed: " + t.error);
    }
  }
  *summary = s + timed + refused + ")";
  return trials;
}

}  // namespace calmoe::cuda
