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
}

}  // namespace

TEST_MAIN("fastmath")
