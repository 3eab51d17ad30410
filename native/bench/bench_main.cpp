// Native benchmark (runs without Node, e.g. on a bare GPU machine). Prints one JSON line per
// measurement: {system, workload, mode, metric, value, unit, threads, device}.
//   calmoe_bench [w3|bandwidth] [--rows N] [--classes C] [--repeat R] [--device cpu|cuda|all]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "calmoe/calmoe.h"
#include "cpu/thread_pool.h"

using namespace calmoe;

namespace {

struct Opts {
  std::string workload = "w3";
  int64_t rows = 10000000;
  int64_t classes = 10;
  int repeat = 5;
  std::string device = "all";
};

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
  }
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
    else if (a == "--threads") set_cpu_threads(std::atoi(next("--threads")));
    else if (a[0] != '-') o.workload = a;
    else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
  }
  if (o.rows < 1 || o.classes < 1 || o.repeat < 1) { std::fprintf(stderr, "rows, classes and repeat must be >= 1\n"); return 2; }
  try {
    if (o.workload == "w3") run_w3(o);
    else if (o.workload == "bandwidth") emit("bandwidth", "memory-read", "bandwidth", read_bandwidth_gbs(o.repeat), "GB/s", "cpu", "machine");
    else { std::fprintf(stderr, "unknown workload %s (known: w3, bandwidth)\n", o.workload.c_str()); return 2; }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "calmoe_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
