// Temperature-scaling NLL (CPU backend): a long-double reference on odd sizes, both inputs,
// weights and strided views; derivatives against finite differences; the same bits for any thread
// count; a single sign change of the derivative; recovery of a known temperature; bad input.
#include <algorithm>
#include <numeric>

#include "core/temperature.h"
#include "test_util.h"

using namespace calmoe;

namespace {

struct Ref {
  long double w = 0, l = 0, d1 = 0, d2 = 0;
};

// sum_i w_i l_i(T) in long double, straight from the definition (softmax of t / T).
long double ref_row_loss(const float* row, int64_t C, int32_t y, long double T, bool probs) {
  std::vector<long double> t(C);
  for (int64_t j = 0; j < C; ++j) {
    if (!probs) t[j] = row[j];
    else if (j == y) t[j] = std::log(std::max<long double>(row[j], 1e-12L));
    else t[j] = row[j] > 0 ? std::log((long double)row[j]) : -INFINITY;
  }
  long double m = -INFINITY;
  for (auto v : t) m = std::max(m, v / T);
  long double s = 0;
  for (auto v : t) if (v != -INFINITY) s += std::exp(v / T - m);
  return std::log(s) + m - t[y] / T;
}

long double ref_loss(const std::vector<float>& z, int64_t N, int64_t C, int64_t stride, const std::vector<int32_t>& y,
                     const std::vector<float>* w, long double T, bool probs) {
  long double s = 0;
  for (int64_t i = 0; i < N; ++i) {
    const long double wi = w ? (*w)[i] : 1.0L;
    if (wi == 0) continue;
    s += wi * ref_row_loss(z.data() + i * stride, C, y[i], T, probs);
  }
  return s;
}

TemperatureEval eval(const std::vector<float>& z, int64_t N, int64_t C, const std::vector<int32_t>& y, double T,
                     ScoreKind kind = ScoreKind::Logits, const std::vector<float>* w = nullptr, int64_t stride = 0) {
  TemperatureArg a;
  a.scores = z.data();
  a.rows = N;
  a.cols = C;
  a.row_stride = stride;
  a.kind = kind;
  a.labels = y.data();
  a.weights = w ? w->data() : nullptr;
  return temperature_nll(Device::Cpu, a, T);
}

std::vector<float> random_logits(t::Rng& r, int64_t N, int64_t C, float sd) {
  std::vector<float> z(static_cast<std::size_t>(N * C));
  for (auto& v : z) v = r.normal(sd);
  return z;
}

TEST(matches_long_double_reference_and_finite_differences) {
  t::Rng rng(1);
  for (int64_t N : {1, 13, 1977}) {
    for (int64_t C : {1, 2, 3, 10, 33}) {
      const auto z = random_logits(rng, N, C, 2.0f);
      const auto p = t::random_probs(rng, N, C, 2.0f);
      const auto y = t::random_labels(rng, N, C);
      std::vector<float> w(N);
      for (auto& v : w) v = float(rng.uniform() < 0.2 ? 0.0 : rng.uniform() * 3);
      for (bool probs : {false, true}) {
        const auto& s = probs ? p : z;
        const ScoreKind kind = probs ? ScoreKind::Probabilities : ScoreKind::Logits;
        for (const std::vector<float>* wp : {(const std::vector<float>*)nullptr, (const std::vector<float>*)&w}) {
          for (double T : {0.05, 0.5, 1.0, 1.7, 20.0}) {
            const TemperatureEval e = eval(s, N, C, y, T, kind, wp);
            const long double lr = ref_loss(s, N, C, C, y, wp, T, probs);
            CHECK_CLOSE(e.nll, double(lr), 1e-9, 1e-11);
            // derivatives in s = log T by central differences of the long-double reference
            const long double h = 1e-4L;
            const long double up = ref_loss(s, N, C, C, y, wp, T * std::exp(h), probs);
            const long double dn = ref_loss(s, N, C, C, y, wp, T * std::exp(-h), probs);
            const long double fd1 = (up - dn) / (2 * h);
            const long double fd2 = (up - 2 * lr + dn) / (h * h);
            const double scale = std::max(1.0, std::fabs(double(lr)));
            CHECK_CLOSE(e.d1, double(fd1), 1e-6 * scale, 1e-6);
            CHECK_CLOSE(e.d2, double(fd2), 1e-4 * scale, 1e-4);
            // d1 is also the derivative of the op's own loss
            const TemperatureEval eu = eval(s, N, C, y, T * std::exp(1e-5), kind, wp);
            const TemperatureEval ed = eval(s, N, C, y, T * std::exp(-1e-5), kind, wp);
            CHECK_CLOSE(e.d1, (eu.nll - ed.nll) / 2e-5, 1e-6 * scale, 1e-5);
            CHECK_CLOSE(e.d2, (eu.d1 - ed.d1) / 2e-5, 1e-6 * scale, 1e-5);
            double wsum = 0;
            int64_t rows = 0;
            for (int64_t i = 0; i < N; ++i) {
              wsum += wp ? w[i] : 1.0;
              rows += (wp ? w[i] > 0 : true) ? 1 : 0;
            }
            CHECK_CLOSE(e.weight, wsum, 1e-9, 1e-12);
            CHECK_EQ(e.rows, rows);
          }
        }
      }
    }
  }
}

TEST(strided_view_equals_a_copy) {
  // expert k of a B x K x C tensor: stride K*C, offset k*C
  t::Rng rng(2);
  const int64_t B = 1977, K = 3, C = 7;
  const auto z = random_logits(rng, B * K, C, 1.5f);
  const auto y = t::random_labels(rng, B, C);
  for (int64_t k = 0; k < K; ++k) {
    std::vector<float> copy(B * C);
    for (int64_t i = 0; i < B; ++i) std::copy_n(z.data() + (i * K + k) * C, C, copy.data() + i * C);
    TemperatureArg a;
    a.scores = z.data() + k * C;
    a.rows = B;
    a.cols = C;
    a.row_stride = K * C;
    a.labels = y.data();
    const TemperatureEval v = temperature_nll(Device::Cpu, a, 1.3);
    const TemperatureEval c = eval(copy, B, C, y, 1.3);
    CHECK_EQ(v.nll, c.nll);
    CHECK_EQ(v.d1, c.d1);
    CHECK_EQ(v.d2, c.d2);
  }
}

TEST(probabilities_are_scaled_logits) {
  // softmax(log softmax(z) / T) = softmax(z / T): the two inputs agree up to float32 rounding of p
  t::Rng rng(3);
  const int64_t N = 513, C = 5;
  const auto z = random_logits(rng, N, C, 1.0f);
  std::vector<float> p(N * C);
  for (int64_t i = 0; i < N; ++i) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < C; ++j) m = std::max(m, double(z[i * C + j]));
    for (int64_t j = 0; j < C; ++j) s += std::exp(double(z[i * C + j]) - m);
    for (int64_t j = 0; j < C; ++j) p[i * C + j] = float(std::exp(double(z[i * C + j]) - m) / s);
  }
  const auto y = t::random_labels(rng, N, C);
  for (double T : {0.3, 1.0, 4.0}) {
    const TemperatureEval a = eval(z, N, C, y, T);
    const TemperatureEval b = eval(p, N, C, y, T, ScoreKind::Probabilities);
    CHECK_CLOSE(b.nll, a.nll, 1e-6 * N, 1e-6);
    CHECK_CLOSE(b.d1, a.d1, 1e-6 * N, 1e-5);
    CHECK_CLOSE(b.d2, a.d2, 1e-6 * N, 1e-5);
  }
}

TEST(zero_probabilities_stay_zero_and_the_label_is_floored) {
  // p = (0.5, 0, 0.5): the zero class gets no mass at any T; NLL of class 0 is log 2 at every T
  std::vector<float> p = {0.5f, 0.0f, 0.5f};
  std::vector<int32_t> y = {0};
  for (double T : {0.1, 1.0, 10.0}) {
    const TemperatureEval e = eval(p, 1, 3, y, T, ScoreKind::Probabilities);
    CHECK_CLOSE(e.nll, std::log(2.0), 0, 1e-15);
    CHECK_CLOSE(e.d1, 0.0, 1e-15, 0);
  }
  // the labelled class with p = 0 is floored at 1e-12 (finite loss)
  std::vector<float> q = {1.0f, 0.0f};
  std::vector<int32_t> y1 = {1};
  const TemperatureEval e = eval(q, 1, 2, y1, 1.0, ScoreKind::Probabilities);
  CHECK_CLOSE(e.nll, -std::log(1e-12) + std::log1p(1e-12), 1e-9, 1e-12);
}

TEST(same_bits_for_any_thread_count) {
  t::Rng rng(4);
  const int64_t N = 100003, C = 10;
  const auto z = random_logits(rng, N, C, 3.0f);
  const auto y = t::random_labels(rng, N, C);
  std::vector<float> w(N);
  for (auto& v : w) v = float(rng.uniform());
  const int before = cpu_threads();
  std::vector<TemperatureEval> got;
  for (int threads : {1, 2, 3, 8}) {
    set_cpu_threads(threads);
    got.push_back(eval(z, N, C, y, 0.77, ScoreKind::Logits, &w));
  }
  set_cpu_threads(before);
  for (const auto& g : got) {
    CHECK_EQ(g.nll, got[0].nll);
    CHECK_EQ(g.d1, got[0].d1);
    CHECK_EQ(g.d2, got[0].d2);
    CHECK_EQ(g.weight, got[0].weight);
  }
}

TEST(derivative_changes_sign_once_in_log_t) {
  t::Rng rng(5);
  const int64_t N = 301, C = 4;
  const auto z = random_logits(rng, N, C, 2.0f);
  const auto y = t::random_labels(rng, N, C);
  int changes = 0;
  double prev = 0;
  for (double s = -5; s <= 5; s += 0.05) {
    const double d = eval(z, N, C, y, std::exp(s)).d1;
    if (s > -5 && ((prev < 0) != (d < 0))) ++changes;
    prev = d;
  }
  CHECK(changes <= 1);
}

// labels drawn from softmax(z / T0): the NLL minimiser in T is close to T0
TEST(recovers_a_known_temperature) {
  for (double T0 : {0.5, 1.0, 2.5}) {
    t::Rng rng(uint64_t(T0 * 100));
    const int64_t N = 40000, C = 6;
    const auto z = random_logits(rng, N, C, 2.0f);
    std::vector<int32_t> y(N);
    for (int64_t i = 0; i < N; ++i) {
      double m = -INFINITY, s = 0;
      for (int64_t j = 0; j < C; ++j) m = std::max(m, z[i * C + j] / T0);
      std::vector<double> q(C);
      for (int64_t j = 0; j < C; ++j) s += (q[j] = std::exp(z[i * C + j] / T0 - m));
      double u = rng.uniform() * s;
      y[i] = int32_t(C - 1);
      for (int64_t j = 0; j < C; ++j) if ((u -= q[j]) < 0) { y[i] = int32_t(j); break; }
    }
    // bisection on the sign of the derivative in log T
    double lo = std::log(0.01), hi = std::log(100.0);
    for (int it = 0; it < 60; ++it) {
      const double mid = 0.5 * (lo + hi);
      (eval(z, N, C, y, std::exp(mid)).d1 > 0 ? hi : lo) = mid;
    }
    const double T = std::exp(0.5 * (lo + hi));
    CHECK_CLOSE(T, T0, 0, 0.05);
  }
}

TEST(zero_weight_rows_are_not_read) {
  std::vector<float> z = {1.0f, 2.0f, NAN, NAN, 0.5f, -0.5f};
  std::vector<int32_t> y = {1, 99, 0};
  std::vector<float> w = {1.0f, 0.0f, 2.0f};
  const TemperatureEval e = eval(z, 3, 2, y, 1.0, ScoreKind::Logits, &w);
  CHECK_EQ(e.rows, int64_t(2));
  CHECK_CLOSE(e.weight, 3.0, 0, 0);
  std::vector<float> none = {0.0f, 0.0f, 0.0f};
  const TemperatureEval z0 = eval(z, 3, 2, y, 1.0, ScoreKind::Logits, &none);
  CHECK_EQ(z0.weight, 0.0);
  CHECK_EQ(z0.rows, int64_t(0));
}

TEST(apply_matches_a_softmax_of_scaled_scores) {
  t::Rng rng(7);
  for (int64_t N : {1, 13, 1977}) {
    for (int64_t C : {1, 3, 10}) {
      const auto z = random_logits(rng, N, C, 2.0f);
      auto p = t::random_probs(rng, N, C, 3.0f);
      if (C > 1) p[0] = 0.0f, p[1] = 1.0f - std::accumulate(p.begin() + 2, p.begin() + C, 0.0f);  // a zero probability
      for (bool probs : {false, true}) {
        const auto& s = probs ? p : z;
        for (double T : {0.2, 1.0, 3.0}) {
          TemperatureArg a;
          a.scores = s.data();
          a.rows = N;
          a.cols = C;
          a.kind = probs ? ScoreKind::Probabilities : ScoreKind::Logits;
          std::vector<float> out(N * C);
          temperature_apply(Device::Cpu, a, T, out.data());
          for (int64_t i = 0; i < N; ++i) {
            long double m = -INFINITY, sum = 0;
            std::vector<long double> t(C);
            for (int64_t j = 0; j < C; ++j) {
              const float v = s[i * C + j];
              t[j] = !probs ? (long double)v : (v > 0 ? std::log((long double)v) : -INFINITY);
              m = std::max(m, t[j] / T);
            }
            for (int64_t j = 0; j < C; ++j) sum += t[j] == -INFINITY ? 0 : std::exp(t[j] / T - m);
            for (int64_t j = 0; j < C; ++j) {
              const long double want = t[j] == -INFINITY ? 0 : std::exp(t[j] / T - m) / sum;
              CHECK_CLOSE(out[i * C + j], double(want), 1e-30, 1e-6);
              if (probs && s[i * C + j] == 0.0f) CHECK_EQ(out[i * C + j], 0.0f);
            }
          }
          if (probs && T == 1.0)
            for (int64_t k = 0; k < N * C; ++k) CHECK_CLOSE(out[k], s[k], 1e-7, 1e-6);
        }
      }
    }
  }
  // a strided view writes a dense result
  std::vector<float> z = {0.0f, 99.0f, 1.0f, 99.0f};
  TemperatureArg a;
  a.scores = z.data();
  a.rows = 2;
  a.cols = 1;
  a.row_stride = 2;
  std::vector<float> out(2);
  temperature_apply(Device::Cpu, a, 2.0, out.data());
  CHECK_EQ(out[0], 1.0f);
  CHECK_EQ(out[1], 1.0f);
  // bad rows are named like the NLL's
  std::vector<float> bad = {0.5f, 0.5f, 0.9f, 0.9f};
  a.scores = bad.data();
  a.row_stride = 0;
  a.cols = 2;
  a.kind = ScoreKind::Probabilities;
  CHECK_THROWS(temperature_apply(Device::Cpu, a, 1.0, out.data()), ErrorKind::Range, "scores: row 1 sums to 1.8");
  CHECK_THROWS(temperature_apply(Device::Cpu, a, 0.0, out.data()), ErrorKind::Range, "temperature");
}

TEST(bad_input) {
  std::vector<float> z = {1.0f, 2.0f, 0.5f, -0.5f};
  std::vector<int32_t> y = {1, 0};
  CHECK_THROWS(eval(z, 2, 2, y, 0.0), ErrorKind::Range, "temperature: expected a finite number > 0");
  CHECK_THROWS(eval(z, 2, 2, y, -1.0), ErrorKind::Range, "temperature");
  CHECK_THROWS(eval(z, 2, 2, y, INFINITY), ErrorKind::Range, "temperature");
  CHECK_THROWS(eval(z, 2, 2, y, NAN), ErrorKind::Range, "temperature");
  CHECK_THROWS(eval(z, 2, 2, y, 1e-320), ErrorKind::Range, "too small");
  CHECK_THROWS(eval(z, 0, 2, y, 1.0), ErrorKind::Range, "scores: expected at least one row");
  CHECK_THROWS(eval(z, 2, 2, y, 1.0, ScoreKind::Logits, nullptr, 1), ErrorKind::Range, "rowStride: 1 is less than the 2 columns");
  std::vector<int32_t> ybad = {1, 2};
  CHECK_THROWS(eval(z, 2, 2, ybad, 1.0), ErrorKind::Range, "labels[1] = 2 is outside [0, 2)");
  std::vector<float> zn = {1.0f, 2.0f, 0.5f, INFINITY};
  CHECK_THROWS(eval(zn, 2, 2, y, 1.0), ErrorKind::Range, "scores: row 1, column 1 is not finite");
  std::vector<float> p = {0.5f, 0.5f, 1.5f, -0.5f};
  CHECK_THROWS(eval(p, 2, 2, y, 1.0, ScoreKind::Probabilities), ErrorKind::Range, "scores: row 1, column 0 = 1.5 is not a probability");
  std::vector<float> ps = {0.5f, 0.5f, 0.7f, 0.7f};
  CHECK_THROWS(eval(ps, 2, 2, y, 1.0, ScoreKind::Probabilities), ErrorKind::Range, "scores: row 1 sums to 1.4");
  std::vector<float> w = {1.0f, -1.0f};
  CHECK_THROWS(eval(z, 2, 2, y, 1.0, ScoreKind::Logits, &w), ErrorKind::Range, "weights[1] = -1");
  w[1] = NAN;
  CHECK_THROWS(eval(z, 2, 2, y, 1.0, ScoreKind::Logits, &w), ErrorKind::Range, "weights[1]");
  TemperatureArg a;
  a.scores = z.data();
  a.rows = 2;
  a.cols = 2;
  a.labels = y.data();
  a.name = "expertLogits[:, 1, :]";
  a.sum_tolerance = 2;
  CHECK_THROWS(temperature_nll(Device::Cpu, a, 1.0), ErrorKind::Range, "sumTolerance");
  a.sum_tolerance = 1e-3;
  a.scores = zn.data();
  CHECK_THROWS(temperature_nll(Device::Cpu, a, 1.0), ErrorKind::Range, "expertLogits[:, 1, :]: row 1, column 1");
#if !CALMOE_WITH_CUDA
  CHECK_THROWS(temperature_nll(Device::Cuda, a, 1.0), ErrorKind::Unavailable, "no CUDA backend");
#endif
}

}  // namespace

TEST_MAIN("temperature")
