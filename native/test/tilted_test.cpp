// Tilted weights (CPU backend) against a long-double reference, finite differences of the robust
// loss for the 'through' gradient, the eta -> 0 limit, stability at extreme eta, bad input.
#include <algorithm>

#include "core/tilted.h"
#include "cpu/simd.h"
#include "cpu/tilted_avx2.h"
#include "test_util.h"

using namespace calmoe;

namespace {

struct RefTilt {
  std::vector<long double> w;
  long double robust = 0, terml = 0;
};

RefTilt reference(const std::vector<float>& l, double eta) {
  RefTilt r;
  long double m = -INFINITY;
  for (float v : l) m = std::max(m, (long double)eta * v);
  long double s = 0;
  for (float v : l) s += std::exp((long double)eta * v - m);
  for (float v : l) r.w.push_back(std::exp((long double)eta * v - m) / s);
  for (std::size_t i = 0; i < l.size(); ++i) r.robust += r.w[i] * l[i];
  if (eta != 0) r.terml = (m + std::log(s / l.size())) / eta;
  return r;
}

// L(l) = sum_i softmax(eta l)_i l_i in long double, for finite differences.
long double robust_of(const std::vector<long double>& l, double eta) {
  long double m = -INFINITY, s = 0, sl = 0;
  for (auto v : l) m = std::max(m, eta * v);
  for (auto v : l) { const long double e = std::exp(eta * v - m); s += e; sl += e * v; }
  return sl / s;
}

TEST(weights_match_reference_any_sign_and_size_of_eta) {
  t::Rng rng(1);
  for (int64_t n : {1, 13, 128, 1977, 300007}) {
    std::vector<float> l(n);
    for (auto& v : l) v = float(-std::log(std::max(1e-9, rng.uniform())));
    for (double eta : {-50.0, -2.0, -0.5, 0.0, 1e-9, 0.5, 2.0, 50.0, 1e4}) {
      std::vector<float> w(n), c(n);
      const TiltedStats st = tilted_weights(Device::Cpu, l.data(), n, eta, TiltGradient::Through, w.data(), c.data());
      const RefTilt ref = reference(l, eta);
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        sum += w[i];
        CHECK_CLOSE(w[i], double(ref.w[i]), 1e-30, 2e-6);
        const long double coef = ref.w[i] * (1 + eta * (l[i] - ref.robust));
        CHECK_CLOSE(c[i], double(coef), 1e-12, 2e-5);
      }
      CHECK_CLOSE(sum, 1.0, 0, 1e-4);
      CHECK_CLOSE(st.robust_loss, double(ref.robust), 1e-12, 1e-10);
      if (eta != 0 && std::fabs(eta) > 1e-6) CHECK_CLOSE(st.tilted_erm, double(ref.terml), 1e-12, 1e-9);
    }
  }
}

TEST(eta_zero_is_uniform_and_recovers_the_mean) {
  std::vector<float> l = {0.1f, 2.0f, 3.5f, 0.0f, 7.25f};
  std::vector<float> w(5), c(5);
  const TiltedStats st = tilted_weights(Device::Cpu, l.data(), 5, 0.0, TiltGradient::Term, w.data(), c.data());
  for (int i = 0; i < 5; ++i) { CHECK_EQ(w[i], 0.2f); CHECK_EQ(c[i], 0.2f); }
  const double mean = (0.1f + 2.0 + 3.5 + 0.0 + 7.25) / 5;
  CHECK_CLOSE(st.robust_loss, mean, 0, 1e-15);
  CHECK_CLOSE(st.tilted_erm, mean, 0, 1e-15);
  CHECK_CLOSE(st.effective_rows, 5.0, 0, 1e-12);
  // continuity through the series branch down to tiny eta, both signs
  for (double eta : {1e-3, 1e-5, 1e-8, 1e-12, -1e-8}) {
    const TiltedStats s2 = tilted_weights(Device::Cpu, l.data(), 5, eta, TiltGradient::Term, nullptr, nullptr);
    CHECK_CLOSE(s2.tilted_erm, mean, 0, std::fabs(eta) * 20 + 1e-15);
    CHECK_CLOSE(s2.robust_loss, mean, 0, std::fabs(eta) * 30 + 1e-15);
  }
  // the series and the closed form agree where they meet
  const TiltedStats a = tilted_weights(Device::Cpu, l.data(), 5, 1.39e-4, TiltGradient::Term, nullptr, nullptr);
  const TiltedStats b = tilted_weights(Device::Cpu, l.data(), 5, 1.41e-4, TiltGradient::Term, nullptr, nullptr);
  CHECK_CLOSE(a.tilted_erm, b.tilted_erm, 0, 1e-5);
}

TEST(through_gradient_matches_finite_differences) {
  t::Rng rng(2);
  std::vector<float> l(13);
  for (auto& v : l) v = float(rng.uniform() * 3);
  for (double eta : {-1.5, 0.7, 2.0}) {
    std::vector<float> c(13);
    tilted_weights(Device::Cpu, l.data(), 13, eta, TiltGradient::Through, nullptr, c.data());
    std::vector<long double> ll(l.begin(), l.end());
    for (int j = 0; j < 13; ++j) {
      const long double h = 1e-6L;
      auto up = ll, dn = ll;
      up[j] += h;
      dn[j] -= h;
      const long double fd = (robust_of(up, eta) - robust_of(dn, eta)) / (2 * h);
      CHECK_CLOSE(c[j], double(fd), 1e-7, 1e-5);
    }
  }
}

TEST(extreme_eta_is_stable) {
  std::vector<float> l = {1.0f, 2.0f, 1000.0f, 3.0f};
  std::vector<float> w(4);
  const TiltedStats st = tilted_weights(Device::Cpu, l.data(), 4, 1e6, TiltGradient::Term, w.data(), nullptr);
  CHECK_EQ(w[2], 1.0f);
  CHECK_EQ(w[0], 0.0f);
  CHECK_CLOSE(st.robust_loss, 1000.0, 0, 1e-12);
  CHECK_CLOSE(st.effective_rows, 1.0, 0, 1e-12);
  const TiltedStats neg = tilted_weights(Device::Cpu, l.data(), 4, -1e6, TiltGradient::Term, w.data(), nullptr);
  CHECK_EQ(w[0], 1.0f);
  CHECK_CLOSE(neg.robust_loss, 1.0, 0, 1e-12);
}

// The AVX2 pass gives the scalar tilt::unnormalised's bits (fm::exp_f64 lane by lane), over the
// exponent's whole domain: normal results, subnormal ones, underflow to 0, overflow, NaN.
TEST(avx2_unnormalised_same_bits_as_scalar) {
  if (!cpu::use_avx2()) {
    std::printf("  info no AVX2 on this machine (or CALMOE_SIMD=scalar): nothing to compare\n");
    return;
  }
  t::Rng rng(3);
  std::vector<float> l;
  for (int i = 0; i < 200003; ++i) l.push_back(float(rng.uniform() * 1600 - 800));
  for (float v : {0.0f, -0.0f, 1.0f, 744.0f, 745.2f, 709.7f, 709.8f, 710.0f, -1e30f, 1e30f, INFINITY, -INFINITY, NAN}) l.push_back(v);
  for (double eta : {1.0, -1.0, 0.37}) {
    std::vector<double> got(l.size());
    cpu::avx2::tilt_unnormalised(l.data(), int64_t(l.size()), eta, 0.0, got.data());
    int64_t bad = 0;
    for (std::size_t i = 0; i < l.size(); ++i) {
      const double want = tilt::unnormalised(l[i], eta, 0.0);
      if (std::memcmp(&got[i], &want, sizeof want) != 0 && ++bad <= 3) std::printf("  l=%.9g eta=%g: avx2 %.17g scalar %.17g\n", double(l[i]), eta, got[i], want);
    }
    CHECK_EQ(bad, int64_t(0));
  }
}

TEST(bad_input) {
  std::vector<float> l = {1.0f, NAN, 2.0f};
  CHECK_THROWS(tilted_weights(Device::Cpu, l.data(), 3, 1.0, TiltGradient::Term, nullptr, nullptr), ErrorKind::Range, "losses[1] is not finite");
  l[1] = 0.5f;
  CHECK_THROWS(tilted_weights(Device::Cpu, l.data(), 3, INFINITY, TiltGradient::Term, nullptr, nullptr), ErrorKind::Range, "eta");
  CHECK_THROWS(tilted_weights(Device::Cpu, l.data(), 0, 1.0, TiltGradient::Term, nullptr, nullptr), ErrorKind::Range, "at least one");
}

}  // namespace

TEST_MAIN("tilted")
