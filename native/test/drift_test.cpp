// Drift (CPU backend) against naive references: the KS statistic by brute-force ECDFs, the exact
// two-sample null distribution by enumerating every arrangement, PSI by direct binning, BH by its
// O(m^2) definition; SciPy golden p-values; the monitor's exactness (merge = one shot, PSI equal to
// the batch PSI, histogram KS = max over the cut points <= exact D); threads; bad input.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/drift.h"
#include "core/ks_distribution.h"
#include "host/radix_sort.h"
#include "test_util.h"

using namespace calmoe;

namespace {

// ---- naive references ---------------------------------------------------------------------------

std::vector<float> column(const std::vector<float>& x, int64_t rows, int64_t cols, int64_t f) {
  std::vector<float> c(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) c[r] = x[r * cols + f];
  return c;
}

// max over pooled values v of (#a <= v) n2 - (#b <= v) n1 and its negative, by counting.
void ref_ks(const std::vector<float>& a, const std::vector<float>& b, int64_t* plus, int64_t* minus) {
  const int64_t n1 = int64_t(a.size()), n2 = int64_t(b.size());
  *plus = 0;
  *minus = 0;
  std::vector<float> pooled(a);
  pooled.insert(pooled.end(), b.begin(), b.end());
  for (float v : pooled) {
    int64_t i = 0, j = 0;
    for (float x : a) i += x <= v;
    for (float x : b) j += x <= v;
    *plus = std::max(*plus, i * n2 - j * n1);
    *minus = std::max(*minus, j * n1 - i * n2);
  }
}

// P(D >= h / lcm) by enumerating all C(n1 + n2, n1) arrangements of the two samples (tiny sizes).
double ref_exact_sf(int n1, int n2, int64_t h) {
  const int N = n1 + n2;
  int64_t total = 0, hit = 0;
  for (uint32_t mask = 0; mask < (1u << N); ++mask) {
    if (__builtin_popcount(mask) != n1) continue;
    ++total;
    int64_t i = 0, j = 0, best = 0;
    for (int s = 0; s < N; ++s) {
      if (mask & (1u << s)) ++i;
      else ++j;
      best = std::max<int64_t>(best, std::llabs(i * n2 - j * n1));
    }
    const int64_t g = std::gcd(n1, n2);
    if (best / g >= h) ++hit;
  }
  return double(hit) / double(total);
}

double ref_psi(const std::vector<float>& a, const std::vector<float>& b, int B, double eps, std::vector<float>* edges) {
  std::vector<float> s(a);
  std::sort(s.begin(), s.end());
  const int64_t n1 = int64_t(a.size()), n2 = int64_t(b.size());
  edges->clear();
  for (int k = 1; k < B; ++k) edges->push_back(s[(k * n1 + B - 1) / B - 1]);
  auto bin = [&](float v) {
    int c = 0;
    for (float e : *edges) c += e < v;  // right-closed bins
    return c;
  };
  std::vector<double> p(B, 0), q(B, 0);
  for (float v : a) p[bin(v)] += 1;
  for (float v : b) q[bin(v)] += 1;
  double psi = 0;
  for (int k = 0; k < B; ++k) {
    const double pp = p[k] ? p[k] / n1 : eps, qq = q[k] ? q[k] / n2 : eps;
    psi += (qq - pp) * std::log(qq / pp);
  }
  return psi;
}

std::vector<double> ref_bh(const std::vector<double>& p) {
  const int64_t m = int64_t(p.size());
  std::vector<int64_t> o(p.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return p[a] < p[b]; });
  std::vector<double> q(p.size());
  for (int64_t r = 0; r < m; ++r) {
    double best = 1.0;
    for (int64_t k = r; k < m; ++k) best = std::min(best, p[o[k]] * double(m) / double(k + 1));
    q[o[r]] = best;
  }
  return q;
}

// rows x cols; feature f has a shift of f * shift and (when ties) values rounded to a grid.
std::vector<float> data(t::Rng& rng, int64_t rows, int64_t cols, float shift, bool ties) {
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t f = 0; f < cols; ++f) {
      float v = rng.normal() + shift * float(f);
      if (ties) v = std::round(v * 2.0f) / 2.0f;
      x[r * cols + f] = v;
    }
  return x;
}

DriftReport compare(const std::vector<float>& a, int64_t n1, const std::vector<float>& b, int64_t n2, int64_t d, DriftOptions o = {}) {
  return drift_compare(Device::Cpu, FeatureMatrix{a.data(), n1, d}, FeatureMatrix{b.data(), n2, d}, o);
}

// ---- tests --------------------------------------------------------------------------------------

TEST(radix_sort_matches_std_sort) {
  t::Rng rng(1);
  for (std::size_t n : {0, 1, 255, 256, 1000, 100003}) {
    std::vector<uint32_t> k(n), tmp(n);
    for (auto& v : k) v = uint32_t(rng.g());
    if (n > 500) for (std::size_t i = 0; i < n; i += 3) k[i] &= 0xff00ffffu;  // skipped digit patterns
    std::vector<uint32_t> want(k);
    std::sort(want.begin(), want.end());
    cpu::radix_sort_u32(k.data(), tmp.data(), n);
    CHECK(k == want);
  }
}

TEST(float_keys_order_like_values) {
  const float vals[] = {-INFINITY, -3e38f, -1.5f, -1e-45f, -0.0f, 0.0f, 1e-45f, 1e-3f, 2.0f, 3e38f, INFINITY};
  for (float a : vals)
    for (float b : vals) {
      CHECK((drift::key_of(a) < drift::key_of(b)) == (a < b));
      CHECK((drift::key_of(a) == drift::key_of(b)) == (a == b));
    }
  for (float a : vals) CHECK(drift::value_of(drift::key_of(a)) == a);
}

TEST(ks_statistic_matches_brute_force) {
  uint64_t seed = 10;
  for (int64_t n1 : {1, 2, 13, 200, 1977})
    for (int64_t n2 : {1, 7, 200, 513}) {
      for (bool ties : {false, true}) {
        t::Rng rng(seed++);
        const int64_t d = 5;
        const auto a = data(rng, n1, d, 0.0f, ties);
        const auto b = data(rng, n2, d, 0.2f, ties);
        const DriftReport r = compare(a, n1, b, n2, d);
        for (int64_t f = 0; f < d; ++f) {
          int64_t plus = 0, minus = 0;
          ref_ks(column(a, n1, d, f), column(b, n2, d, f), &plus, &minus);
          const int64_t num = std::max(plus, minus);
          CHECK_CLOSE(r.statistic[f], double(num) / double(n1 * n2), 0, 1e-15);
          CHECK_EQ(int(r.sign[f]), minus > plus ? -1 : 1);
          CHECK(r.p_value[f] >= 0.0 && r.p_value[f] <= 1.0);
        }
      }
    }
}

TEST(ks_scipy_examples) {
  // scipy.stats.ks_2samp([1,2,3], [4,5,6,7]): D = 1, p = 0.05714285714285715, sign +1
  {
    const std::vector<float> a{1, 2, 3}, b{4, 5, 6, 7};
    const DriftReport r = compare(a, 3, b, 4, 1);
    CHECK_CLOSE(r.statistic[0], 1.0, 0, 0);
    CHECK_CLOSE(r.p_value[0], 0.05714285714285715, 1e-15, 1e-12);
    CHECK_EQ(int(r.sign[0]), 1);
  }
  // ks_2samp([0.5,1,1,2,3,3,3], [1,2,2,4]): D = 0.25, p = 0.9878787878787879 (ties)
  {
    const std::vector<float> a{0.5f, 1, 1, 2, 3, 3, 3}, b{1, 2, 2, 4};
    const DriftReport r = compare(a, 7, b, 4, 1);
    CHECK_CLOSE(r.statistic[0], 0.25, 0, 0);
    CHECK_CLOSE(r.p_value[0], 0.9878787878787879, 1e-15, 1e-12);
  }
  // all equal: D = 0, p = 1
  {
    const std::vector<float> a{1, 1, 1}, b{1, 1};
    const DriftReport r = compare(a, 3, b, 2, 1);
    CHECK_EQ(r.statistic[0], 0.0);
    CHECK_EQ(r.p_value[0], 1.0);
    CHECK_CLOSE(r.psi[0], 0.0, 0, 0);
  }
}

TEST(pvalues_match_scipy) {
  struct G {
    double d;
    int64_t n1, n2;
    KsMethod m;
    double want;
  };
  // scipy 1.17.1: _attempt_exact_2kssamp (exact) and kstwo.sf(d, round(n1 n2 / (n1 + n2))) (asymp)
  const G cases[] = {
      {0.3, 100, 120, KsMethod::Exact, 7.9030910666967786e-05},
      {0.05, 1000, 1000, KsMethod::Exact, 0.16411447756429137},
      {0.02, 20000, 30000, KsMethod::Asymp, 0.00013357286372337897},
      {0.5, 3, 20000, KsMethod::Asymp, 0.33333333333333331},
      {0.01, 1000000, 1000000, KsMethod::Asymp, 7.374635645083527e-44},
      {0.0015, 1000000, 1000000, KsMethod::Asymp, 0.21034190155828947},
      {0.002, 3000000, 2500000, KsMethod::Asymp, 3.6533745380668542e-05},
      {0.9, 7, 11, KsMethod::Exact, 0.00050276520864756165},
      {1.0, 10000, 9999, KsMethod::Exact, 0},
      {0.1, 500, 700, KsMethod::Asymp, 0.0053950051602943763},
      {0.2, 50, 60, KsMethod::Asymp, 0.201181711792772},
  };
  for (const G& g : cases) {
    const KsPValue p = ks_2samp_pvalue(g.d, g.n1, g.n2, g.m);
    CHECK(p.method == g.m);
    CHECK_CLOSE(p.p_value, g.want, 1e-300, 1e-8);
    if (g.n1 <= 10000 && g.n2 <= 10000) CHECK(ks_2samp_pvalue(g.d, g.n1, g.n2, KsMethod::Auto).method == KsMethod::Exact);
    else CHECK(ks_2samp_pvalue(g.d, g.n1, g.n2, KsMethod::Auto).method == KsMethod::Asymp);
  }
  // SciPy's 'exact' switches to 'asymp' when lcm(n1, n2) does not fit an int32
  CHECK(ks_2samp_pvalue(0.01, 100003, 100019, KsMethod::Exact).method == KsMethod::Asymp);
  CHECK(ks_2samp_pvalue(0.01, 200000, 200000, KsMethod::Exact).method == KsMethod::Exact);
  // calmoe's own limit: more than 4e9 lattice cells (lcm 100000 fits an int32, the band does not)
  CHECK(ks_2samp_pvalue(0.5, 100000, 50000, KsMethod::Exact).method == KsMethod::Asymp);
  CHECK(ks_2samp_pvalue(0.002, 100000, 50000, KsMethod::Exact).method == KsMethod::Exact);
  // SciPy's fallback when the equal-size closed form rounds above 1: n = 7, D = 1/7
  const KsPValue q = ks_2samp_pvalue(1.0 / 7, 7, 7, KsMethod::Auto);
  CHECK(q.method == KsMethod::Asymp);
  CHECK_CLOSE(q.p_value, 0.9999609537692629, 0, 1e-12);  // kstwo.sf(1/7, 4), what ks_2samp returns
  CHECK(ks_2samp_pvalue(2.0 / 7, 7, 7, KsMethod::Auto).method == KsMethod::Exact);
}

TEST(exact_null_distribution_matches_enumeration) {
  for (int n1 = 1; n1 <= 9; ++n1)
    for (int n2 = 1; n2 <= 9; ++n2) {
      const int64_t lcm = int64_t(n1) * n2 / std::gcd(n1, n2);
      for (int64_t h = 0; h <= lcm; ++h) {
        const double want = ref_exact_sf(n1, n2, h);
        CHECK_CLOSE(ks::two_sample_exact_sf(n1, n2, h), want, 1e-14, 1e-12);
      }
    }
  // tiny p-values keep their relative precision: D = 1 has p = 2 / C(n1 + n2, n1)
  CHECK_CLOSE(ks::two_sample_exact_sf(30, 30, 30), 2.0 / 118264581564861424.0, 0, 1e-12);
  CHECK_CLOSE(ks::two_sample_exact_sf(30, 31, 930), 2.0 / 232714176627630544.0, 0, 1e-12);
}

TEST(one_sample_distribution_sanity) {
  for (int64_t n : {1, 2, 5, 50, 140, 141, 1000, 100000, 100001, 2000000}) {
    double prev = 1.0;
    for (int k = 0; k <= 400; ++k) {
      const double x = k / 400.0;
      const double p = ks::kolmogorov_sf(n, x);
      CHECK(p >= 0.0 && p <= 1.0);
      CHECK(p <= prev + 1e-12);  // non-increasing
      prev = p;
    }
    CHECK_EQ(ks::kolmogorov_sf(n, 1.0), 0.0);
    CHECK_EQ(ks::kolmogorov_sf(n, 0.0), 1.0);
  }
  // kstwo.sf values from SciPy 1.17.1
  CHECK_CLOSE(ks::kolmogorov_sf(10, 0.3), 0.27053557479999946, 0, 1e-10);
  CHECK_CLOSE(ks::kolmogorov_sf(100, 0.1), 0.2526927570063874, 0, 1e-10);
  CHECK_CLOSE(ks::kolmogorov_sf(1000, 0.03), 0.3226902143914636, 0, 1e-9);
  CHECK_CLOSE(ks::kolmogorov_sf(200000, 0.002), 0.39995085369038097, 0, 1e-9);
  // n = 1: D_1 = max(U, 1 - U) >= x with probability 2 (1 - x) for x >= 1/2
  CHECK_CLOSE(ks::kolmogorov_sf(1, 0.7), 0.6, 1e-15, 0);
}

TEST(smirnov_truncated_sum_equals_full_sum) {
  for (int64_t n : {100, 1000, 20000, 500000})
    for (double z : {0.3, 1.0, 1.49, 2.2, 4.0, 10.0}) {
      const double x = z / std::sqrt(double(n));
      CHECK_CLOSE(ks::smirnov_sf(n, x), ks::smirnov_sf_full(n, x), 1e-300, 1e-12);
    }
  // closed forms at the ends: x <= 1/n and x >= 1 - 1/n
  CHECK_CLOSE(ks::smirnov_sf(10, 0.05), 1.0 - 0.05 * std::pow(1.05, 9), 1e-15, 0);
  CHECK_CLOSE(ks::smirnov_sf(10, 0.95), std::pow(0.05, 10), 0, 1e-12);
}

TEST(psi_matches_naive_binning) {
  uint64_t seed = 40;
  for (int64_t n1 : {1, 9, 10, 11, 1000, 4099})
    for (int64_t n2 : {1, 500, 3001})
      for (int B : {1, 2, 10, 17})
        for (bool ties : {false, true}) {
          t::Rng rng(seed++);
          const int64_t d = 3;
          const auto a = data(rng, n1, d, 0.0f, ties);
          const auto b = data(rng, n2, d, 0.3f, ties);
          DriftOptions o;
          o.psi_bins = B;
          const DriftReport r = compare(a, n1, b, n2, d, o);
          CHECK_EQ(r.psi_bins, B);
          for (int64_t f = 0; f < d; ++f) {
            std::vector<float> edges;
            const double want = ref_psi(column(a, n1, d, f), column(b, n2, d, f), B, 1e-4, &edges);
            CHECK_CLOSE(r.psi[f], want, 1e-12, 1e-10);
            for (int k = 0; k + 1 < B; ++k) CHECK(r.psi_edges[f * (B - 1) + k] == edges[k]);
            uint64_t sr = 0, sc = 0;
            for (int k = 0; k < B; ++k) {
              sr += r.psi_reference_counts[f * B + k];
              sc += r.psi_current_counts[f * B + k];
            }
            CHECK_EQ(sr, uint64_t(n1));
            CHECK_EQ(sc, uint64_t(n2));
          }
        }
}

TEST(psi_reference_bins_hold_equal_mass) {
  t::Rng rng(5);
  const int64_t n = 1000, d = 2;
  const auto a = data(rng, n, d, 0.0f, false);
  DriftOptions o;
  const DriftReport r = compare(a, n, a, n, d, o);
  for (int64_t f = 0; f < d; ++f) {
    CHECK_EQ(r.psi[f], 0.0);
    CHECK_EQ(r.statistic[f], 0.0);
    CHECK_EQ(r.p_value[f], 1.0);
    for (int k = 0; k < 10; ++k) CHECK_EQ(r.psi_reference_counts[f * 10 + k], uint64_t(100));
  }
}

TEST(special_values_constant_features_and_zeros) {
  // -0 and +0 tie; +-Inf are ordinary extreme values; constant features
  const std::vector<float> a{-0.0f, 1, INFINITY, 5, 5};
  const std::vector<float> b{0.0f, -INFINITY, 5, 5};
  int64_t plus, minus;
  ref_ks(a, b, &plus, &minus);
  const DriftReport r = compare(a, 5, b, 4, 1);
  CHECK_CLOSE(r.statistic[0], double(std::max(plus, minus)) / 20.0, 0, 1e-15);
  const std::vector<float> c(50, 3.0f), e(40, 3.0f), g(40, 4.0f);
  const DriftReport same = compare(c, 50, e, 40, 1);
  CHECK_EQ(same.statistic[0], 0.0);
  CHECK_EQ(same.p_value[0], 1.0);
  CHECK_EQ(same.psi[0], 0.0);
  const DriftReport moved = compare(c, 50, g, 40, 1);
  CHECK_EQ(moved.statistic[0], 1.0);
  CHECK(moved.p_value[0] < 1e-20);
  CHECK_EQ(int(moved.sign[0]), 1);  // F_ref above F_cur: the reference is smaller
  CHECK(moved.psi[0] > 10.0);       // (1 - eps) ln(1 / eps) + (eps - 1) ln(eps / 1) ~ 18.4
}

TEST(corrections_match_definitions) {
  t::Rng rng(7);
  for (int m : {1, 2, 5, 37, 200}) {
    std::vector<double> p(m);
    for (auto& v : p) v = rng.uniform() < 0.3 ? rng.uniform() * 1e-3 : rng.uniform();
    if (m > 3) p[1] = p[2];  // a tie
    const auto bh = adjust_pvalues(p.data(), m, PCorrection::BH);
    const auto want = ref_bh(p);
    double cm = 0;
    for (int i = 1; i <= m; ++i) cm += 1.0 / i;
    const auto by = adjust_pvalues(p.data(), m, PCorrection::BY);
    const auto bo = adjust_pvalues(p.data(), m, PCorrection::Bonferroni);
    const auto none = adjust_pvalues(p.data(), m, PCorrection::None);
    for (int i = 0; i < m; ++i) {
      CHECK_CLOSE(bh[i], want[i], 0, 1e-14);
      CHECK(bh[i] >= p[i]);
      CHECK_CLOSE(by[i], std::min(1.0, ref_bh(p)[i] * cm), 0, 1e-14);
      CHECK_CLOSE(bo[i], std::min(1.0, p[i] * m), 0, 1e-15);
      CHECK_EQ(none[i], p[i]);
    }
  }
  // scipy.stats.false_discovery_control([0.01, 0.04, 0.03, 0.5]) = [0.04, 0.0533.., 0.0533.., 0.5]
  const double p[] = {0.01, 0.04, 0.03, 0.5};
  const auto q = adjust_pvalues(p, 4, PCorrection::BH);
  CHECK_CLOSE(q[0], 0.04, 0, 1e-15);
  CHECK_CLOSE(q[1], 0.04 * 4 / 3, 0, 1e-15);
  CHECK_CLOSE(q[2], 0.04 * 4 / 3, 0, 1e-15);
  CHECK_CLOSE(q[3], 0.5, 0, 1e-15);
  const double bad[] = {0.5, 1.5};
  CHECK_THROWS(adjust_pvalues(bad, 2, PCorrection::BH), ErrorKind::Range, "pValues[1] = 1.5");
}

TEST(report_order_and_flags) {
  t::Rng rng(8);
  const int64_t n = 400, d = 6;
  const auto a = data(rng, n, d, 0.0f, false);
  const auto b = data(rng, n, d, 0.15f, false);  // feature f shifted by 0.15 f
  DriftOptions o;
  o.alpha = 0.01;
  const DriftReport r = compare(a, n, b, n, d, o);
  for (int64_t k = 0; k + 1 < d; ++k) {
    const int64_t x = r.order[k], y = r.order[k + 1];
    CHECK(r.adjusted_p_value[x] < r.adjusted_p_value[y] ||
          (r.adjusted_p_value[x] == r.adjusted_p_value[y] && r.statistic[x] >= r.statistic[y]));
  }
  for (int64_t f = 0; f < d; ++f) CHECK_EQ(int(r.drifted[f]), r.adjusted_p_value[f] <= 0.01 ? 1 : 0);
  CHECK_EQ(r.order[0], d - 1);  // the largest shift is the most severe
  CHECK_EQ(int(r.drifted[d - 1]), 1);
}

TEST(threads_do_not_change_results) {
  t::Rng rng(9);
  const int64_t n1 = 30011, n2 = 20011, d = 37;
  const auto a = data(rng, n1, d, 0.0f, true);
  const auto b = data(rng, n2, d, 0.01f, true);
  const int before = cpu_threads();
  set_cpu_threads(1);
  const DriftReport one = compare(a, n1, b, n2, d);
  set_cpu_threads(3);
  const DriftReport three = compare(a, n1, b, n2, d);
  set_cpu_threads(before);
  CHECK(one.statistic == three.statistic);
  CHECK(one.p_value == three.p_value);
  CHECK(one.psi == three.psi);
  CHECK(one.psi_current_counts == three.psi_current_counts);
  CHECK(one.order == three.order);
}

TEST(monitor_merge_equals_one_shot_and_matches_batch_psi) {
  t::Rng rng(11);
  const int64_t n1 = 5003, d = 4;
  const auto ref = data(rng, n1, d, 0.0f, false);
  const auto cur = data(rng, 3000, d, 0.05f, true);
  for (int R : {1, 4, 10}) {
    auto one = drift_monitor_new(Device::Cpu, FeatureMatrix{ref.data(), n1, d}, 10, R);
    drift_monitor_update(Device::Cpu, FeatureMatrix{cur.data(), 3000, d}, one.data(), one.size());
    auto merged = drift_monitor_empty_like(one.data(), one.size());
    int64_t at = 0;
    for (int64_t len : {1, 999, 0, 1500, 500}) {
      auto w = drift_monitor_empty_like(one.data(), one.size());
      drift_monitor_update(Device::Cpu, FeatureMatrix{cur.data() + at * d, len, d}, w.data(), w.size());
      drift_monitor_merge(merged.data(), merged.size(), w.data(), w.size());
      at += len;
    }
    CHECK_EQ(at, int64_t(3000));
    // identical counts (chunk counters differ: 1 vs 4 non-empty chunks)
    CHECK(std::equal(one.begin() + driftmon::kHeaderWords, one.end(), merged.begin() + driftmon::kHeaderWords));
    DriftOptions o;
    const DriftReport m = drift_monitor_report(merged.data(), merged.size(), o);
    const DriftReport b = compare(ref, n1, cur, 3000, d, o);
    CHECK(m.histogram);
    for (int64_t f = 0; f < d; ++f) {
      CHECK_EQ(m.psi[f], b.psi[f]);  // exactly the batch PSI
      for (int k = 0; k < 9; ++k) CHECK(m.psi_edges[f * 9 + k] == b.psi_edges[f * 9 + k]);
      CHECK(m.psi_current_counts == b.psi_current_counts);
      CHECK(m.statistic[f] <= b.statistic[f] + 1e-15);  // a lower bound on D
      // equals the brute-force max over the fine cut points
      std::vector<float> rc = column(ref, n1, d, f), cc = column(cur, 3000, d, f), s(rc);
      std::sort(s.begin(), s.end());
      const int64_t F = 10 * R;
      double best = 0;
      for (int64_t k = 1; k < F; ++k) {
        const float c = s[(k * n1 + F - 1) / F - 1];
        double fr = 0, fc = 0;
        for (float v : rc) fr += v <= c;
        for (float v : cc) fc += v <= c;
        best = std::max(best, std::fabs(fr / n1 - fc / 3000.0));
      }
      CHECK_CLOSE(m.statistic[f], best, 1e-15, 1e-12);
      CHECK(m.p_value[f] >= b.p_value[f] - 1e-12);  // conservative
    }
  }
}

TEST(monitor_bad_input_and_state) {
  t::Rng rng(12);
  const auto ref = data(rng, 100, 3, 0.0f, false);
  auto st = drift_monitor_new(Device::Cpu, FeatureMatrix{ref.data(), 100, 3}, 10, 2);
  DriftOptions o;
  CHECK_THROWS(drift_monitor_report(st.data(), st.size(), o), ErrorKind::Range, "the window is empty");
  auto cur = data(rng, 20, 3, 0.0f, false);
  cur[7 * 3 + 2] = std::numeric_limits<float>::quiet_NaN();
  const auto before = st;
  CHECK_THROWS(drift_monitor_update(Device::Cpu, FeatureMatrix{cur.data(), 20, 3}, st.data(), st.size()), ErrorKind::Range,
               "current: row 7, column 2 is NaN");
  CHECK(st == before);  // all or nothing
  CHECK_THROWS(drift_monitor_update(Device::Cpu, FeatureMatrix{cur.data(), 10, 2}, st.data(), st.size()), ErrorKind::Range,
               "has 2 columns (features) but the monitor's reference has 3");
  drift_monitor_update(Device::Cpu, FeatureMatrix{cur.data(), 0, 3}, st.data(), st.size());  // empty chunk: no-op
  CHECK(st == before);
  // different references do not merge
  const auto ref2 = data(rng, 100, 3, 0.0f, false);
  auto other = drift_monitor_new(Device::Cpu, FeatureMatrix{ref2.data(), 100, 3}, 10, 2);
  CHECK_THROWS(drift_monitor_merge(st.data(), st.size(), other.data(), other.size()), ErrorKind::Range, "different references");
  auto other_bins = drift_monitor_new(Device::Cpu, FeatureMatrix{ref.data(), 100, 3}, 5, 2);
  CHECK_THROWS(drift_monitor_merge(st.data(), st.size(), other_bins.data(), other_bins.size()), ErrorKind::Range, "monitors differ");
  // corrupt states
  auto bad = st;
  bad[0] ^= 1;
  CHECK_THROWS(drift_monitor_config(bad.data(), bad.size()), ErrorKind::Range, "bad header");
  bad = st;
  bad[driftmon::kHeaderWords + 19 * 3 + 5] += 1;  // a reference count
  CHECK_THROWS(drift_monitor_config(bad.data(), bad.size()), ErrorKind::Range, "do not add up");
  CHECK_THROWS(drift_monitor_config(st.data(), st.size() - 1), ErrorKind::Range, "length");
  CHECK_THROWS(drift_monitor_new(Device::Cpu, FeatureMatrix{ref.data(), 100, 3}, 1000, 1000), ErrorKind::Range, "bins x refinement");
  // reset
  auto ok = data(rng, 20, 3, 0.0f, false);
  drift_monitor_update(Device::Cpu, FeatureMatrix{ok.data(), 20, 3}, st.data(), st.size());
  CHECK_EQ(drift_monitor_config(st.data(), st.size()).current_rows, uint64_t(20));
  drift_monitor_reset(st.data(), st.size());
  CHECK(st == before);
}

TEST(compare_bad_input) {
  const std::vector<float> a{1, 2, 3, 4, 5, 6}, b{1, 2, 3, 4};
  CHECK_THROWS(drift_compare(Device::Cpu, FeatureMatrix{a.data(), 3, 2}, FeatureMatrix{b.data(), 1, 4}, DriftOptions{}), ErrorKind::Range,
               "current: has 4 columns (features) but reference has 2");
  CHECK_THROWS(drift_compare(Device::Cpu, FeatureMatrix{a.data(), 0, 2}, FeatureMatrix{b.data(), 2, 2}, DriftOptions{}), ErrorKind::Range,
               "reference: expected at least one row");
  CHECK_THROWS(drift_compare(Device::Cpu, FeatureMatrix{a.data(), 3, 2}, FeatureMatrix{b.data(), 0, 2}, DriftOptions{}), ErrorKind::Range,
               "current: expected at least one row");
  std::vector<float> nan(a);
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS(compare(nan, 3, b, 2, 2), ErrorKind::Range, "reference: row 1, column 1 is NaN");
  std::vector<float> nb(b);
  nb[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS(compare(a, 3, nb, 2, 2), ErrorKind::Range, "current: row 1, column 0 is NaN");
  DriftOptions o;
  o.psi_bins = 0;
  o.ks = false;
  CHECK_THROWS(compare(a, 3, b, 2, 2, o), ErrorKind::Range, "bins");
  o = DriftOptions{};
  o.psi_epsilon = 0;
  CHECK_THROWS(compare(a, 3, b, 2, 2, o), ErrorKind::Range, "epsilon");
  o = DriftOptions{};
  o.alpha = 2;
  CHECK_THROWS(compare(a, 3, b, 2, 2, o), ErrorKind::Range, "alpha");
  CHECK_THROWS(ks_2samp_pvalue(1.5, 3, 4, KsMethod::Auto), ErrorKind::Range, "statistic");
  CHECK_THROWS(ks_2samp_pvalue(0.5, 0, 4, KsMethod::Auto), ErrorKind::Range, "n1, n2");
}

}  // namespace

TEST_MAIN("drift")
