// AVX2 kernels for the calibration histogram (compiled with -mavx2 -mfma; called only after
// use_avx2()). They repeat the shared scalar math of core/calibration.h lane by lane, so results
// are bit-identical to the scalar path (tested in native/test/calibration_test).
#pragma once
#include "core/calibration.h"

namespace calmoe::cpu::avx2 {
bool calib_supported(const calib::KernelArgs& a);
int64_t calib_accumulate(const calib::KernelArgs& a, int64_t begin, int64_t end, uint64_t* w);
}  // namespace calmoe::cpu::avx2
