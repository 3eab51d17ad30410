// Flush-to-zero / denormals-are-zero (core/float_mode.h): the scope guard sets and restores the
// mode; thread-pool workers run a job in the caller's mode (so results never depend on which
// thread ran a task); AdamW updates whose gradients and moments are subnormal give the IEEE
// result (the flushed terms are far below an ulp of the parameter), also along a trajectory whose
// moments decay through the subnormal range; and a whole fit ends with the same parameters.
#include <cstring>
#include <limits>

#include "core/float_mode.h"
#include "core/optimizer.h"
#include "host/thread_pool.h"
#include "moe_cases.h"
#include "test_util.h"

using namespace calmoe;
using moe_cases::cfg;

namespace {

// A product whose exact value is subnormal, through memory so the compiler cannot fold it.
float subnormal_product() {
  volatile float a = 1e-30f, b = 1e-10f;
  return a * b;
}

// opt::update run in `mode`. The compiler does not treat the control register as a dependency
// and may move arithmetic across the mode switch, so the inputs are read and the results written
// through volatile (accesses it keeps in order with the calls that switch the mode).
float update_in_mode(uint32_t mode, const opt::Hyper& h, float p, float g, float& m, float& v, bool first) {
  ScopedDenormalMode scope(mode);
  volatile float in_p = p, in_g = g, in_m = m, in_v = v;
  float mm = in_m, vv = in_v;
  volatile float out = opt::update(h, in_p, in_g, mm, vv, first);
  volatile float out_m = mm, out_v = vv;
  m = out_m;
  v = out_v;
  return out;
}

bool supported() {
  if (flush_denormal_bits() != 0) return true;
  std::printf("  (this architecture has no flush-to-zero control: the mode checks are skipped)\n");
  return false;
}

TEST(scope_sets_and_restores_the_mode) {
  if (!supported()) return;
  const uint32_t before = denormal_mode();
  CHECK(before == 0);  // the process starts in IEEE mode
  CHECK(subnormal_product() != 0.0f);
  {
    ScopedDenormalMode m(flush_denormal_bits());
    CHECK(denormal_mode() == flush_denormal_bits());
    CHECK(subnormal_product() == 0.0f);
    {
      ScopedDenormalMode inner(0);  // nested: IEEE again, then back to flushing
      CHECK(subnormal_product() != 0.0f);
    }
    CHECK(subnormal_product() == 0.0f);
  }
  CHECK(denormal_mode() == before);
  CHECK(subnormal_product() != 0.0f);
}

TEST(pool_workers_follow_the_callers_mode) {
  if (!supported()) return;
  const int threads = cpu_threads();
  set_cpu_threads(4);
  const int64_t tasks = 64;
  for (bool flush : {true, false, true}) {
    std::vector<float> got(tasks, -1.0f);
    std::vector<uint32_t> mode(tasks, 99);
    {
      ScopedDenormalMode m(flush ? flush_denormal_bits() : 0);
      cpu::parallel_for(tasks, [&](int64_t t, int) {
        got[t] = subnormal_product();
        mode[t] = denormal_mode();
      });
      CHECK(denormal_mode() == (flush ? flush_denormal_bits() : 0u));  // the caller's mode is its own
    }
    for (int64_t t = 0; t < tasks; ++t) {
      CHECK(mode[t] == (flush ? flush_denormal_bits() : 0u));
      CHECK((got[t] == 0.0f) == flush);
    }
  }
  set_cpu_threads(threads);
}

// One AdamW step per case (subnormal and zero gradients and moments), flushed and IEEE: the new
// parameter is bit-identical for |p| >= 1e-20 and within 1e-30 for smaller ones.
TEST(adamw_update_with_subnormal_state_matches_ieee) {
  OptimizerConfig o;
  o.kind = OptimizerKind::AdamW;
  o.lr = 1e-3;
  o.weight_decay = 1e-4;
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float params[] = {0.5f, -0.03f, 1e-6f, 0.0f, 2e-38f};
  const float values[] = {0.0f, tiny, 1e-40f, 3e-39f, 1e-38f, 1e-20f, 0.01f};  // gradients and moments
  int cases = 0, identical = 0;
  for (int step : {2, 500, 5000}) {
    const opt::Hyper h = opt::hyper(o, o.lr, step, 1.0f);
    for (float p : params)
      for (float g : values)
        for (float m0 : values)
          for (float v0 : values) {
            float mi = m0, vi = v0, mf = m0, vf = v0;
            const float ieee = update_in_mode(0, h, p, g, mi, vi, false);
            const float flushed = update_in_mode(flush_denormal_bits(), h, p, g, mf, vf, false);
            ++cases;
            // A flushed operand is < 2^-126, so it moves the update by at most lr * 2^-126 / (eps bias1)
            // ~ 1e-32: nothing for a parameter of any realistic size (an ulp of 1e-20 is ~1e-27).
            if (std::fabs(p) >= 1e-20f) {
              CHECK(ieee == flushed);
              identical += ieee == flushed;
            } else {
              CHECK_CLOSE(flushed, ieee, 1e-30, 0);
            }
            // the moments differ only by values below the normal range
            CHECK_CLOSE(mf, mi, 2e-38, 0);
            CHECK_CLOSE(vf, vi, 2e-38, 0);
          }
  }
  CHECK(identical > cases / 2);
}

// A parameter whose gradient stops (an input that no longer occurs, a dead unit): its first moment
// decays by beta1 per step and passes through the subnormal range after ~750 steps. The flushed
// trajectory ends with the same parameter bits as the IEEE one.
TEST(adamw_trajectory_through_subnormal_moments) {
  OptimizerConfig o;
  o.kind = OptimizerKind::AdamW;
  o.lr = 1e-3;
  o.weight_decay = 1e-4;
  for (float p0 : {0.05f, -0.7f, 3e-4f}) {
    float p[2] = {p0, p0}, m[2] = {0, 0}, v[2] = {0, 0};
    bool saw_subnormal = false;
    for (int step = 1; step <= 2000; ++step) {
      const float g = step <= 10 ? 1e-3f * float(step % 3 - 1) + 2e-4f : 0.0f;
      const opt::Hyper h = opt::hyper(o, o.lr, step, 1.0f);
      p[0] = update_in_mode(0, h, p[0], g, m[0], v[0], step == 1);
      p[1] = update_in_mode(flush_denormal_bits(), h, p[1], g, m[1], v[1], step == 1);
      saw_subnormal |= m[0] != 0.0f && std::fabs(m[0]) < std::numeric_limits<float>::min();
      CHECK(p[0] == p[1]);
    }
    CHECK(saw_subnormal);  // the IEEE run did go through subnormal moments
    if (flush_denormal_bits() != 0) CHECK(m[1] == 0.0f);  // flushed: it became 0 instead
  }
}

// End to end: a fit that trains to near-zero loss (tiny gradients) ends with the same parameters
// whether or not subnormals are flushed, and leaves the caller's mode as it was.
TEST(fit_matches_ieee_and_restores_the_callers_mode) {
  t::Rng rng(21);
  const int64_t n = 64, d = 6;
  MoEConfig c = cfg(d, 3, 3, Routing::Soft, 3, {8}, {});
  std::vector<float> x(n * d);
  std::vector<int32_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = rng.normal();
    y[i] = x[i * d] > 0 ? (x[i * d + 1] > 0 ? 2 : 1) : 0;
  }
  Dataset ds{x.data(), y.data(), n};
  FitConfig f;
  f.epochs = 300;  // 300 steps of one batch
  f.batch_size = 64;
  f.optimizer.kind = OptimizerKind::AdamW;
  f.optimizer.lr = 1e-2;
  std::vector<std::vector<float>> out;
  for (bool flush : {false, true}) {
    set_flush_denormals(flush);
    std::vector<float> params(moe_layout(c).total);
    moe_init_params(c, params.data(), 3, InitKind::Default, 0);
    moe_fit(Device::Cpu, c, params.data(), nullptr, ds, nullptr, f, nullptr, {}, nullptr);
    out.push_back(params);
    CHECK(denormal_mode() == 0);  // the caller's mode is back
  }
  set_flush_denormals(true);
  for (std::size_t i = 0; i < out[0].size(); ++i) {
    CHECK(std::isfinite(out[1][i]));
    CHECK_CLOSE(out[1][i], out[0][i], 1e-6, 1e-5);
  }
}

}  // namespace

int main() { return t::run_all("float_mode_test"); }
