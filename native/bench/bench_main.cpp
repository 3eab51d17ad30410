// Native benchmark (runs without Node, e.g. on a bare GPU machine). Prints one JSON line per
// measurement: {system, workload, mode, metric, value, unit, threads, device}.
//   calmoe_bench [w3|w1|w1l|w4|bandwidth|gemm|cuda-gemm|gemm-library|peak] [--rows N] [--epochs E] [--denormals flush,keep] [--classes C] [--repeat R] [--device cpu|cuda|all] [--threads T]
//                [--cuda-gemm tf32|fp32|bf16] [--modes soft,top2,top1,hard]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <tuple>
#include <string>
#include <vector>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "calmoe/calmoe.h"
#include "cpu/gemm.h"
#include "core/calibration.h"
#include "core/cuda_probe.h"
#include "core/moe_engine.h"
#include "host/thread_pool.h"
#if CALMOE_WITH_CUDA
#include "cuda/cublaslt_gemm.cuh"
#include "cuda/gemm.cuh"
#endif

using namespace calmoe;

namespace {

// --cuda-gemm: the CUDA GEMM math modes (cuda/gemm.cuh)
struct CudaGemmVariant {
  const char* name;
  MatmulPrecision precision;
};
constexpr CudaGemmVariant kCudaGemmVariants[] = {{"fp32", MatmulPrecision::Fp32}, {"tf32", MatmulPrecision::Tf32}, {"bf16", MatmulPrecision::Bf16}};
const CudaGemmVariant& cuda_gemm_variant(const std::string& name) {
  for (const auto& v : kCudaGemmVariants)
    if (name == v.name) return v;
  throw_range("--cuda-gemm: expected tf32, fp32 or bf16; got '" + name + "'");
}

struct Opts {
  std::string workload = "w3";
  int64_t rows = 10000000;
  int64_t classes = 10;
  int repeat = 5;
  std::string device = "all";
  std::string cuda_gemm = "tf32";  // the library default (MoEConfig::precision)
  std::string modes = "soft,top2,top1,hard";
  int64_t epochs = 15;                  // W4
  std::string denormals = "keep,flush";  // W4: the IEEE baseline first, then calmoe's default
};

// CPU seconds used by this process so far (every thread).
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void emit(const char* workload, const char* mode, const char* metric, double value, const char* unit, const char* device,
          const char* system = "calmoe-native") {
  std::printf("{\"system\":\"%s\",\"workload\":\"%s\",\"mode\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"threads\":%d,\"device\":\"%s\"}\n",
              system, workload, mode, metric, value, unit, cpu_threads(), device);
  std::fflush(stdout);
}

// Best of `repeat` timings of fn() after one warm-up call.
template <class F>
double best_time(int repeat, F&& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    const double t0 = now_s();
    fn();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

// Read bandwidth of this machine: a parallel sum over a buffer far larger than the caches.
double read_bandwidth_gbs(int repeat) {
  const int64_t n = int64_t(1) << 27;  // 512 MB of floats
  std::vector<float> buf(static_cast<std::size_t>(n), 1.0f);
  const int64_t chunk = int64_t(1) << 20;
  const int64_t chunks = n / chunk;
  std::vector<double> part(static_cast<std::size_t>(chunks));
  const double t = best_time(repeat, [&] {
    cpu::parallel_for(chunks, [&](int64_t c, int) {
      const float* p = buf.data() + c * chunk;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
      for (int64_t i = 0; i < chunk; i += 8) {
        s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
        s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
      }
      part[c] = double(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
    });
  });
  double total = 0;
  for (double v : part) total += v;
  if (total != double(n)) std::fprintf(stderr, "bandwidth check sum mismatch\n");
  return double(n) * sizeof(float) / t / 1e9;
}

void run_w3(const Opts& o) {
  const int64_t N = o.rows, C = o.classes;
  std::vector<float> p(static_cast<std::size_t>(N * C));
  std::vector<int32_t> y(static_cast<std::size_t>(N));
  {
    std::mt19937_64 g(42);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t i = 0; i < N; ++i) {
      float s = 0;
      for (int64_t j = 0; j < C; ++j) s += (p[i * C + j] = u(g) * u(g) + 1e-3f);
      for (int64_t j = 0; j < C; ++j) p[i * C + j] /= s;
      y[i] = int32_t(g() % uint64_t(C));
    }
  }
  const double bytes = double(N) * C * sizeof(float);
  const double bw = read_bandwidth_gbs(o.repeat);
  emit("w3", "memory-read", "bandwidth", bw, "GB/s", "cpu", "machine");
  emit("w3", "memory-read", "bound_rows_per_s", bw * 1e9 / (C * sizeof(float)), "rows/s", "cpu", "machine");

  std::vector<std::string> devices;
  if (o.device == "all" || o.device == "cpu") devices.push_back("cpu");
  if ((o.device == "all" && resolve_device(DeviceRequest::Auto) == Device::Cuda) || o.device == "cuda") devices.push_back("cuda");
  for (const std::string& dname : devices) {
    const Device dev = dname == "cuda" ? Device::Cuda : Device::Cpu;
    for (bool extras : {false, true}) {
      CalibConfig cfg;
      cfg.extras = extras;
      double ece = 0;
      const double t = best_time(o.repeat, [&] {
        auto st = calib_state_new(cfg);
        ScoresArg a;
        a.data = p.data();
        a.rows = N;
        a.cols = C;
        calib_update_rows(dev, a, y.data(), st.data(), st.size());
        ece = calib_finalize(st.data(), st.size()).ece;
      });
      const char* mode = extras ? "ece+nll+brier" : "ece";
      emit("w3", mode, "throughput", double(N) / t, "rows/s", dname.c_str());
      emit("w3", mode, "bandwidth", bytes / t / 1e9, "GB/s", dname.c_str());
      if (dev == Device::Cpu) emit("w3", mode, "fraction_of_read_bound", bytes / t / 1e9 / bw, "ratio", dname.c_str());
      std::fprintf(stderr, "w3 %s %s: ece=%.6f time=%.4fs (includes host-device copies on cuda)\n", dname.c_str(), mode, ece, t);
    }
#if CALMOE_WITH_CUDA
    if (dev == Device::Cuda) {  // the kernel alone, on rows already on the device
      const double copy_bw = cuda::copy_bandwidth_gbs(std::size_t(1) << 30, o.repeat);
      emit("w3", "device-copy", "bandwidth", copy_bw, "GB/s", "cuda", "machine");
      for (bool extras : {false, true}) {
        calib::KernelArgs k;
        k.scores = p.data();
        k.rows = N;
        k.cols = C;
        k.labels = y.data();
        k.extras = extras;
        const double t = cuda::calib_kernel_seconds(k, o.repeat);
        const char* mode = extras ? "ece+nll+brier-kernel" : "ece-kernel";
        emit("w3", mode, "throughput", double(N) / t, "rows/s", "cuda");
        emit("w3", mode, "bandwidth", bytes / t / 1e9, "GB/s", "cuda");
        emit("w3", mode, "fraction_of_copy_bandwidth", bytes / t / 1e9 / copy_bw, "ratio", "cuda");
        std::fprintf(stderr, "w3 cuda %s: %.3f ms, %.1f GB/s of probabilities (device copy %.1f GB/s)\n", mode, t * 1e3, bytes / t / 1e9, copy_bw);
      }
    }
#endif
  }
}

// ---- W1 / W1L: MoE training steps (DESIGN.md "Performance") -------------------------------------
// Full steps through the moe::Engine interface, as moe_fit runs them: the host gathers the batch
// (on CUDA: into pinned staging, copied in), forward, objective (tilted, eta = 0.5, weights held
// constant), backward, plain SGD update (lr 0.1; update() returns the gradient norm, so every step
// ends synchronised). W1: B = 2048, d = h = 128, C = 10, K = 8; W1L: B = 16384, d = 1024, h = 2048,
// C = 100, K = 16. One hidden layer per expert (relu), linear router; parameters ~ N(0, 0.05),
// x ~ N(0, 1) seeded, uniform labels; the batch is the whole dataset. Modes soft, top2, top1
// (topk k = 1, Switch-style) and hard (the competitive estimator: every expert runs in training).
// Best of `repeat` steps after one warm-up step. W1L runs on the CPU only with --device cpu.
void run_w1(const Opts& o, bool large) {
  const char* wl = large ? "w1l" : "w1";
  const int64_t B = large ? 16384 : 2048, d = large ? 1024 : 128, h = large ? 2048 : 128, C = large ? 100 : 10, K = large ? 16 : 8;
  std::vector<std::string> devices;
  const bool gpu = resolve_device(DeviceRequest::Auto) == Device::Cuda;
  if (o.device == "cpu" || (o.device == "all" && !large)) devices.push_back("cpu");
  if (o.device == "cuda" || (o.device == "all" && gpu)) devices.push_back("cuda");
  const CudaGemmVariant& variant = cuda_gemm_variant(o.cuda_gemm);
  const MatmulPrecision precision = variant.precision;
  std::vector<float> x(static_cast<std::size_t>(B * d));
  std::vector<int32_t> y(static_cast<std::size_t>(B)), rows(static_cast<std::size_t>(B));
  {
    std::mt19937_64 g(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = nd(g);
    for (auto& v : y) v = int32_t(g() % uint64_t(C));
    for (int64_t i = 0; i < B; ++i) rows[i] = int32_t(i);
  }
  std::fprintf(stderr, "%s: train step B=%lld d=%lld h=%lld C=%lld K=%lld, tilted eta=0.5 (term), SGD lr 0.1; best of %d steps after 1 warm-up\n",
               large ? "W1L" : "W1", (long long)B, (long long)d, (long long)h, (long long)C, (long long)K, o.repeat);
  for (const std::string& dname : devices) {
    const Device dev = dname == "cuda" ? resolve_device(DeviceRequest::Cuda) : Device::Cpu;
    // the precision is the CUDA engine's; the CPU always computes in FP32
    // CUDA: which GEMM ran is part of the system's name (cuBLASLt or calmoe's kernel; fp32 is always calmoe's)
    std::string system = "calmoe-native";
#if CALMOE_WITH_CUDA
    if (dname == "cuda") {
      const bool lt = precision != MatmulPrecision::Fp32 && cuda::cublaslt_info().usable;
      system = "calmoe-native-" + o.cuda_gemm + (lt ? "-cublaslt" : "-calmoe-gemm");
      std::fprintf(stderr, "%s: GEMM library %s\n", large ? "W1L" : "W1", lt ? cuda::cublaslt_summary().c_str() : ("calmoe (" + o.cuda_gemm + ")").c_str());
    }
#endif
    for (const char* mode : {"soft", "top2", "top1", "hard"}) {
      if (("," + o.modes + ",").find(std::string(",") + mode + ",") == std::string::npos) continue;
      MoEConfig c;
      c.input_dim = d;
      c.classes = C;
      c.experts = K;
      c.expert_hidden = {h};
      c.routing = std::strcmp(mode, "soft") == 0 ? Routing::Soft : std::strcmp(mode, "hard") == 0 ? Routing::Hard : Routing::TopK;
      c.top_k = std::strcmp(mode, "top2") == 0 ? 2 : 1;
      c.precision = precision;
      std::vector<float> params(static_cast<std::size_t>(moe_layout(c).total));
      moe_init_params(c, params.data(), 1, InitKind::Normal, 0.05f);
      ObjectiveConfig ob;
      ob.kind = ObjectiveKind::Robust;
      ob.eta = 0.5;
      ob.gradient = TiltGradient::Term;
      OptimizerConfig op;
      op.kind = OptimizerKind::Sgd;
      op.lr = 0.1;
      op.weight_decay = 0;
#if CALMOE_WITH_CUDA
      // device memory the workload needs: the engine's buffers at their peak, the dataset's copy
      // included (64 MB at W1L; torch_moe.py's memory_peak leaves its batch out)
      cuda::reset_device_memory_peak();
      const std::size_t memory_before = cuda::device_memory_stats().live;
#endif
      auto engine = moe::make_engine(dev, c, params.data(), nullptr, B);
      engine->attach_dataset(x.data(), y.data(), B);  // as moe_fit does (CUDA: the data stays on the device)
      const moe::Batch batch{x.data(), y.data(), rows.data(), B};
      double last_loss = 0;
      const double t = best_time(o.repeat, [&] {
        last_loss = engine->forward_backward(batch, ob, true).mean_loss;
        engine->update(op, op.lr);
      });
      const int64_t active = c.routing == Routing::TopK ? c.top_k : K;  // hard trains every expert
      // forward (router 2dK, each active expert 2dh + 2hC) + backward (every dW again; the delta
      // into an expert's hidden layer, 2hC; none into x, which is data): 9.6 MFLOP per row and
      // expert at W1L
      const double flops_per_row = double(4 * d * K + active * (4 * d * h + 6 * h * C));
      emit(wl, mode, "throughput", double(B) / t, "examples/s", dname.c_str(), system.c_str());
      emit(wl, mode, "gflops", double(B) * flops_per_row / t / 1e9, "GFLOP/s", dname.c_str(), system.c_str());
      std::string memory;
#if CALMOE_WITH_CUDA
      if (dname == "cuda") {
        const double gib = double(cuda::device_memory_stats().peak - memory_before) / double(1ull << 30);
        emit(wl, mode, "memory_peak", gib, "GiB", dname.c_str(), system.c_str());
        char buf[48];
        std::snprintf(buf, sizeof buf, "; device memory %.2f GiB", gib);
        memory = buf;
      }
#endif
      std::fprintf(stderr, "  %s %s %s: %.0f examples/s (%.3f ms/step, %.1f GFLOP/s; mean loss %.4f%s)\n", system.c_str(), dname.c_str(), mode,
                   double(B) / t, t * 1e3, double(B) * flops_per_row / t / 1e9, last_loss, memory.c_str());
    }
  }
}

// ---- gemm workload: the MoE expert GEMMs (native/cpu/gemm.h), builtin vs BLAS, and the FP32 peak --
// Wall-clock GFLOP/s use the best of `repeat` samples (each >= 50 ms of calls). On a shared
// machine wall time includes time other processes take, so every line also has a CPU-time figure
// (CLOCK_PROCESS_CPUTIME_ID: the pool's threads block, never spin, while idle): GFLOP/s per busy
// core, compared with the per-core peak of a register-only FMA loop.

double cpu_time_s(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// 12 independent FMA chains (latency 4 x 2 pipes needs 8): flops = iters * 12 * 8 * 2.
__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f), a3 = _mm256_set1_ps(0.4f);
  __m256 a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f), a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f);
  __m256 a8 = _mm256_set1_ps(0.9f), a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
    a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
    a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}
bool have_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
float fma_loop_avx2(int64_t) { return 0; }
bool have_avx2_fma() { return false; }
#endif

struct Peak {
  double all = 0;       // GFLOP/s, all threads, wall clock
  double per_core = 0;  // GFLOP/s of one core, by its CPU time
};

// The FP32 FMA peak: one FMA loop per thread, all at once.
Peak fp32_peak(int repeat) {
  Peak p;
  if (!have_avx2_fma()) return p;
  const int threads = cpu_threads();
  const int64_t iters = 20000000;  // 3.84 GFLOP per thread
  const double flops = double(iters) * 12 * 8 * 2;
  for (int r = 0; r < repeat; ++r) {
    std::vector<double> cpu(static_cast<std::size_t>(threads));
    std::vector<float> sums(static_cast<std::size_t>(threads));
    const double t0 = now_s();
    cpu::parallel_for(threads, [&](int64_t t, int) {
      const double c0 = cpu_time_s(CLOCK_THREAD_CPUTIME_ID);
      sums[t] = fma_loop_avx2(iters);
      cpu[t] = cpu_time_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    });
    const double wall = now_s() - t0;
    if (!(sums[0] == sums[0])) std::fprintf(stderr, "fma loop: NaN\n");  // uses the results
    p.all = std::max(p.all, flops * threads / wall / 1e9);
    for (double c : cpu) p.per_core = std::max(p.per_core, flops / c / 1e9);
  }
  return p;
}

struct GemmCase {
  const char* name;  // what the GEMM is in the MoE step
  int64_t M, N, K;
  bool ta, gather;  // A transposed; A's rows (or, transposed, its k rows) gathered through an index list
};

void run_gemm(const Opts& o) {
  const Peak peak = fp32_peak(o.repeat);
  emit("gemm", "fma-loop", "fp32_peak", peak.all, "GFLOP/s", "cpu", "machine");
  emit("gemm", "fma-loop", "fp32_peak_per_core", peak.per_core, "GFLOP/s", "cpu", "machine");
  const GemmCase cases[] = {
      {"x.w1", 256, 128, 128, false, false},     // H = X W1, one expert's rows (W1: d = h = 128)
      {"x.w1", 2048, 128, 128, false, false},    // the whole W1 batch
      {"h.w2", 256, 10, 128, false, false},      // Z = H W2, C = 10
      {"h.w2", 2048, 10, 128, false, false},
      {"x.w1", 2048, 2048, 1024, false, false},  // W1L: d = 1024, h = 2048
      {"x[idx].w1", 2048, 128, 128, false, true},  // gathered rows, as the experts see them
      {"x[idx]^T.dh", 128, 128, 2048, true, true}, // dW1: a reduction over the rows
  };
  std::vector<std::string> backends = {"builtin"};
  if (cpu::gemm_blas_available()) backends.push_back("blas");
  else std::fprintf(stderr, "gemm: built without a CBLAS: builtin only\n");
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const GemmCase& c : cases) {
    const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
    std::vector<float> A(static_cast<std::size_t>(a_rows * a_cols)), B(static_cast<std::size_t>(c.K * c.N)), C(static_cast<std::size_t>(c.M * c.N));
    for (auto& v : A) v = nd(rng);
    for (auto& v : B) v = nd(rng);
    std::vector<int32_t> idx(static_cast<std::size_t>(a_rows));
    for (int64_t i = 0; i < a_rows; ++i) idx[i] = int32_t(i);
    std::shuffle(idx.begin(), idx.end(), rng);
    cpu::GemmArgs g;
    g.M = c.M, g.N = c.N, g.K = c.K;
    g.a = {A.data(), a_cols, c.ta, c.gather ? idx.data() : nullptr};
    g.b = {B.data(), c.N};
    g.c = C.data(), g.ldc = c.N;
    const double flops = 2.0 * double(c.M) * double(c.N) * double(c.K);
    const int64_t calls = std::max<int64_t>(1, int64_t(0.05 * 30e9 / flops));  // ~50 ms per sample
    for (const std::string& b : backends) {
      cpu::set_gemm_backend(b.c_str());
      double best_wall = 1e30, best_cpu = 1e30;
      for (int r = 0; r <= o.repeat; ++r) {  // the first sample warms up
        const double w0 = now_s(), c0 = cpu_time_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int64_t k = 0; k < calls; ++k) cpu::sgemm(g);
        const double wall = (now_s() - w0) / calls, cpu = (cpu_time_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / calls;
        if (r == 0) continue;
        best_wall = std::min(best_wall, wall);
        best_cpu = std::min(best_cpu, cpu);
      }
      char mode[160];
      std::snprintf(mode, sizeof mode, "%s %s %lldx%lldx%lld", cpu::gemm_backend(), c.name, (long long)c.M, (long long)c.N, (long long)c.K);
      const double gf = flops / best_wall / 1e9, gf_core = flops / best_cpu / 1e9;
      emit("gemm", mode, "gflops", gf, "GFLOP/s", "cpu");
      emit("gemm", mode, "gflops_per_core_cpu_time", gf_core, "GFLOP/s", "cpu");
      if (peak.all > 0) {
        emit("gemm", mode, "fraction_of_peak", gf / peak.all, "ratio", "cpu");
        emit("gemm", mode, "fraction_of_core_peak_cpu_time", gf_core / peak.per_core, "ratio", "cpu");
      }
      std::fprintf(stderr, "gemm %-40s %7.1f GFLOP/s wall (%4.0f%% of %.0f), %6.1f per core by CPU time (%4.0f%% of %.1f)\n", mode, gf,
                   peak.all > 0 ? 100 * gf / peak.all : 0.0, peak.all, gf_core, peak.per_core > 0 ? 100 * gf_core / peak.per_core : 0.0,
                   peak.per_core);
    }
  }
  // The MoE forward of W1 top-1: 2048 rows dispatched unevenly to 8 experts (d = h = 128),
  // H_e = gelu(X[idx_e] W1_e + b1_e) with the pre-activation saved: one sgemm_batch vs a loop of sgemm.
  {
    const int64_t B = 2048, d = 128, h = 128, E = 8;
    const int64_t counts[E] = {512, 384, 320, 256, 224, 160, 128, 64};
    std::vector<float> X(static_cast<std::size_t>(B * d)), W(static_cast<std::size_t>(E * d * h)), bias(static_cast<std::size_t>(E * h));
    std::vector<float> H(static_cast<std::size_t>(B * h)), pre(static_cast<std::size_t>(B * h));
    for (auto& v : X) v = nd(rng);
    for (auto& v : W) v = 0.05f * nd(rng);
    for (auto& v : bias) v = 0.05f * nd(rng);
    std::vector<int32_t> idx(static_cast<std::size_t>(B));
    for (int64_t i = 0; i < B; ++i) idx[i] = int32_t(i);
    std::shuffle(idx.begin(), idx.end(), rng);
    std::vector<cpu::GemmArgs> gs(static_cast<std::size_t>(E));
    int64_t off = 0;
    for (int64_t e = 0; e < E; ++e) {
      cpu::GemmArgs& g = gs[e];
      g.M = counts[e], g.N = h, g.K = d;
      g.a = {X.data(), d, false, idx.data() + off};
      g.b = {W.data() + e * d * h, h};
      g.c = H.data() + off * h, g.ldc = h;
      g.bias = bias.data() + e * h, g.act = cpu::Act::Gelu;
      g.pre = pre.data() + off * h, g.ldpre = h;
      off += counts[e];
    }
    const double flops = 2.0 * double(B) * double(d) * double(h);
    const int64_t calls = std::max<int64_t>(1, int64_t(0.05 * 30e9 / flops));
    for (const std::string& b : backends)
      for (bool batched : {true, false}) {
        cpu::set_gemm_backend(b.c_str());
        double best_wall = 1e30, best_cpu = 1e30;
        for (int r = 0; r <= o.repeat; ++r) {
          const double w0 = now_s(), c0 = cpu_time_s(CLOCK_PROCESS_CPUTIME_ID);
          for (int64_t k = 0; k < calls; ++k) {
            if (batched) cpu::sgemm_batch(gs.data(), E);
            else for (const cpu::GemmArgs& g : gs) cpu::sgemm(g);
          }
          const double wall = (now_s() - w0) / calls, cpu = (cpu_time_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / calls;
          if (r == 0) continue;
          best_wall = std::min(best_wall, wall);
          best_cpu = std::min(best_cpu, cpu);
        }
        char mode[160];
        std::snprintf(mode, sizeof mode, "%s moe-fwd-gelu %s 8 experts 2048x128x128", cpu::gemm_backend(), batched ? "sgemm_batch" : "sgemm-loop");
        const double gf = flops / best_wall / 1e9, gf_core = flops / best_cpu / 1e9;
        emit("gemm", mode, "gflops", gf, "GFLOP/s", "cpu");
        emit("gemm", mode, "gflops_per_core_cpu_time", gf_core, "GFLOP/s", "cpu");
        std::fprintf(stderr, "gemm %-58s %7.1f GFLOP/s wall (%4.0f%% of %.0f), %6.1f per core by CPU time (%4.0f%% of %.1f)\n", mode, gf,
                     peak.all > 0 ? 100 * gf / peak.all : 0.0, peak.all, gf_core, peak.per_core > 0 ? 100 * gf_core / peak.per_core : 0.0,
                     peak.per_core);
      }
  }
  cpu::set_gemm_backend("builtin");
}

// The CUDA engine's GEMMs alone, at the W1L shapes of one expert (d = 1024, h = 2048, C = 100,
// B = 16384 rows in soft/hard; 2048 gathered rows, a top-2 expert's share): GFLOP/s per math mode.
void run_cuda_gemm(const Opts& o) {
#if CALMOE_WITH_CUDA
  if (resolve_device(DeviceRequest::Auto) != Device::Cuda) throw_range("cuda-gemm: no usable GPU");
  struct Case { const char* name; cuda::GemmBenchCase c; };
  const Case cases[] = {
      {"x.w1", {16384, 2048, 1024, false, false, false}},     // forward, layer 1
      {"h.w2", {16384, 100, 2048, false, false, false}},      // forward, layer 2 (narrow N)
      {"x^T.dh", {1024, 2048, 16384, true, false, false}},    // dW1: a reduction over the rows
      {"dh.w1^T", {16384, 1024, 2048, false, true, false}},   // dX (the router's input gradient path)
      {"x[idx].w1", {2048, 2048, 1024, false, false, true}},  // a top-2 expert's gathered rows
      {"x[idx]^T.dh", {1024, 2048, 2048, true, false, true}}, // its dW1
      {"x.w1t", {16384, 2048, 1024, false, true, false}},     // the forward with the weights stored transposed (h x d)
  };
  const bool tc = cuda::gemm_tensor_cores();
  for (const Case& k : cases) {
    for (const CudaGemmVariant& v : kCudaGemmVariants) {
      const cuda::GemmMath math = cuda::gemm_math_of(v.precision);
      if (v.precision != MatmulPrecision::Fp32 && !tc) continue;
      char mode[160];
      std::snprintf(mode, sizeof mode, "%s %s %lldx%lldx%lld", v.name, k.name, (long long)k.c.M, (long long)k.c.N, (long long)k.c.K);
      const double flop = 2.0 * double(k.c.M) * double(k.c.N) * double(k.c.K);
      const double t = cuda::gemm_seconds(k.c, math, o.repeat);
      emit("cuda-gemm", mode, "gflops", flop / t / 1e9, "GFLOP/s", "cuda", "calmoe-kernel");
      std::fprintf(stderr, "cuda-gemm calmoe   %-40s %9.3f ms %10.1f GFLOP/s\n", mode, t * 1e3, flop / t / 1e9);
      // the same GEMM on cuBLASLt (the product path for tf32 and bf16), gathered rows as a plain GEMM
      if (v.precision != MatmulPrecision::Fp32 && cuda::cublaslt_info().usable) {
        cuda::GemmBenchCase plain = k.c;
        plain.gather = false;
        const double tl = cuda::lt_gemm_seconds(plain, math, o.repeat);
        emit("cuda-gemm", mode, "gflops", flop / tl / 1e9, "GFLOP/s", "cuda", "cublaslt");
        std::fprintf(stderr, "cuda-gemm cublaslt %-40s %9.3f ms %10.1f GFLOP/s\n", mode, tl * 1e3, flop / tl / 1e9);
      }
    }
  }
#else
  (void)o;
  throw_range("cuda-gemm: this build has no CUDA backend");
#endif
}


// W4 data: Fashion-MNIST-sized (28 x 28 = 784 pixels in [0, 1], 10 classes), synthetic and seeded.
// Each class is a template of three Gaussian blobs; a row is its class's template at a random
// contrast plus pixel noise (sd 0.25), dark pixels (< 0.05) set to 0 and a 2-pixel border that is
// always 0, as in (Fashion-)MNIST; 10% of the labels are replaced by random ones, so that, as on
// Fashion-MNIST, training accuracy stays near 90% while the confident rows' gradients (and the
// routing weights of experts a row does not use) become tiny: the products of such values in the
// backward pass and in AdamW's moments are subnormal (the case that made training slow down).
void w4_data(int64_t rows, std::vector<float>& x, std::vector<int32_t>& y) {
  const int64_t side = 28, d = side * side, C = 10;
  std::mt19937_64 g(4);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> tmpl(static_cast<std::size_t>(C * d), 0.0f);
  for (int64_t c = 0; c < C; ++c) {
    float mx = 0;
    for (int b = 0; b < 3; ++b) {
      const float cx = 4 + 20 * u(g), cy = 4 + 20 * u(g), sg = 2 + 3 * u(g), amp = 0.5f + 0.5f * u(g);
      for (int64_t p = 0; p < d; ++p) {
        const float dx = float(p % side) - cx, dy = float(p / side) - cy;
        tmpl[c * d + p] += amp * std::exp(-(dx * dx + dy * dy) / (2 * sg * sg));
      }
    }
    for (int64_t p = 0; p < d; ++p) mx = std::max(mx, tmpl[c * d + p]);
    for (int64_t p = 0; p < d; ++p) tmpl[c * d + p] /= mx;
  }
  x.assign(static_cast<std::size_t>(rows * d), 0.0f);
  y.resize(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t c = int32_t(g() % uint64_t(C));
    y[i] = u(g) < 0.1f ? int32_t(g() % uint64_t(C)) : c;
    const float contrast = 0.7f + 0.3f * u(g);
    for (int64_t p = 0; p < d; ++p) {
      const int64_t px = p % side, py = p / side;
      const float v = tmpl[c * d + p] * contrast + 0.25f * nd(g);
      const bool border = px < 2 || py < 2 || px >= side - 2 || py >= side - 2;
      x[i * d + p] = border || v < 0.05f ? 0.0f : std::min(v, 1.0f);
    }
  }
}

// W4: a whole AdamW fit at the paper's settings (lr 1e-3, weight decay 1e-4, cosine decay, batch
// 128, 15 epochs; d = 784, h = 128, K = 8, C = 10, linear router, ERM), through moe_fit as a user
// runs it. Examples/s of every epoch (they should stay flat) and overall, once with IEEE
// subnormals ("calmoe-native-ieee", the behaviour before flush-to-zero) and once with calmoe's
// default (subnormals flushed), in the same run.
void run_w4(const Opts& o) {
  const int64_t rows = o.rows == 10000000 ? 60000 : o.rows;  // --rows overrides Fashion-MNIST's 60,000
  std::vector<float> x;
  std::vector<int32_t> y;
  w4_data(rows, x, y);
  std::fprintf(stderr, "W4: AdamW fit, %lld rows x 784, C=10, K=8, h=128, batch 128, %lld epochs, cosine; denormals %s; modes %s\n",
               (long long)rows, (long long)o.epochs, o.denormals.c_str(), o.modes.c_str());
  auto listed = [](const std::string& list, const char* name) { return ("," + list + ",").find(std::string(",") + name + ",") != std::string::npos; };
  for (const char* mode : {"soft", "top2", "top1", "hard"}) {
    if (!listed(o.modes, mode)) continue;
    for (const char* dn : {"keep", "flush"}) {
      if (!listed(o.denormals, dn)) continue;
      const bool flush = std::strcmp(dn, "flush") == 0;
      const std::string system = flush ? "calmoe-native" : "calmoe-native-ieee";
      MoEConfig c;
      c.input_dim = 784;
      c.classes = 10;
      c.experts = 8;
      c.expert_hidden = {128};
      c.routing = std::strcmp(mode, "soft") == 0 ? Routing::Soft : std::strcmp(mode, "hard") == 0 ? Routing::Hard : Routing::TopK;
      c.top_k = std::strcmp(mode, "top2") == 0 ? 2 : 1;
      std::vector<float> params(static_cast<std::size_t>(moe_layout(c).total));
      moe_init_params(c, params.data(), 1, InitKind::Default, 0);
      FitConfig f;
      f.epochs = o.epochs;
      f.batch_size = 128;
      f.seed = 1;
      f.optimizer.kind = OptimizerKind::AdamW;
      f.optimizer.lr = 1e-3;
      f.optimizer.weight_decay = 1e-4;
      f.schedule.kind = ScheduleKind::Cosine;
      set_flush_denormals(flush);
      const Dataset ds{x.data(), y.data(), rows};
      // CPU seconds of the process per epoch as well as wall seconds: on a shared machine the
      // wall-clock rate follows the other load, the CPU-time rate follows the work per example
      std::vector<double> cpu_at{process_cpu_s()};
      const double t0 = now_s();
      const auto hist = moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, [&](const Progress& p) {
        if (p.epoch_end) cpu_at.push_back(process_cpu_s());
      }, nullptr);
      const double total = now_s() - t0, total_cpu = cpu_at.back() - cpu_at.front();
      double first = 0, slowest = 1e30, first_cpu = 0, slowest_cpu = 1e30;
      for (const EpochLog& e : hist) {
        const double per_cpu_s = double(rows) / (cpu_at[std::size_t(e.epoch) + 1] - cpu_at[std::size_t(e.epoch)]);
        for (const auto& [metric, value, unit] : {std::tuple{"epoch_throughput", e.examples_per_s, "examples/s"},
                                                  std::tuple{"epoch_cpu_throughput", per_cpu_s, "examples/cpu-s"}})
          std::printf("{\"system\":\"%s\",\"workload\":\"w4\",\"mode\":\"%s\",\"metric\":\"%s\",\"epoch\":%lld,\"value\":%.6g,\"unit\":\"%s\",\"threads\":%d,\"device\":\"cpu\"}\n",
                      system.c_str(), mode, metric, (long long)e.epoch + 1, value, unit, cpu_threads());
        if (e.epoch == 0) first = e.examples_per_s, first_cpu = per_cpu_s;
        slowest = std::min(slowest, e.examples_per_s);
        slowest_cpu = std::min(slowest_cpu, per_cpu_s);
        std::fprintf(stderr, "  %s %s epoch %lld: %.0f examples/s, %.0f examples/cpu-s, loss %.4f, accuracy %.4f\n", system.c_str(), mode,
                     (long long)e.epoch + 1, e.examples_per_s, per_cpu_s, e.loss, e.accuracy);
      }
      std::fflush(stdout);
      emit("w4", mode, "throughput", double(rows * o.epochs) / total, "examples/s", "cpu", system.c_str());
      emit("w4", mode, "cpu_throughput", double(rows * o.epochs) / total_cpu, "examples/cpu-s", "cpu", system.c_str());
      emit("w4", mode, "slowest_epoch_vs_first", slowest / first, "ratio", "cpu", system.c_str());
      emit("w4", mode, "slowest_epoch_vs_first_cpu", slowest_cpu / first_cpu, "ratio", "cpu", system.c_str());
      emit("w4", mode, "final_train_accuracy", hist.back().accuracy, "fraction", "cpu", system.c_str());
    }
  }
  set_flush_denormals(true);
}

}  // namespace

int main(int argc, char** argv) {
  Opts o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", what); std::exit(2); }
      return argv[++i];
    };
    if (a == "--rows") o.rows = std::atoll(next("--rows"));
    else if (a == "--classes") o.classes = std::atoll(next("--classes"));
    else if (a == "--repeat") o.repeat = std::atoi(next("--repeat"));
    else if (a == "--device") o.device = next("--device");
    else if (a == "--cuda-gemm") o.cuda_gemm = next("--cuda-gemm");
    else if (a == "--modes") o.modes = next("--modes");
    else if (a == "--epochs") o.epochs = std::atoll(next("--epochs"));
    else if (a == "--denormals") o.denormals = next("--denormals");
    else if (a == "--threads") set_cpu_threads(std::atoi(next("--threads")));
    else if (a[0] != '-') o.workload = a;
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  if (o.rows < 1 || o.classes < 1 || o.repeat < 1 || o.epochs < 1) { std::fprintf(stderr, "rows, classes, repeat and epochs must be >= 1\n"); return 2; }
  try {
    if (o.workload == "w3") run_w3(o);
    else if (o.workload == "w1") run_w1(o, false);
    else if (o.workload == "w1l") run_w1(o, true);
    else if (o.workload == "w4") run_w4(o);
    else if (o.workload == "bandwidth") emit("bandwidth", "memory-read", "bandwidth", read_bandwidth_gbs(o.repeat), "GB/s", "cpu", "machine");
    else if (o.workload == "gemm") run_gemm(o);
    else if (o.workload == "cuda-gemm") run_cuda_gemm(o);
    else if (o.workload == "gemm-library") {  // which GEMM runs TF32/BF16 on the GPU, one line (gpu-verify.sh reads it)
#if CALMOE_WITH_CUDA
      std::printf("%s\n", cuda::cublaslt_summary().c_str());
#else
      std::printf("calmoe (no CUDA backend in this build)\n");
#endif
    }
    else if (o.workload == "peak") {
      const Peak peak = fp32_peak(o.repeat);
      emit("peak", "fma-loop", "fp32_peak", peak.all, "GFLOP/s", "cpu", "machine");
      emit("peak", "fma-loop", "fp32_peak_per_core", peak.per_core, "GFLOP/s", "cpu", "machine");
    } else { std::fprintf(stderr, "unknown workload %s (known: w3, w1, w1l, w4, bandwidth, gemm, cuda-gemm, gemm-library, peak)\n", o.workload.c_str()); return 2; }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "calmoe_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
