// AVX2 pass of the tilted weights (compiled with -mavx2 -mfma; called only after use_avx2()): the
// unnormalised weights of a run of losses, fm::exp_f64's steps lane by lane, so the bits of the
// scalar path (tested in native/test/tilted_test).
#pragma once
#include <cstdint>

namespace calmoe::cpu::avx2 {
// u[i] = tilt::unnormalised(l[i], eta, max_scaled) for i < n.
void tilt_unnormalised(const float* l, int64_t n, double eta, double max_scaled, double* u);
}  // namespace calmoe::cpu::avx2
