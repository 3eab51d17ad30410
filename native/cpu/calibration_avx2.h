// AVX2 kernels for the calibration histogram (compiled with -mavx2 -mfma; called only after
// use_avx2()). They repeat the shared scalar math of core/calibration.h lane by lane, so results
// are bit-identical to the scalar path (tested in native/test/calibration_test).
#pragma once
#include "core/calibration.h"

namespace calmoe::cpu::avx2 {
bool calib_supported(const calib::KernelArgs& a);
// Accumulates whole blocks of 8 valid rows from `begin` and stops at the first block with an
// invalid row or when fewer than 8 rows remain. Returns -2 - (the first row it did not take):
// the caller runs the scalar path from there (which reports an invalid row exactly).
int64_t calib_accumulate(const calib::KernelArgs& a, int64_t begin, int64_t end, uint64_t* w);
}  // namespace calmoe::cpu::avx2
