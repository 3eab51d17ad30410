// cuBLASLt GEMMs (cuda/cublaslt_gemm.cuh): the process's library and self-check, and the per-stream
// runner with its plan cache.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "calmoe/error.h"
#include "core/cuda_probe.h"
#include "cuda/cublaslt_gemm.cuh"
#include "cuda/cublaslt_loader.h"

namespace calmoe::cuda {
namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;  // NVIDIA's advice for Hopper; ample elsewhere
constexpr std::size_t kMaxPlans = 4096;                           // a bound on the cache (top-k shapes vary by step)

struct Process {
  LtInfo info;
  lt::Library lib;
};
std::atomic<int64_t> g_fallbacks{0};

const lt::Api& api();

const char* status_name(lt::Status s) {
  switch (s) {
    case lt::kSuccess: return "CUBLAS_STATUS_SUCCESS";
    case lt::kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case lt::kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case lt::kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case lt::kArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case lt::kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case lt::kInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case lt::kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_?";
  }
}

void lt_check(lt::Status s, const char* what) {
  if (s != lt::kSuccess)
    throw Error(ErrorKind::Runtime, std::string("cuBLASLt ") + what + " failed: " + status_name(s) + " (" + std::to_string(s) + ")",
                "CALMOE_CUDA_ERROR");
}

// The largest power of two (at most 256) that divides the address: the alignment cuBLASLt is told.
uint32_t alignment_of(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 4 && (u % a) != 0) a /= 2;
  return a;
}

int32_t compute_type(GemmMath m) { return m == GemmMath::Bf16 ? lt::kCompute32FFast16BF : lt::kCompute32FFastTF32; }

// One GEMM (no batch, bias or ReLU) with row-major operands as stored.
LtGemm plain_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool ta, const float* b, int64_t ldb, bool tb, float* c,
                  int64_t ldc) {
  LtGemm g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = a;
  g.lda = lda;
  g.trans_a = ta;
  g.b = b;
  g.ldb = ldb;
  g.trans_b = tb;
  g.c = c;
  g.ldc = ldc;
  return g;
}

// ---- the self-check ----------------------------------------------------------------------------------
// GEMMs in the forms the engine asks for (forward with bias + ReLU over a batch sharing A; dW with
// A transposed; the delta with B transposed; beta = 1 in place), on small integers whose products
// and sums are exact in TF32, BF16 and FP32, so every result must equal the host's exactly.
struct CheckCase {
  int64_t M, N, K;
  bool ta, tb, relu, bias;
  int32_t batch;
  bool share_a;
  float beta;
  GemmMath math;
};

std::string self_check_case(LtRunner& r, const CheckCase& cc) {
  const int64_t M = cc.M, N = cc.N, K = cc.K, B = cc.batch;
  const int64_t lda = cc.ta ? M + 3 : K + 1, ldb = cc.tb ? K + 2 : N + 5, ldc = N + 1;
  const int64_t sa = cc.share_a ? 0 : (cc.ta ? K : M) * lda, sb = (cc.tb ? N : K) * ldb, sc = M * ldc;
  std::vector<float> a(std::size_t(std::max<int64_t>(1, (cc.share_a ? 1 : B) * (cc.ta ? K : M) * lda)));
  std::vector<float> b(std::size_t(B * sb)), c(std::size_t(B * sc)), bias(std::size_t(B * N));
  uint32_t s = 12345u + uint32_t(M * 31 + N * 7 + K);
  auto next = [&] {
    s = s * 1664525u + 1013904223u;
    return float(int((s >> 24) % 5) - 2);  // -2 .. 2
  };
  for (float& v : a) v = next();
  for (float& v : b) v = next();
  for (float& v : c) v = next();
  for (float& v : bias) v = next();
  DeviceBuffer<float> da(a.size()), db(b.size()), dc(c.size()), dbias(bias.size());
  da.upload(a.data(), a.size());
  db.upload(b.data(), b.size());
  dc.upload(c.data(), c.size());
  dbias.upload(bias.data(), bias.size());
  LtGemm g = plain_gemm(M, N, K, da.get(), lda, cc.ta, db.get(), ldb, cc.tb, dc.get(), ldc);
  g.beta = cc.beta;
  g.bias = cc.bias ? dbias.get() : nullptr;
  g.relu = cc.relu;
  g.batch = int32_t(B);
  g.stride_a = sa;
  g.stride_b = sb;
  g.stride_c = sc;
  g.stride_bias = N;
  if (!r.run(g, cc.math, nullptr)) return "no algorithm for a " + std::to_string(M) + " x " + std::to_string(N) + " x " + std::to_string(K) + " GEMM";
  check(cudaDeviceSynchronize(), "cuBLASLt self-check");
  std::vector<float> got(c.size());
  dc.download(got.data(), got.size());
  for (int64_t z = 0; z < B; ++z) {
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        float v = 0;
        for (int64_t k = 0; k < K; ++k) {
          const float av = a[std::size_t(z * sa + (cc.ta ? k * lda + i : i * lda + k))];
          const float bv = b[std::size_t(z * sb + (cc.tb ? j * ldb + k : k * ldb + j))];
          v += av * bv;
        }
        v += cc.beta * c[std::size_t(z * sc + i * ldc + j)];
        if (cc.bias) v += bias[std::size_t(z * N + j)];
        if (cc.relu) v = v > 0 ? v : 0;
        const float w = got[std::size_t(z * sc + i * ldc + j)];
        if (w != v)
          return std::string(gemm_math_name(cc.math)) + " GEMM " + std::to_string(M) + " x " + std::to_string(N) + " x " + std::to_string(K) +
                 (cc.ta ? " (A^T)" : "") + (cc.tb ? " (B^T)" : "") + ": C[" + std::to_string(z) + "](" + std::to_string(i) + ", " +
                 std::to_string(j) + ") = " + std::to_string(w) + ", expected " + std::to_string(v);
      }
    }
  }
  // the padding between rows of C is never written
  for (int64_t z = 0; z < B; ++z)
    for (int64_t i = 0; i < M; ++i)
      if (got[std::size_t(z * sc + i * ldc + N)] != c[std::size_t(z * sc + i * ldc + N)]) return "wrote past the N columns of C";
  return "";
}

std::string self_check() {
  LtRunner r;
  const CheckCase cases[] = {
      {37, 45, 33, false, false, true, true, 3, true, 0.0f, GemmMath::Tf32},   // experts' forward: x shared, bias + ReLU
      {29, 19, 41, true, false, false, false, 2, false, 0.0f, GemmMath::Tf32}, // dW = x^T delta
      {33, 26, 17, false, true, false, false, 2, false, 0.0f, GemmMath::Tf32}, // delta W^T
      {21, 30, 18, false, false, false, true, 1, false, 1.0f, GemmMath::Tf32}, // beta = 1, bias, in place
      {37, 45, 33, false, false, true, true, 2, true, 0.0f, GemmMath::Bf16},
      {29, 19, 41, true, true, false, false, 1, false, 0.0f, GemmMath::Bf16},
  };
  for (const CheckCase& cc : cases) {
    const std::string e = self_check_case(r, cc);
    if (!e.empty()) return e;
  }
  return "";
}

// The process's library, loaded and checked once. g_proc is set before the self-check runs, so
// the runner used by the check reaches the library through it (process() is not re-entered).
Process* g_proc = nullptr;
std::once_flag g_once;

void load_and_check() {
  auto* q = new Process();  // never destroyed: engines held by statics may outlive this file's statics
  LtInfo& info = q->info;
  const bool emulated =
#if defined(CALMOE_CUDA_EMU)
      true;
#else
      false;
#endif
  const lt::LoadResult lr = lt::load([](const char* n) { return static_cast<const char*>(std::getenv(n)); }, emulated);
  g_proc = q;
  if (!lr.ok) {
    info.reason = lr.reason;
    return;
  }
  q->lib = lr.lib;
  info.path = lr.lib.path;
  info.origin = lr.lib.origin;
  info.version = lr.lib.version;
  info.fake = lr.lib.fake;
  const Probe& pr = probe();
  if (!pr.reason.empty()) {
    info.reason = "no usable GPU (" + pr.reason + ")";
    return;
  }
  try {
    use_default_device();
    const std::string e = self_check();
    if (!e.empty()) info.reason = "self-check failed: " + e;
    else info.usable = true;
  } catch (const std::exception& ex) {
    info.reason = std::string("self-check failed: ") + ex.what();
  }
}

Process& process() {
  std::call_once(g_once, load_and_check);
  return *g_proc;
}

const lt::Api& api() { return g_proc->lib.api; }

}  // namespace

const LtInfo& cublaslt_info() { return process().info; }

std::string cublaslt_version_string(std::size_t v) {
  return v ? std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) : std::string();
}

std::string cublaslt_summary() {
  const LtInfo& i = cublaslt_info();
  if (i.usable) return "cublaslt " + cublaslt_version_string(i.version) + (i.fake ? " (fake, emulated)" : "") + " at " + i.path + " (" + i.origin + ")";
  return "calmoe (cuBLASLt not used: " + i.reason + ")";
}

int64_t gemm_fallbacks() { return g_fallbacks.load(); }

struct LtRunner::Plan {
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout la = nullptr, lb = nullptr, lc = nullptr;
  lt::MatmulAlgo algo{};
  std::size_t workspace = 0;
  bool none = false;  // the heuristic found no algorithm
  ~Plan() {
    const lt::Api& a = api();
    if (desc) a.MatmulDescDestroy(desc);
    if (la) a.MatrixLayoutDestroy(la);
    if (lb) a.MatrixLayoutDestroy(lb);
    if (lc) a.MatrixLayoutDestroy(lc);
  }
};

LtRunner::LtRunner() {
  workspace_.resize(kWorkspaceBytes);  // first: a failed allocation leaves no handle behind
  lt_check(api().Create(&handle_), "cublasLtCreate");
}

LtRunner::~LtRunner() {
  for (auto& kv : plans_) delete kv.second;
  if (handle_) api().Destroy(handle_);
}

namespace {
// cuBLASLt's view of a row-major operand: `rows` x `cols` as stored, row-major with ld, is the
// column-major matrix cols x rows with the same ld.
lt::MatrixLayout make_layout(int64_t stored_rows, int64_t stored_cols, int64_t ld, int32_t batch, int64_t stride) {
  const lt::Api& a = api();
  lt::MatrixLayout l = nullptr;
  lt_check(a.MatrixLayoutCreate(&l, lt::kR32F, uint64_t(stored_cols), uint64_t(stored_rows), ld), "cublasLtMatrixLayoutCreate");
  if (batch > 1) {
    lt_check(a.MatrixLayoutSetAttribute(l, lt::kLayoutBatchCount, &batch, sizeof(batch)), "cublasLtMatrixLayoutSetAttribute");
    lt_check(a.MatrixLayoutSetAttribute(l, lt::kLayoutStridedBatchOffset, &stride, sizeof(stride)), "cublasLtMatrixLayoutSetAttribute");
  }
  return l;
}
}  // namespace

LtRunner::Plan* LtRunner::plan(const Key& key, const LtGemm& g, GemmMath math) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  if (plans_.size() >= kMaxPlans) {
    for (auto& kv : plans_) delete kv.second;
    plans_.clear();
  }
  const lt::Api& a = api();
  auto* p = new Plan();
  plans_[key] = p;
  // column-major D (N x M) = opA'(B-side) (N x K) * opB'(A-side) (K x M)
  lt_check(a.MatmulDescCreate(&p->desc, compute_type(math), lt::kR32F), "cublasLtMatmulDescCreate");
  const int32_t ta = g.trans_b ? lt::kOpT : lt::kOpN, tb = g.trans_a ? lt::kOpT : lt::kOpN;
  lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescTransA, &ta, sizeof(ta)), "cublasLtMatmulDescSetAttribute");
  lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescTransB, &tb, sizeof(tb)), "cublasLtMatmulDescSetAttribute");
  const uint32_t epi = g.bias ? (g.relu ? lt::kEpilogueReluBias : lt::kEpilogueBias) : (g.relu ? lt::kEpilogueRelu : lt::kEpilogueDefault);
  lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescEpilogue, &epi, sizeof(epi)), "cublasLtMatmulDescSetAttribute");
  if (g.bias) {
    lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescBiasPointer, &g.bias, sizeof(g.bias)), "cublasLtMatmulDescSetAttribute");
    if (g.batch > 1)
      lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescBiasBatchStride, &g.stride_bias, sizeof(g.stride_bias)), "cublasLtMatmulDescSetAttribute");
  }
  // B as stored: K x N (or N x K transposed); A as stored: M x K (or K x M); C: M x N
  p->la = make_layout(g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb, g.batch, g.stride_b);
  p->lb = make_layout(g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda, g.batch, g.stride_a);
  p->lc = make_layout(g.M, g.N, g.ldc, g.batch, g.stride_c);
  lt::Preference pref = nullptr;
  lt_check(a.MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  struct PrefGuard {
    lt::Preference p;
    ~PrefGuard() { api().MatmulPreferenceDestroy(p); }
  } guard{pref};
  const uint64_t ws = kWorkspaceBytes;
  lt_check(a.MatmulPreferenceSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)), "cublasLtMatmulPreferenceSetAttribute");
  // the alignment of the pointers this plan is for (part of the key): the cuBLASLt A side is calmoe's B
  const uint32_t al_a = alignment_of(g.b), al_b = alignment_of(g.a), al_c = alignment_of(g.c);
  lt_check(a.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignmentA, &al_a, sizeof(al_a)), "cublasLtMatmulPreferenceSetAttribute");
  lt_check(a.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignmentB, &al_b, sizeof(al_b)), "cublasLtMatmulPreferenceSetAttribute");
  lt_check(a.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignmentC, &al_c, sizeof(al_c)), "cublasLtMatmulPreferenceSetAttribute");
  lt_check(a.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignmentD, &al_c, sizeof(al_c)), "cublasLtMatmulPreferenceSetAttribute");
  lt::HeuristicResult res{};
  int returned = 0;
  const lt::Status st = a.MatmulAlgoGetHeuristic(handle_, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &returned);
  if (st == lt::kNotSupported || (st == lt::kSuccess && (returned < 1 || res.state != lt::kSuccess))) {
    p->none = true;
    return p;
  }
  lt_check(st, "cublasLtMatmulAlgoGetHeuristic");
  p->algo = res.algo;
  p->workspace = res.workspaceSize;
  return p;
}

bool LtRunner::run(const LtGemm& g, GemmMath math, cudaStream_t stream) {
  if (math == GemmMath::Fp32) throw Error(ErrorKind::Runtime, "cuBLASLt GEMMs are for TF32 and BF16; FP32 runs calmoe's exact kernel", "CALMOE_INTERNAL");
  if (g.M < 1 || g.N < 1 || g.batch < 1) return true;  // nothing to compute
  if (g.K < 1) return false;                               // C = beta C (+ bias): calmoe's kernel does it
  const Key key = {int64_t(math), g.M, g.N, g.K, g.lda, g.ldb, g.ldc, g.trans_a, g.trans_b, g.bias != nullptr, g.relu, g.batch,
                   g.stride_a, g.stride_b, g.stride_c, g.stride_bias, alignment_of(g.a), alignment_of(g.b), alignment_of(g.c),
                   g.bias ? alignment_of(g.bias) : 0};
  Plan* p = plan(key, g, math);
  if (p->none) {
    g_fallbacks.fetch_add(1);
    return false;
  }
  const lt::Api& a = api();
  if (g.bias) lt_check(a.MatmulDescSetAttribute(p->desc, lt::kDescBiasPointer, &g.bias, sizeof(g.bias)), "cublasLtMatmulDescSetAttribute");
  lt_check(a.Matmul(handle_, p->desc, &g.alpha, g.b, p->la, g.a, p->lb, &g.beta, g.c, p->lc, g.c, p->lc, &p->algo, workspace_.get(),
                    kWorkspaceBytes, stream),
           "cublasLtMatmul");
  return true;
}

double lt_gemm_seconds(const GemmBenchCase& c, GemmMath math, int repeat) {
  if (!cublaslt_info().usable) throw Error(ErrorKind::Runtime, "cuBLASLt is not used: " + cublaslt_info().reason, "CALMOE_CUDA_UNAVAILABLE");
  if (c.gather) throw Error(ErrorKind::Range, "cuBLASLt GEMMs read no gathered rows", "CALMOE_INTERNAL");
  use_default_device();
  GemmBenchOperands ops;
  gemm_bench_operands(c, &ops);
  LtRunner r;
  const LtGemm g = plain_gemm(c.M, c.N, c.K, ops.a.get(), ops.lda, c.trans_a, ops.b.get(), ops.ldb, c.trans_b, ops.out.get(), c.N);
  if (!r.run(g, math, nullptr)) throw Error(ErrorKind::Runtime, "cuBLASLt has no algorithm for this GEMM", "CALMOE_CUDA_ERROR");
  return best_event_seconds(repeat, [&] { r.run(g, math, nullptr); });
}

}  // namespace calmoe::cuda
