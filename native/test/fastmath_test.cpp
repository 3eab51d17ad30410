// exp_f32 / log_f32 (shared by every backend) against the C library in double.
#include <cfloat>
#include <cstring>

#include "core/fastmath.h"
#include "test_util.h"

namespace {

// Distance in units in the last place of the float result.
double ulps(float got, double want) {
  const float wf = float(want);
  const float next = std::nextafter(wf, INFINITY);
  const double ulp = double(next) - double(wf);
  return std::fabs(double(got) - want) / (ulp > 0 ? ulp : DBL_MIN);
}

TEST(log_accuracy_dense_sweep) {
  double worst = 0;
  float at = 0;
  // every 97th float in (0, 1e30): normals and subnormals
  for (uint32_t u = 1; u < 0x7149f2caU; u += 97) {
    float x;
    std::memcpy(&x, &u, 4);
    const double e = ulps(calmoe::fm::log_f32(x), std::log(double(x)));
    if (e > worst) { worst = e; at = x; }
  }
  std::printf("  log_f32 max error %.3f ulp at %g\n", worst, at);
  CHECK(worst <= 2.0);
}

TEST(exp_accuracy_dense_sweep) {
  double worst = 0;
  float at = 0;
  for (float x = -87.0f; x < 88.7f; x += 0.000731f) {
    const double e = ulps(calmoe::fm::exp_f32(x), std::exp(double(x)));
    if (e > worst) { worst = e; at = x; }
  }
  std::printf("  exp_f32 max error %.3f ulp at %g\n", worst, at);
  CHECK(worst <= 2.0);
}

// Distance in units in the last place of the double result, against long double.
double ulps64(double got, long double want) {
  const double wd = double(want);
  const double ulp = std::nextafter(wd, INFINITY) - wd;
  return double(std::fabs((long double)got - want) / (long double)(ulp > 0 ? ulp : DBL_TRUE_MIN));
}

TEST(exp_f64_accuracy_sweep) {
  double worst = 0, at = 0;
  // dense over the range the tilted weights use (e^(eta l - max) <= 1), sparser over the rest
  t::Rng rng(11);
  for (int i = 0; i < 2000000; ++i) {
    const double x = i < 1000000 ? -40.0 * rng.uniform() : -745.0 + 1454.78 * rng.uniform();
    const double e = ulps64(calmoe::fm::exp_f64(x), std::exp((long double)x));
    if (e > worst) { worst = e; at = x; }
  }
  std::printf("  exp_f64 max error %.3f ulp at %.17g\n", worst, at);
  CHECK(worst <= 1.0);
}

TEST(special_values) {
  using namespace calmoe::fm;
  CHECK(log_f32(1.0f) == 0.0f);
  CHECK(std::isinf(log_f32(0.0f)) && log_f32(0.0f) < 0);
  CHECK(std::isnan(log_f32(-1.0f)));
  CHECK(std::isnan(log_f32(NAN)));
  CHECK(std::isinf(log_f32(INFINITY)));
  CHECK(exp_f32(0.0f) == 1.0f);
  CHECK(exp_f32(-200.0f) == 0.0f);
  CHECK(std::isinf(exp_f32(89.0f)));
  CHECK(std::isnan(exp_f32(NAN)));
  CHECK(exp_f32(88.5f) > 2.7e38f && std::isfinite(exp_f32(88.5f)));       // near FLT_MAX
  CHECK_CLOSE(exp_f32(-100.0f), float(std::exp(-100.0)), 1.5e-45, 0);     // subnormal result, to 1 ulp
  CHECK_CLOSE(log_f32(1e-40f), std::log(1e-40), 0, 1e-6);                   // subnormal input
  CHECK(exp_f64(0.0) == 1.0);
  CHECK(exp_f64(-0.0) == 1.0);
  CHECK_CLOSE(exp_f64(1.0), 2.718281828459045, 0, 2.3e-16);                 // e, to 1 ulp
  CHECK(exp_f64(-746.0) == 0.0);
  CHECK(std::isinf(exp_f64(710.0)) && std::isinf(exp_f64(INFINITY)));
  CHECK(exp_f64(-INFINITY) == 0.0);
  CHECK(std::isnan(exp_f64(NAN)));
  CHECK(exp_f64(709.7) > 1.6e308 && std::isfinite(exp_f64(709.7)));         // near DBL_MAX
  CHECK_CLOSE(exp_f64(-740.0), std::exp(-740.0), 5e-324, 0);                // subnormal result, to 1 ulp
  CHECK_CLOSE(exp_f64(-709.0), std::exp(-709.0), 0, 3e-16);
}

}  // namespace

TEST_MAIN("fastmath")
