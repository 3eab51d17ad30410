// Drift: CUDA backend against the CPU backend. Both compute the same integers (KS numerators, cut
// points, counts), so reports and monitor states must be identical, bit for bit. Skipped, loudly,
// without a usable GPU.
#include <cmath>
#include <limits>

#include "core/drift.h"
#include "test_util.h"

using namespace calmoe;

namespace {

std::vector<float> data(t::Rng& rng, int64_t rows, int64_t cols, float shift, int ties) {
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t f = 0; f < cols; ++f) {
      float v = rng.normal() + shift * float(f);
      if (ties) v = std::round(v * float(ties)) / float(ties);
      x[r * cols + f] = v;
    }
  return x;
}

void check_same(const DriftReport& a, const DriftReport& b) {
  CHECK(a.statistic == b.statistic);
  CHECK(a.p_value == b.p_value);
  CHECK(a.adjusted_p_value == b.adjusted_p_value);
  CHECK(a.sign == b.sign);
  CHECK(a.method == b.method);
  CHECK(a.order == b.order);
  CHECK(a.psi_current_counts == b.psi_current_counts);
  CHECK(a.psi_reference_counts == b.psi_reference_counts);
  CHECK(a.psi_edges.size() == b.psi_edges.size());
  for (std::size_t k = 0; k < a.psi_edges.size(); ++k) CHECK(f32_bits(a.psi_edges[k]) == f32_bits(b.psi_edges[k]));
  for (std::size_t k = 0; k < a.psi.size(); ++k) CHECK(a.psi[k] == b.psi[k] || (std::isnan(a.psi[k]) && std::isnan(b.psi[k])));
}

TEST(compare_identical) {
  uint64_t seed = 1;
  for (int64_t n1 : {1, 13, 1977, 100003})
    for (int64_t n2 : {1, 999, 65537})
      for (int64_t d : {1, 3, 37})
        for (int ties : {0, 4}) {
          if (n1 * d > 4000000 || n2 * d > 4000000) continue;
          t::Rng rng(seed++);
          const auto a = data(rng, n1, d, 0.0f, ties);
          const auto b = data(rng, n2, d, 0.02f, ties);
          for (int bins : {0, 10, 100}) {
            DriftOptions o;
            o.psi_bins = bins;
            const FeatureMatrix A{a.data(), n1, d}, B{b.data(), n2, d};
            check_same(drift_compare(Device::Cpu, A, B, o), drift_compare(Device::Cuda, A, B, o));
          }
        }
}

TEST(compare_identical_large_and_special_values) {
  t::Rng rng(2);
  const int64_t n = 1000000, d = 16;
  auto a = data(rng, n, d, 0.0f, 0);
  auto b = data(rng, n, d, 0.003f, 0);
  a[5] = INFINITY;
  a[17] = -0.0f;
  b[33] = -INFINITY;
  b[40] = 0.0f;
  for (int64_t r = 0; r < n; ++r) a[r * d + 3] = 2.5f;  // a constant feature
  const FeatureMatrix A{a.data(), n, d}, B{b.data(), n, d};
  check_same(drift_compare(Device::Cpu, A, B, DriftOptions{}), drift_compare(Device::Cuda, A, B, DriftOptions{}));
}

TEST(first_nan_agrees) {
  t::Rng rng(3);
  const int64_t n = 50000, d = 9;
  auto a = data(rng, n, d, 0.0f, 0);
  auto b = data(rng, n, d, 0.0f, 0);
  a[31337 * d + 4] = std::numeric_limits<float>::quiet_NaN();
  a[40000 * d + 1] = std::numeric_limits<float>::quiet_NaN();
  const FeatureMatrix A{a.data(), n, d}, B{b.data(), n, d};
  CHECK_THROWS(drift_compare(Device::Cuda, A, B, DriftOptions{}), ErrorKind::Range, "reference: row 31337, column 4 is NaN");
  auto st = drift_monitor_new(Device::Cpu, B, 10, 10);
  CHECK_THROWS(drift_monitor_update(Device::Cuda, A, st.data(), st.size()), ErrorKind::Range, "current: row 31337, column 4 is NaN");
}

TEST(monitor_states_identical) {
  t::Rng rng(4);
  for (int64_t d : {1, 7, 100}) {
    const int64_t n1 = 20011, n2 = 30011;
    const auto a = data(rng, n1, d, 0.0f, 8);
    const auto b = data(rng, n2, d, 0.01f, 8);
    for (int R : {1, 10}) {
      auto cpu = drift_monitor_new(Device::Cpu, FeatureMatrix{a.data(), n1, d}, 10, R);
      auto gpu = drift_monitor_new(Device::Cuda, FeatureMatrix{a.data(), n1, d}, 10, R);
      CHECK(cpu == gpu);
      drift_monitor_update(Device::Cpu, FeatureMatrix{b.data(), n2, d}, cpu.data(), cpu.size());
      drift_monitor_update(Device::Cuda, FeatureMatrix{b.data(), n2, d}, gpu.data(), gpu.size());
      CHECK(cpu == gpu);
    }
  }
}

}  // namespace

int main() {
  std::string why;
  if (!t::gpu_usable(&why)) {
    std::printf("SKIPPED drift_cuda_test: no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  return t::run_all("drift_cuda");
}
