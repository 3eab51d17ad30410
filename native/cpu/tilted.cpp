// CPU backend of the tilted weights: fixed chunks reduced in chunk order (the same bits for any
// thread count), two passes over the losses.
#include <algorithm>
#include <vector>

#include "core/tilted.h"
#include "cpu/thread_pool.h"

namespace calmoe::cpu {
namespace {
constexpr int64_t kChunk = 1 << 16;
}

tilt::Sums tilted_reduce(const float* l, int64_t n, double eta) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> cmax(chunks, -INFINITY), csum(chunks, 0.0);
  parallel_for(chunks, [&](int64_t c, int) {
    const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
    double m = -INFINITY, s = 0;
    for (int64_t i = b; i < e; ++i) {
      m = std::max(m, tilt::scaled(l[i], eta));
      s += double(l[i]);
    }
    cmax[c] = m;
    csum[c] = s;
  });
  tilt::Sums r;
  for (int64_t c = 0; c < chunks; ++c) {
    r.max_scaled = std::max(r.max_scaled, cmax[c]);
    r.sum_l += csum[c];
  }
  std::vector<double> cs(chunks), cel(chunks), cee(chunks);
  parallel_for(chunks, [&](int64_t c, int) {
    const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
    double s = 0, el = 0, ee = 0;
    for (int64_t i = b; i < e; ++i) {
      const double u = tilt::unnormalised(l[i], eta, r.max_scaled);
      s += u;
      el += u * double(l[i]);
      ee += u * u;
    }
    cs[c] = s;
    cel[c] = el;
    cee[c] = ee;
  });
  for (int64_t c = 0; c < chunks; ++c) {
    r.s += cs[c];
    r.s_el += cel[c];
    r.s_ee += cee[c];
  }
  return r;
}

void tilted_write(const float* l, int64_t n, double eta, TiltGradient g, double max_scaled, double s, double robust,
                  float* weights, float* coef) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(chunks, [&](int64_t c, int) {
    const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
    for (int64_t i = b; i < e; ++i) {
      const double w = tilt::unnormalised(l[i], eta, max_scaled) / s;
      if (weights) weights[i] = float(w);
      if (coef) coef[i] = float(tilt::coefficient(w, l[i], eta, robust, g));
    }
  });
}

}  // namespace calmoe::cpu
