// CUDA backend of the temperature-scaling NLL against the CPU backend (float64 sums: equal to
// rounding, deterministic run to run), and the same first bad row. Skipped, loudly, without a GPU.
#include "core/temperature.h"
#include "test_util.h"

using namespace calmoe;

namespace {

TemperatureEval eval(Device dev, const std::vector<float>& s, int64_t N, int64_t C, int64_t stride, const std::vector<int32_t>& y,
                     const std::vector<float>* w, ScoreKind kind, double T) {
  TemperatureArg a;
  a.scores = s.data();
  a.rows = N;
  a.cols = C;
  a.row_stride = stride;
  a.kind = kind;
  a.labels = y.data();
  a.weights = w ? w->data() : nullptr;
  return temperature_nll(dev, a, T);
}

TEST(matches_cpu_and_is_deterministic) {
  uint64_t seed = 1;
  for (int64_t N : {1, 13, 1977, 100003, 2000003}) {
    for (int64_t C : {2, 10, 1000}) {
      if (N * C > 50000000) continue;
      t::Rng rng(seed++);
      const auto p = t::random_probs(rng, N, C);
      const auto y = t::random_labels(rng, N, C);
      std::vector<float> w(N);
      for (auto& v : w) v = rng.uniform() < 0.3 ? 0.0f : float(rng.uniform());
      std::vector<float> z(p.size());
      for (auto& v : z) v = rng.normal(2.0f);
      for (ScoreKind k : {ScoreKind::Logits, ScoreKind::Probabilities}) {
        const auto& s = k == ScoreKind::Logits ? z : p;
        for (const std::vector<float>* wp : {(const std::vector<float>*)nullptr, (const std::vector<float>*)&w}) {
          for (double T : {0.1, 1.0, 7.0}) {
            const TemperatureEval a = eval(Device::Cpu, s, N, C, 0, y, wp, k, T);
            const TemperatureEval b = eval(Device::Cuda, s, N, C, 0, y, wp, k, T);
            const TemperatureEval b2 = eval(Device::Cuda, s, N, C, 0, y, wp, k, T);
            CHECK_CLOSE(b.nll, a.nll, 1e-9, 1e-11);
            CHECK_CLOSE(b.d1, a.d1, 1e-9 * std::max(1.0, a.nll), 1e-9);
            CHECK_CLOSE(b.d2, a.d2, 1e-9 * std::max(1.0, a.nll), 1e-9);
            CHECK_CLOSE(b.weight, a.weight, 1e-9, 1e-12);
            CHECK_EQ(b.rows, a.rows);
            CHECK(b.nll == b2.nll && b.d1 == b2.d1 && b.d2 == b2.d2);
          }
        }
      }
    }
  }
}

TEST(strided_views_match_cpu) {
  t::Rng rng(9);
  const int64_t B = 100003, K = 4, C = 10;
  std::vector<float> z(B * K * C);
  for (auto& v : z) v = rng.normal(1.5f);
  const auto y = t::random_labels(rng, B, C);
  for (int64_t k = 0; k < K; ++k) {
    TemperatureArg a;
    a.scores = z.data() + k * C;
    a.rows = B;
    a.cols = C;
    a.row_stride = K * C;
    a.labels = y.data();
    const TemperatureEval c = temperature_nll(Device::Cpu, a, 1.4);
    const TemperatureEval g = temperature_nll(Device::Cuda, a, 1.4);
    CHECK_CLOSE(g.nll, c.nll, 1e-9, 1e-11);
    CHECK_CLOSE(g.d1, c.d1, 1e-6, 1e-9);
  }
}

TEST(apply_matches_cpu) {
  t::Rng rng(11);
  for (int64_t N : {1, 1977, 300007}) {
    for (int64_t C : {3, 10, 100}) {
      const auto p = t::random_probs(rng, N, C, 3.0f);
      for (ScoreKind k : {ScoreKind::Logits, ScoreKind::Probabilities}) {
        TemperatureArg a;
        a.scores = p.data();
        a.rows = N;
        a.cols = C;
        a.kind = k;
        std::vector<float> c(N * C), g(N * C);
        temperature_apply(Device::Cpu, a, 0.6, c.data());
        temperature_apply(Device::Cuda, a, 0.6, g.data());
        for (int64_t i = 0; i < N * C; ++i) CHECK_CLOSE(g[i], c[i], 1e-30, 1e-6);
      }
    }
  }
}

TEST(first_bad_row_agrees) {
  t::Rng rng(3);
  const int64_t N = 100003, C = 10;
  std::vector<float> z(N * C);
  for (auto& v : z) v = rng.normal();
  auto y = t::random_labels(rng, N, C);
  y[77777] = 10;
  y[99999] = -3;
  TemperatureArg a;
  a.scores = z.data();
  a.rows = N;
  a.cols = C;
  a.labels = y.data();
  CHECK_THROWS(temperature_nll(Device::Cuda, a, 1.0), ErrorKind::Range, "labels[77777] = 10");
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED temperature_cuda_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  return t::run_all("temperature_cuda");
}
