// CPU backend of the tilted weights: two passes over the losses, each sum in the tree of runs
// that core/tilted.h fixes (the same bits for any thread count, and as the CUDA backend's).
#include <algorithm>
#include <vector>

#include "core/tilted.h"
#include "cpu/simd.h"
#include "host/thread_pool.h"
#include "cpu/tilted_avx2.h"

namespace calmoe::cpu {
namespace {

using tilt::kRun;

// The levels above the runs: kRun partials at a time, in order, until one is left.
double fold(std::vector<double> v) {
  while (v.size() > 1) {
    const std::size_t m = (v.size() + kRun - 1) / kRun;
    for (std::size_t g = 0; g < m; ++g) {
      double s = 0;
      for (std::size_t i = g * kRun, e = std::min(v.size(), i + kRun); i < e; ++i) s += v[i];
      v[g] = s;
    }
    v.resize(m);
  }
  return v.empty() ? 0.0 : v[0];
}

// body(run, begin, end) for every run of kRun losses, kRun runs per task.
template <class Body>
void for_runs(int64_t n, int64_t runs, Body&& body) {
  parallel_for((runs + kRun - 1) / kRun, [&](int64_t task, int) {
    for (int64_t r = task * kRun, re = std::min(runs, r + kRun); r < re; ++r) body(r, r * kRun, std::min(n, (r + 1) * kRun));
  });
}

// e_i = exp(eta l_i - max) of one run (at most kRun losses), four at a time with AVX2 (same bits).
void unnormalised_run(const float* l, int64_t n, double eta, double max_scaled, double* u) {
  if (use_avx2()) return avx2::tilt_unnormalised(l, n, eta, max_scaled, u);
  for (int64_t i = 0; i < n; ++i) u[i] = tilt::unnormalised(l[i], eta, max_scaled);
}

}  // namespace

tilt::Sums tilted_reduce(const float* l, int64_t n, double eta) {
  const int64_t runs = (n + kRun - 1) / kRun;
  std::vector<double> rmax(runs), rsum(runs);
  for_runs(n, runs, [&](int64_t r, int64_t b, int64_t e) {
    double m = -INFINITY, s = 0;
    for (int64_t i = b; i < e; ++i) {
      m = std::max(m, tilt::scaled(l[i], eta));
      s += double(l[i]);
    }
    rmax[r] = m;
    rsum[r] = s;
  });
  tilt::Sums r;
  for (double m : rmax) r.max_scaled = std::max(r.max_scaled, m);  // a max has no order
  r.sum_l = fold(std::move(rsum));
  std::vector<double> rs(runs), rel(runs), ree(runs);
  for_runs(n, runs, [&](int64_t k, int64_t b, int64_t e) {
    double u[kRun];
    unnormalised_run(l + b, e - b, eta, r.max_scaled, u);
    double s = 0, el = 0, ee = 0;
    for (int64_t i = b; i < e; ++i) {
      s += u[i - b];
      el += u[i - b] * double(l[i]);
      ee += u[i - b] * u[i - b];
    }
    rs[k] = s;
    rel[k] = el;
    ree[k] = ee;
  });
  r.s = fold(std::move(rs));
  r.s_el = fold(std::move(rel));
  r.s_ee = fold(std::move(ree));
  return r;
}

void tilted_write(const float* l, int64_t n, double eta, TiltGradient g, const tilt::Sums& s, float* weights, float* coef) {
  const double robust = tilt::robust_loss(s);
  for_runs(n, (n + kRun - 1) / kRun, [&](int64_t, int64_t b, int64_t e) {
    double u[kRun];
    unnormalised_run(l + b, e - b, eta, s.max_scaled, u);
    for (int64_t i = b; i < e; ++i) {
      const double w = u[i - b] / s.s;
      if (weights) weights[i] = float(w);
      if (coef) coef[i] = float(tilt::coefficient(w, l[i], eta, robust, g));
    }
  });
}

}  // namespace calmoe::cpu
