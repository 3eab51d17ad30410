// CUDA backend against the CPU backend: identical calibration states (bit for bit: integer
// accumulation) and tilted weights to 1e-9. Skipped, loudly, without a usable GPU.
#include <cmath>
#include <utility>

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
    for (int64_t C : {2, 3, 10, 16, 1000}) {
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
      if (C <= 16) {  // 16: the widest staged tiles, a ring of 48 KB after a 7.5 KB histogram
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

// Binary and Confidence rows with 1..33 cells (<= 32: the warp-owned cells; 33: the shared
// histogram), grouped or not, rows that all fall in one bin, and confidences from 0 through
// subnormals to 1 (every bit of the fixed-point values).
TEST(cell_paths_identical) {
  t::Rng rng(41);
  for (int64_t N : {1, 31, 33, 4099, 100003}) {
    for (int shape : {0, 1, 2}) {  // spread, one bin, extremes
      std::vector<float> p(N);
      std::vector<int32_t> y(N);
      std::vector<uint8_t> ok(N);
      for (int64_t i = 0; i < N; ++i) {
        const double u = rng.uniform();
        p[i] = shape == 0 ? float(u) : shape == 1 ? 0.93f + float(u) * 0.01f
             : (i % 4 == 0 ? 0.0f : i % 4 == 1 ? 1.0f : i % 4 == 2 ? 1e-40f * float(1 + i % 7) : float(std::ldexp(u, -int(i % 60))));
        y[i] = rng.below(2);
        ok[i] = uint8_t(rng.below(2));
      }
      for (auto [bins, groups] : {std::pair{1, 1}, {7, 1}, {32, 1}, {33, 1}, {16, 2}, {11, 3}}) {
        std::vector<int32_t> g(N);
        for (auto& v : g) v = rng.below(groups);
        for (CalibKind kind : {CalibKind::Binary, CalibKind::Confidence}) {
          CalibConfig c;
          c.kind = kind;
          c.bins = bins;
          c.groups = groups;
          c.grouped = groups > 1;
          c.extras = kind == CalibKind::Binary;
          auto a = calib_state_new(c), b = calib_state_new(c);
          const int32_t* gid = groups > 1 ? g.data() : nullptr;
          if (kind == CalibKind::Binary) {
            calib_update_binary(Device::Cpu, p.data(), y.data(), N, a.data(), a.size(), gid);
            calib_update_binary(Device::Cuda, p.data(), y.data(), N, b.data(), b.size(), gid);
          } else {
            calib_update_confidence(Device::Cpu, p.data(), ok.data(), N, a.data(), a.size(), gid);
            calib_update_confidence(Device::Cuda, p.data(), ok.data(), N, b.data(), b.size(), gid);
          }
          CHECK(a == b);
        }
      }
    }
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
  for (int64_t n : {1, 13, 128, 256, 257, 1977, 65536, 65537, 1000003}) {  // one run, several, several levels
    std::vector<float> l(n);
    for (auto& v : l) v = float(rng.uniform() * 5);
    for (double eta : {-2.0, 0.0, 0.5, 2.0, 100.0}) {
      for (TiltGradient g : {TiltGradient::Term, TiltGradient::Through}) {
        std::vector<float> wc(n), cc(n), wg(n), cg(n);
        const TiltedStats a = tilted_weights(Device::Cpu, l.data(), n, eta, g, wc.data(), cc.data());
        const TiltedStats b = tilted_weights(Device::Cuda, l.data(), n, eta, g, wg.data(), cg.data());
        // the same bits: both backends sum in core/tilted.h's tree of runs, with fm::exp_f64
        CHECK_CLOSE(b.robust_loss, a.robust_loss, 0, 0);
        CHECK_CLOSE(b.tilted_erm, a.tilted_erm, 0, 0);
        CHECK_CLOSE(b.effective_rows, a.effective_rows, 0, 0);
        CHECK_CLOSE(b.max_weight, a.max_weight, 0, 0);
        CHECK(wg == wc);
        CHECK(cg == cc);
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
