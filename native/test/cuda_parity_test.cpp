// CUDA backend against the CPU backend: identical calibration states (bit for bit: integer
// accumulation) and tilted weights to 1e-9. Skipped, loudly, without a usable GPU.
#include "core/calibration.h"
#include "test_util.h"

using namespace calmoe;

namespace {

std::vector<uint64_t> accumulate(Device dev, CalibKind kind, const std::vector<float>& s, int64_t C,
                                 const std::vector<int32_t>& y, ScoreKind sk, int M, BinEdges e) {
  CalibConfig c;
  c.kind = kind;
  c.bins = M;
  c.edges = e;
  c.groups = kind == CalibKind::Classwise ? int(C) : 1;
  auto st = calib_state_new(c);
  ScoresArg a;
  a.data = s.data();
  a.rows = int64_t(y.size());
  a.cols = C;
  a.kind = sk;
  calib_update_rows(dev, a, y.data(), st.data(), st.size());
  return st;
}

TEST(calibration_states_identical) {
  uint64_t seed = 1;
  for (int64_t N : {1, 13, 1977, 100003, 2000003}) {
    for (int64_t C : {2, 3, 10, 1000}) {
      if (N * C > 50000000) continue;
      t::Rng rng(seed++);
      const auto p = t::random_probs(rng, N, C);
      const auto y = t::random_labels(rng, N, C);
      for (ScoreKind sk : {ScoreKind::Probabilities, ScoreKind::Logits}) {
        for (BinEdges e : {BinEdges::RightClosed, BinEdges::LeftClosed}) {
          const auto cpu = accumulate(Device::Cpu, CalibKind::TopLabel, p, C, y, sk, 15, e);
          const auto gpu = accumulate(Device::Cuda, CalibKind::TopLabel, p, C, y, sk, 15, e);
          CHECK(cpu == gpu);
        }
      }
      if (C <= 10) {
        const auto cpu = accumulate(Device::Cpu, CalibKind::Classwise, p, C, y, ScoreKind::Probabilities, 15, BinEdges::RightClosed);
        const auto gpu = accumulate(Device::Cuda, CalibKind::Classwise, p, C, y, ScoreKind::Probabilities, 15, BinEdges::RightClosed);
        CHECK(cpu == gpu);
      }
    }
  }
  // more cells than fit in shared memory: the global-atomics path
  t::Rng rng(77);
  const auto p = t::random_probs(rng, 1977, 100);
  const auto y = t::random_labels(rng, 1977, 100);
  CHECK(accumulate(Device::Cpu, CalibKind::Classwise, p, 100, y, ScoreKind::Logits, 15, BinEdges::RightClosed) ==
        accumulate(Device::Cuda, CalibKind::Classwise, p, 100, y, ScoreKind::Logits, 15, BinEdges::RightClosed));
}

TEST(grouped_states_identical) {
  t::Rng rng(31);
  const int64_t N = 100003, C = 10;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  std::vector<int32_t> g(N);
  for (auto& v : g) v = rng.below(300);  // 300 groups x 15 bins: the global-atomics path
  for (int groups : {7, 300}) {
    for (auto& v : g) v %= groups;
    CalibConfig c;
    c.groups = groups;
    c.grouped = true;
    auto a = calib_state_new(c), b = calib_state_new(c);
    ScoresArg s;
    s.data = p.data();
    s.rows = N;
    s.cols = C;
    calib_update_rows(Device::Cpu, s, y.data(), a.data(), a.size(), g.data());
    calib_update_rows(Device::Cuda, s, y.data(), b.data(), b.size(), g.data());
    CHECK(a == b);
  }
}

TEST(calibration_first_bad_row_agrees) {
  t::Rng rng(3);
  const int64_t N = 100003, C = 10;
  auto p = t::random_probs(rng, N, C);
  auto y = t::random_labels(rng, N, C);
  y[77777] = 10;
  y[99999] = -3;
  CalibConfig c;
  auto st = calib_state_new(c);
  ScoresArg a;
  a.data = p.data();
  a.rows = N;
  a.cols = C;
  CHECK_THROWS(calib_update_rows(Device::Cuda, a, y.data(), st.data(), st.size()), ErrorKind::Range, "labels[77777] = 10");
}

TEST(equal_mass_identical) {
  t::Rng rng(4);
  const int64_t N = 100003, C = 10;
  const auto p = t::random_probs(rng, N, C);
  const auto y = t::random_labels(rng, N, C);
  EqualMassArg a;
  a.scores.data = p.data();
  a.scores.rows = N;
  a.scores.cols = C;
  a.labels = y.data();
  const CalibSummary cpu = calib_equal_mass(Device::Cpu, a);
  const CalibSummary gpu = calib_equal_mass(Device::Cuda, a);
  CHECK_CLOSE(gpu.ece, cpu.ece, 0, 0);
  CHECK_CLOSE(gpu.nll, cpu.nll, 0, 0);
}

TEST(tilted_matches_cpu) {
  t::Rng rng(5);
  for (int64_t n : {1, 13, 128, 1977, 1000003}) {
    std::vector<float> l(n);
    for (auto& v : l) v = float(rng.uniform() * 5);
    for (double eta : {-2.0, 0.0, 0.5, 2.0, 100.0}) {
      for (TiltGradient g : {TiltGradient::Term, TiltGradient::Through}) {
        std::vector<float> wc(n), cc(n), wg(n), cg(n);
        const TiltedStats a = tilted_weights(Device::Cpu, l.data(), n, eta, g, wc.data(), cc.data());
        const TiltedStats b = tilted_weights(Device::Cuda, l.data(), n, eta, g, wg.data(), cg.data());
        CHECK_CLOSE(b.robust_loss, a.robust_loss, 1e-12, 1e-9);
        CHECK_CLOSE(b.tilted_erm, a.tilted_erm, 1e-12, 1e-9);
        CHECK_CLOSE(b.effective_rows, a.effective_rows, 1e-12, 1e-9);
        for (int64_t i = 0; i < n; ++i) {
          CHECK_CLOSE(wg[i], wc[i], 1e-30, 1e-6);
          CHECK_CLOSE(cg[i], cc[i], 1e-12, 1e-6);
        }
      }
    }
  }
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED cuda_parity_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  return t::run_all("cuda_parity");
}
